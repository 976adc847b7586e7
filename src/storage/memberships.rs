//! Who is in which room: each membership with the position of the event that set it, by
//! room and by user. Event writes keep both trees in step (see `rooms`).
//!
//! Trees:
//! - `memberships`: room id, `0xff`, user id → [`UserRoom`]
//! - `user_rooms`: user id, `0xff`, room id → [`UserRoom`]; a room the user forgot is
//!   removed here only

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState};
use serde::{Deserialize, Serialize};

use super::{Result, StorageError, Store, composite_key, decode, encode, prefix_of};

/// A user's membership in a room and the position of the event that set it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRoom {
    pub membership: MembershipState,
    pub position: u64,
}

impl Store {
    /// A user's membership in a room, if any event ever set one.
    pub fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<MembershipState>> {
        Ok(self.membership_entry(room_id, user_id)?.map(|entry| entry.membership))
    }

    /// A user's membership in a room with the position of the event that set it.
    pub fn membership_entry(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<UserRoom>> {
        self.memberships
            .get(composite_key(&[room_id.as_bytes(), user_id.as_bytes()]))?
            .map(|b| decode("membership", &b))
            .transpose()
    }

    /// The user's membership in a room unless they have forgotten the room.
    pub fn remembered_membership(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Option<MembershipState>> {
        self.user_rooms
            .get(composite_key(&[user_id.as_bytes(), room_id.as_bytes()]))?
            .map(|b| decode::<UserRoom>("user room", &b).map(|entry| entry.membership))
            .transpose()
    }

    /// Every user with a membership in the room, with it.
    pub fn memberships(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        Ok(self
            .membership_entries(room_id)?
            .into_iter()
            .map(|(user, entry)| (user, entry.membership))
            .collect())
    }

    /// Every user with a membership in the room, with the position it was set at.
    pub fn membership_entries(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, UserRoom)>> {
        let prefix = prefix_of(room_id.as_bytes());
        self.memberships
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                let user = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|s| UserId::parse(s).ok())
                    .ok_or_else(|| StorageError::Corrupt("membership key".to_owned()))?;
                Ok((user, decode("membership", &value)?))
            })
            .collect()
    }

    /// Every room the user has a membership in (and has not forgotten), with it.
    pub fn user_rooms(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, UserRoom)>> {
        let prefix = prefix_of(user_id.as_bytes());
        self.user_rooms
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                let room = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|s| RoomId::parse(s).ok())
                    .ok_or_else(|| StorageError::Corrupt("user room key".to_owned()))?;
                Ok((room, decode("user room", &value)?))
            })
            .collect()
    }

    /// Whether any room of this server has (or had) the user as a member, invitee or the
    /// like, and they have not forgotten it: whether this server knows the user at all.
    pub fn has_user_rooms(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.user_rooms.scan_prefix(prefix_of(user_id.as_bytes())).next().transpose()?.is_some())
    }

    /// Sets a user's membership in their own room list only, for a room this server has no
    /// events of (an invite from or a knock through another server, and its end).
    pub(super) fn set_user_room(
        &self,
        user: &UserId,
        room_id: &RoomId,
        membership: MembershipState,
        position: u64,
    ) -> Result<()> {
        let entry = encode(&UserRoom { membership, position });
        self.user_rooms.insert(composite_key(&[user.as_bytes(), room_id.as_bytes()]), entry)?;
        Ok(())
    }

    /// Forgets a room for a user: it no longer lists it. Only for rooms the user has left.
    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        self.user_rooms.remove(composite_key(&[user_id.as_bytes(), room_id.as_bytes()]))?;
        self.durable().await
    }
}
