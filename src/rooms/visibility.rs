//! History visibility: which events a user may see (spec: "Room History Visibility",
//! server behaviour).

use std::{collections::HashMap, sync::Arc};

use ruma::{
    RoomId, UserId,
    events::{
        StateEventType,
        room::{history_visibility::HistoryVisibility, member::MembershipState},
    },
};
use serde_json::value::RawValue as RawJsonValue;

use super::{Error, Event, Result, Rooms};

/// What decides visibility of the events that share one state snapshot.
struct Context {
    history_visibility: HistoryVisibility,
    membership: Option<MembershipState>,
}

/// The string `field` of an event's content; `None` if absent or not a string. The other
/// fields' values stay unparsed (keys are owned: a key may be written with escapes).
fn string_field(content: &RawJsonValue, field: &str) -> Option<String> {
    let content: HashMap<String, &RawJsonValue> = serde_json::from_str(content.get()).ok()?;
    serde_json::from_str(content.get(field)?.get()).ok()
}

/// Answers "may this user see that event?" for a run of events, reading each state
/// snapshot once.
pub struct Visibility<'a> {
    rooms: &'a Rooms,
    user: &'a UserId,
    /// The user was joined at some moment before this timeline position (`u64::MAX` while
    /// they are joined now): `shared` history before it is theirs to read.
    joined_until: Option<u64>,
    /// Nothing after this position is visible: the user left the room there.
    until: Option<u64>,
    by_snapshot: HashMap<Option<u64>, Context>,
}

impl Rooms {
    /// The visibility of the room's events to a user with a membership in it, for `/sync`,
    /// which lists only such rooms. Read endpoints go through [`Rooms::reader`] instead.
    pub fn visibility<'a>(&'a self, room_id: &RoomId, user: &'a UserId) -> Result<Visibility<'a>> {
        let joined_until = match self.membership(room_id, user)? {
            Some(MembershipState::Join) => Some(u64::MAX),
            Some(_) => self.departure(room_id, user)?.map(|left| left.stored.position),
            None => None,
        };
        Ok(Visibility::new(self, user, joined_until, None))
    }

    /// For a user not joined now: the event that ended their last stay in the room (a
    /// leave, kick or ban after a join), found by walking back through their membership
    /// events. `None` if they were never joined.
    pub(super) fn departure(&self, room_id: &RoomId, user: &UserId) -> Result<Option<Arc<Event>>> {
        let room = self.room(room_id)?;
        let member_key = ("m.room.member".to_owned(), user.to_string());
        let mut current = self.store.current_state_event(&room, &member_key.0, &member_key.1)?;
        while let Some(id) = current {
            let Some(event) = self.event(&id)? else { return Ok(None) };
            let Some(previous) = self.state_before(&event.stored)?.get(&member_key).cloned() else {
                return Ok(None);
            };
            let Some(previous_pdu) = self.pdu(&previous)? else { return Ok(None) };
            if previous_pdu.membership() == Some(MembershipState::Join) {
                return Ok(Some(event));
            }
            current = Some(previous);
        }
        Ok(None)
    }
}

impl<'a> Visibility<'a> {
    pub(super) fn new(
        rooms: &'a Rooms,
        user: &'a UserId,
        joined_until: Option<u64>,
        until: Option<u64>,
    ) -> Self {
        Visibility { rooms, user, joined_until, until, by_snapshot: HashMap::new() }
    }
}

impl Visibility<'_> {
    pub fn can_see(&mut self, event: &Event) -> Result<bool> {
        let (pdu, stored) = (&event.pdu, &event.stored);
        if self.until.is_some_and(|until| stored.position > until) {
            return Ok(false);
        }
        if !self.by_snapshot.contains_key(&stored.state_before) {
            let context = {
                let state = self.rooms.state_before(stored)?;
                // One field of a state event's content, read without parsing the rest.
                let field = |kind: StateEventType, key: &str, field: &str| -> Result<Option<String>> {
                    match state.get(&(kind.to_string(), key.to_owned())) {
                        Some(id) => Ok(self
                            .rooms
                            .event(id)?
                            .and_then(|event| string_field(&event.pdu.content, field))),
                        None => Ok(None),
                    }
                };
                let history_visibility =
                    field(StateEventType::RoomHistoryVisibility, "", "history_visibility")?
                        .map_or(HistoryVisibility::Shared, |v| HistoryVisibility::from(v.as_str()));
                let membership = field(StateEventType::RoomMember, self.user.as_str(), "membership")?
                    .map(|m| MembershipState::from(m.as_str()));
                Context { history_visibility, membership }
            };
            self.by_snapshot.insert(stored.state_before, context);
        }
        let context = &self.by_snapshot[&stored.state_before];
        let joined_until = self.joined_until;
        let allowed = |history_visibility: &HistoryVisibility, membership: Option<&MembershipState>| {
            match history_visibility {
                HistoryVisibility::WorldReadable => true,
                _ if membership == Some(&MembershipState::Join) => true,
                HistoryVisibility::Invited => membership == Some(&MembershipState::Invite),
                HistoryVisibility::Joined => false,
                // `shared`, and any value this server does not understand.
                _ => joined_until.is_some_and(|until| stored.position < until),
            }
        };
        if allowed(&context.history_visibility, context.membership.as_ref()) {
            return Ok(true);
        }
        // A user's own membership events and history visibility changes are visible if the
        // state before *or after* them allows it.
        let kind = pdu.kind.to_string();
        Ok(match (kind.as_str(), pdu.state_key.as_deref()) {
            ("m.room.member", Some(key)) if key == self.user.as_str() => {
                let membership = pdu.membership();
                // Their own leave from an invite is always visible, or a rejected invite would
                // never disappear from their client (Synapse makes the same exception).
                (membership == Some(MembershipState::Leave)
                    && context.membership == Some(MembershipState::Invite))
                    || allowed(&context.history_visibility, membership.as_ref())
            }
            ("m.room.history_visibility", Some("")) => {
                let visibility = string_field(&pdu.content, "history_visibility")
                    .map_or(HistoryVisibility::Shared, |v| HistoryVisibility::from(v.as_str()));
                allowed(&visibility, context.membership.as_ref())
            }
            _ => false,
        })
    }

    /// Fails with "not found" unless the event is visible (hiding whether it exists).
    pub(super) fn require(&mut self, event: &Event) -> Result<()> {
        if self.can_see(event)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no visible event {}", event.pdu.event_id)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: &str) -> Box<RawJsonValue> {
        RawJsonValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn a_content_field_is_read_whatever_the_other_fields_hold() {
        let nested = content(r#"{"other": {"deep": [1, "\"x\""]}, "history_visibility": "joined"}"#);
        assert_eq!(string_field(&nested, "history_visibility").as_deref(), Some("joined"));
        // A key spelled with escapes is still the same key.
        let escaped = content(r#"{"\u0041": 1, "hist\u006fry_visibility": "jo\u0069ned"}"#);
        assert_eq!(string_field(&escaped, "history_visibility").as_deref(), Some("joined"));
        assert_eq!(string_field(&escaped, "membership"), None);
        assert_eq!(string_field(&content(r#"{"membership": 1}"#), "membership"), None);
    }
}
