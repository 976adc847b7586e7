//! What a sync shows of one room, shared by `/sync` and sliding sync: the newest events a
//! user may see, where `/messages` continues before them, and what a client needs to name
//! a room that has no name (heroes and member counts).

use ruma::{OwnedUserId, RoomId, UserId, events::StateEventType, events::room::member::MembershipState};

use crate::{
    pdu::Pdu,
    rooms::{Events, Result, Rooms},
};

/// How many heroes a room summary names at most.
const MAX_HEROES: usize = 5;

/// The newest events in `(after, upto]` that pass `keep` and that `user` may see, oldest
/// first, at most `limit` of them, and whether older ones were left out.
pub fn timeline(
    rooms: &Rooms,
    room_id: &RoomId,
    user: &UserId,
    (after, upto): (u64, u64),
    limit: usize,
    keep: impl Fn(&Pdu) -> bool,
) -> Result<(Events, bool)> {
    let mut visibility = rooms.visibility(room_id, user)?;
    let mut events = Vec::new();
    let mut limited = false;
    for event in rooms.events_before(room_id, upto, after)? {
        let event = event?;
        if !keep(&event.pdu) || !visibility.can_see(&event)? {
            continue;
        }
        if events.len() == limit {
            limited = true;
            break;
        }
        events.push(event);
    }
    events.reverse();
    Ok((events, limited))
}

/// Where `/messages` continues backwards from a timeline: just before its first event, or
/// `upto` when it is empty. Omitted when the timeline starts with the room's creation, as
/// the spec allows when no earlier events exist: clients such as Hydrogen otherwise show a
/// gap to fill above the start of every new room.
pub fn prev_batch(timeline: &Events, upto: u64) -> Option<String> {
    match timeline.first() {
        Some(first) if first.pdu.kind == ruma::events::TimelineEventType::RoomCreate => None,
        Some(first) => Some(first.stored.position.saturating_sub(1).to_string()),
        None => Some(upto.to_string()),
    }
}

/// The room's member counts and, for a room a client must name from its members, the
/// members to name it by.
pub struct Summary {
    pub heroes: Vec<OwnedUserId>,
    pub joined: u64,
    pub invited: u64,
}

/// Heroes and member counts, as the spec's room summary defines them. Heroes are only for
/// naming a room without a name or canonical alias (as Synapse does): lazy-loading clients
/// must then be sent their member events, which a named room can spare.
pub fn summary(rooms: &Rooms, room_id: &RoomId, user: &UserId) -> Result<Summary> {
    let view = rooms.current_members(room_id)?;
    let members = &view.members;
    let count = |m: MembershipState| members.iter().filter(|(_, membership)| *membership == m).count() as u64;
    let is_set = |kind: StateEventType, field: &str| -> Result<bool> {
        Ok(rooms
            .state_content(room_id, &kind, "")?
            .is_some_and(|content| content[field].as_str().is_some_and(|v| !v.is_empty())))
    };
    let mut heroes = Vec::new();
    if !is_set(StateEventType::RoomName, "name")? && !is_set(StateEventType::RoomCanonicalAlias, "alias")? {
        heroes = members
            .iter()
            .filter(|(member, m)| {
                matches!(m, MembershipState::Join | MembershipState::Invite) && *member != user
            })
            .map(|(member, _)| member.clone())
            .take(MAX_HEROES)
            .collect();
    }
    Ok(Summary { heroes, joined: count(MembershipState::Join), invited: count(MembershipState::Invite) })
}
