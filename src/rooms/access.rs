//! Who may read a room: the one gate every client read endpoint (state, members, history,
//! relations, threads) passes before it reads anything (spec: "Room History Visibility").
//!
//! A joined member reads the room as it is now. A member who left, was kicked or was
//! banned, and has not forgotten the room, reads it as it was when they left, and no event
//! after that. Anyone else reads only a room whose history is world-readable now, and then
//! only the events sent while it was. Everyone else is refused with 403 `M_FORBIDDEN`,
//! as Synapse refuses them: invitees, knockers, and users banned, kicked or refused before
//! they ever joined. Which events inside the room each reader sees is [`Visibility`]'s job.

use std::sync::Arc;

use ruma::{OwnedRoomId, RoomId, UserId, events::StateEventType, events::room::member::MembershipState};

use super::{Error, Event, Pdu, Result, Rooms, visibility::Visibility};

/// How a user may read a room.
enum Access {
    Joined,
    /// The event that ended the user's last stay in the room.
    Departed(Arc<Event>),
    /// Not in the room (and not remembering a stay in it), which is world-readable now.
    Peeking,
}

/// A user's read access to one room, with the visibility of its events to them.
pub struct Reader<'a> {
    rooms: &'a Rooms,
    room_id: OwnedRoomId,
    user: &'a UserId,
    access: Access,
    visibility: Visibility<'a>,
}

impl Rooms {
    /// Opens the room for reading by `user`, or refuses with `Forbidden` (also for a room
    /// this server does not have, so that a refusal does not tell whether it exists).
    pub fn reader<'a>(&'a self, room_id: &RoomId, user: &'a UserId) -> Result<Reader<'a>> {
        let refused = || Error::Forbidden(format!("{user} may not read room {room_id}"));
        if self.store.room(room_id)?.is_none() {
            return Err(refused());
        }
        let access = match self.membership(room_id, user)? {
            Some(MembershipState::Join) => Access::Joined,
            _ => match self.store.remembered_membership(user, room_id)? {
                Some(MembershipState::Leave | MembershipState::Ban)
                    if let Some(departure) = self.departure(room_id, user)? =>
                {
                    Access::Departed(departure)
                }
                _ if self.is_world_readable(room_id)? => Access::Peeking,
                _ => return Err(refused()),
            },
        };
        let visibility = match &access {
            Access::Joined => Visibility::new(self, user, Some(u64::MAX), None),
            Access::Departed(left) => {
                let left_at = left.stored.position;
                Visibility::new(self, user, Some(left_at), Some(left_at))
            }
            // A peek sees what the world may see, whatever the user's past in the room.
            Access::Peeking => Visibility::new(self, user, None, None),
        };
        Ok(Reader { rooms: self, room_id: room_id.to_owned(), user, access, visibility })
    }

    fn is_world_readable(&self, room_id: &RoomId) -> Result<bool> {
        let content = self.state_content(room_id, &StateEventType::RoomHistoryVisibility, "")?;
        Ok(content.as_ref().and_then(|c| c["history_visibility"].as_str()) == Some("world_readable"))
    }
}

impl Reader<'_> {
    /// The room's state as the reader may see it: as it is now, or after the event that
    /// ended their stay (spec: `GET /state`, `/state/{type}/{key}`, `/members`).
    pub fn state(&self) -> Result<Vec<Pdu>> {
        match &self.access {
            Access::Departed(left) => {
                self.rooms.pdus(self.rooms.state_after(&left.pdu.event_id)?.into_values())
            }
            Access::Joined | Access::Peeking => self.rooms.current_state(&self.room_id),
        }
    }

    /// One event of [`Reader::state`].
    pub fn state_event(&self, kind: &str, state_key: &str) -> Result<Option<Pdu>> {
        let key = (kind.to_owned(), state_key.to_owned());
        let id = match &self.access {
            Access::Departed(left) => self.rooms.state_after(&left.pdu.event_id)?.remove(&key),
            Access::Joined | Access::Peeking => {
                self.rooms.current_state_event_id(&self.room_id, kind, state_key)?
            }
        };
        id.map(|id| self.rooms.pdu(&id)).transpose().map(Option::flatten)
    }

    /// Fails unless the reader sees the room as it is now: what only a member or a peek may
    /// know, such as who is joined at this moment (`GET /joined_members`).
    pub fn require_present(&self) -> Result<()> {
        match self.access {
            Access::Joined | Access::Peeking => Ok(()),
            Access::Departed(_) => {
                Err(Error::Forbidden(format!("{} is no longer in room {}", self.user, self.room_id)))
            }
        }
    }

    /// The last timeline position the reader may see, if their reading stops somewhere:
    /// pagination starts there instead of walking through events they cannot see.
    pub fn last_position(&self) -> Option<u64> {
        match &self.access {
            Access::Departed(left) => Some(left.stored.position),
            Access::Joined | Access::Peeking => None,
        }
    }

    /// Whether the reader may see this event of the room.
    pub fn can_see(&mut self, event: &Event) -> Result<bool> {
        self.visibility.can_see(event)
    }

    /// Fails with "not found" unless the event is visible (hiding whether it exists, as the
    /// spec asks of `GET /event`).
    pub fn require(&mut self, event: &Event) -> Result<()> {
        self.visibility.require(event)
    }
}
