//! Room previews (`GET /room_summary`, v1.15): what a room is, for someone deciding whether
//! to join it — from this server's state when one of its users is in the room, else from
//! a server in the room (its `/hierarchy` answer, which describes any room).

use ruma::{
    OwnedServerName, RoomOrAliasId, UserId, events::room::member::MembershipState, room::RoomSummary,
};

use super::{
    Error, Result, Rooms,
    hierarchy::{open_to_anyone, wire_summary},
};

impl Rooms {
    /// The summary of a room (named by id or alias) that `viewer` may see: they are in
    /// it, invited, could join or knock, or its history is world-readable; anonymous
    /// callers see only the last two kinds. With `viewer`'s membership, if any.
    pub async fn room_preview(
        &self,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
        viewer: Option<&UserId>,
    ) -> Result<(RoomSummary, Option<MembershipState>)> {
        let (room_id, mut servers) = match <&ruma::RoomId>::try_from(room) {
            Ok(room_id) => (room_id.to_owned(), Vec::new()),
            Err(alias) => self.alias_target(alias).await?,
        };
        servers.extend(via.iter().cloned());
        let not_found = || Error::NotFound(format!("no room {room} that you may see"));
        let summary = if self.is_resident(&room_id)? {
            wire_summary(self.summary(&room_id)?)
        } else {
            let answer = self.remote_hierarchy(&room_id, &servers, false).await.ok_or_else(not_found)?;
            answer.room.summary.clone()
        };
        let membership = viewer.map(|user| self.membership(&room_id, user)).transpose()?.flatten();
        let visible = match viewer {
            Some(user) => self.user_may_see(user, &summary)? || membership == Some(MembershipState::Knock),
            None => open_to_anyone(&summary),
        };
        if !visible {
            return Err(not_found());
        }
        Ok((summary, membership))
    }
}
