//! Room event filters (`RoomEventFilter`): which events a client asked for.

use ruma::api::client::filter::RoomEventFilter;

use crate::rooms::Pdu;

/// Event type patterns may end in `*`, matching any suffix.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Whether `pdu` passes the filter's type and sender rules (room rules are the caller's).
pub fn matches(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    let kind = pdu.kind.to_string();
    if filter.not_types.iter().any(|p| type_matches(p, &kind)) {
        return false;
    }
    if let Some(types) = &filter.types
        && !types.iter().any(|p| type_matches(p, &kind))
    {
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
