//! Power levels as ruma computes them, for checks the auth rules leave to the server
//! (redacting others' events, editing the directory, deleting aliases).

use ruma::{
    OwnedUserId, RoomId, UserId,
    events::{
        StateEventType,
        room::{
            member::MembershipState,
            power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
        },
    },
};

use super::{Result, Rooms, rules_of};
use crate::storage::RoomRecord;

impl Rooms {
    /// The room's current power levels, with its creators privileged where the room version
    /// says so.
    pub fn power_levels(&self, room_id: &RoomId) -> Result<RoomPowerLevels> {
        self.power_levels_in(&self.room(room_id)?)
    }

    /// [`Rooms::power_levels`] at the state `room`'s record names.
    pub(super) fn power_levels_in(&self, room: &RoomRecord) -> Result<RoomPowerLevels> {
        let rules = rules_of(room)?;
        let content: Option<RoomPowerLevelsEventContent> = self
            .current_state_pdu(room, &StateEventType::RoomPowerLevels, "")
            .and_then(|pdu| serde_json::from_str(pdu.content.get()).ok());
        let mut creators: Vec<OwnedUserId> = Vec::new();
        if rules.authorization.explicitly_privilege_room_creators
            && let Some(create) = self.current_state_pdu(room, &StateEventType::RoomCreate, "")
        {
            creators.push(create.sender.clone());
            if let Some(additional) = create.content_json()["additional_creators"].as_array() {
                creators.extend(
                    additional.iter().filter_map(|u| u.as_str()).filter_map(|u| UserId::parse(u).ok()),
                );
            }
        }
        Ok(RoomPowerLevels::new(RoomPowerLevelsSource::from(content), &rules.authorization, creators))
    }

    /// Whether `user` is joined and may send `kind` as state.
    pub fn may_send_state(&self, room_id: &RoomId, user: &UserId, kind: &StateEventType) -> Result<bool> {
        if self.membership(room_id, user)? != Some(MembershipState::Join) {
            return Ok(false);
        }
        Ok(self.power_levels(room_id)?.user_can_send_state(user, kind.clone()))
    }
}
