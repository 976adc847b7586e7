//! History visibility: which events a user may see (spec: "History visibility").

use std::collections::HashMap;

use ruma::{RoomId, UserId, events::StateEventType};

use super::{Error, Pdu, Result, Rooms};
use crate::storage::StoredEvent;

/// What decides visibility of the events that share one state snapshot.
#[derive(Clone)]
struct Context {
    history_visibility: String,
    membership: Option<String>,
}

/// Answers "may this user see that event?" for a run of events, reading each state
/// snapshot once.
pub struct Visibility<'a> {
    rooms: &'a Rooms,
    user: &'a UserId,
    currently_joined: bool,
    by_snapshot: HashMap<Option<u64>, Context>,
}

impl Rooms {
    /// Fails unless the user may read some of the room's history: they have (or had) a
    /// membership in it, or it is world-readable.
    pub fn check_can_read_history(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        if self.membership(room_id, user)?.is_some() {
            return Ok(());
        }
        self.check_can_read(room_id, user)
    }

    pub fn visibility<'a>(&'a self, room_id: &RoomId, user: &'a UserId) -> Result<Visibility<'a>> {
        let currently_joined = self.membership(room_id, user)?.as_deref() == Some("join");
        Ok(Visibility { rooms: self, user, currently_joined, by_snapshot: HashMap::new() })
    }
}

impl Visibility<'_> {
    pub fn can_see(&mut self, pdu: &Pdu, stored: &StoredEvent) -> Result<bool> {
        let context = match self.by_snapshot.get(&stored.state_before) {
            Some(context) => context.clone(),
            None => {
                let state = self.rooms.state_before(stored)?;
                let content = |kind: StateEventType, key: &str| -> Result<Option<serde_json::Value>> {
                    match state.get(&(kind.to_string(), key.to_owned())) {
                        Some(id) => Ok(self.rooms.pdu(id)?.map(|p| p.content_json())),
                        None => Ok(None),
                    }
                };
                let history_visibility = content(StateEventType::RoomHistoryVisibility, "")?
                    .and_then(|c| c["history_visibility"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "shared".to_owned());
                let membership = content(StateEventType::RoomMember, self.user.as_str())?
                    .and_then(|c| c["membership"].as_str().map(str::to_owned));
                let context = Context { history_visibility, membership };
                self.by_snapshot.insert(stored.state_before, context.clone());
                context
            }
        };
        let allowed = |membership: Option<&str>| match context.history_visibility.as_str() {
            "world_readable" => true,
            _ if membership == Some("join") => true,
            "shared" => self.currently_joined,
            "invited" => membership == Some("invite"),
            _ => false,
        };
        // A user sees their own membership event if their membership before *or* after it
        // allows it (spec: "History visibility"), so a leave still reaches the leaver.
        let own_membership_after = (pdu.state_key.as_deref() == Some(self.user.as_str())
            && pdu.kind.to_string() == "m.room.member")
            .then(|| pdu.content_json()["membership"].as_str().map(str::to_owned))
            .flatten();
        // And always their own leave from an invite, or a rejected invite would never
        // disappear from their client (Synapse makes the same exception).
        let leaves_invite = own_membership_after.as_deref() == Some("leave")
            && context.membership.as_deref() == Some("invite");
        Ok(leaves_invite
            || allowed(context.membership.as_deref())
            || own_membership_after.is_some_and(|after| allowed(Some(&after))))
    }

    /// Fails with "not found" unless the event is visible (hiding whether it exists).
    pub fn require(&mut self, pdu: &Pdu, stored: &StoredEvent) -> Result<()> {
        if self.can_see(pdu, stored)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no visible event {}", pdu.event_id)))
        }
    }
}
