//! Filters (`RoomEventFilter`, `Filter`): which events a client asked for.

use ruma::{
    RoomId,
    api::client::filter::{Filter, RoomEventFilter},
};

use crate::rooms::Pdu;

/// Event type patterns may end in `*`, matching any suffix.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Whether an event type passes `types` (when given) and `not_types`, which wins.
fn type_allowed(types: Option<&[String]>, not_types: &[String], kind: &str) -> bool {
    !not_types.iter().any(|p| type_matches(p, kind))
        && types.is_none_or(|t| t.iter().any(|p| type_matches(p, kind)))
}

/// Whether the filter lets through events of `kind` (for events without a sender to check,
/// such as ephemeral events and account data).
pub fn allows_type(filter: &RoomEventFilter, kind: &str) -> bool {
    type_allowed(filter.types.as_deref(), &filter.not_types, kind)
}

/// Whether a global filter (`account_data`, `presence`) lets through events of `kind`.
pub fn global_allows_type(filter: &Filter, kind: &str) -> bool {
    type_allowed(filter.types.as_deref(), &filter.not_types, kind)
}

/// Whether the filter's `rooms` and `not_rooms` (which wins) let the room through.
pub fn allows_room(filter: &RoomEventFilter, room: &RoomId) -> bool {
    !filter.not_rooms.iter().any(|r| r == room)
        && filter.rooms.as_ref().is_none_or(|only| only.iter().any(|r| r == room))
}

/// Whether `pdu` passes the filter's room, type and sender rules.
pub fn matches(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    if !allows_room(filter, &pdu.room_id) || !allows_type(filter, &pdu.kind.to_string()) {
        return false;
    }
    if filter.not_senders.contains(&pdu.sender) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.contains(&pdu.sender)
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn wildcards_match_prefixes() {
        assert!(type_matches("m.room.*", "m.room.message"));
        assert!(type_matches("*", "anything"));
        assert!(!type_matches("m.room.message", "m.room.messages"));
        assert!(type_matches("m.room.message", "m.room.message"));
    }
}
