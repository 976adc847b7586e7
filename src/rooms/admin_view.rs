//! Rooms as a server's administrators see them: every room this server has, with what
//! its current state says (name, rules, creator, members, tombstone), whoever asks; and
//! making someone a room admin through the room's most powerful local member.

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{
        StateEventType, TimelineEventType,
        room::{member::MembershipState, power_levels::UserPowerLevel},
    },
};
use serde_json::{Value as JsonValue, json};

use super::{EventSpec, Rooms};
use crate::error::{Error, Result};

/// A room's current state, summed up for administrators (Synapse's room details).
#[derive(Debug, Clone)]
pub struct RoomDetails {
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: u64,
    pub joined_local_members: u64,
    pub version: RoomVersionId,
    pub creator: Option<OwnedUserId>,
    pub encryption: Option<String>,
    /// Whether other servers' users may take part (`m.federate`).
    pub federatable: bool,
    /// Published in the room directory.
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: u64,
    pub room_type: Option<String>,
    pub tombstoned: bool,
    pub replacement_room: Option<String>,
}

impl Rooms {
    /// Every membership this server knows the user to have, left and forgotten rooms
    /// included (of any server's user, in the rooms this server has).
    pub fn memberships_of(&self, user: &UserId) -> Result<Vec<(OwnedRoomId, MembershipState)>> {
        Ok(self
            .store
            .user_rooms(user)?
            .into_iter()
            .map(|(room_id, entry)| (room_id, entry.membership))
            .collect())
    }

    /// Every room this server has state for.
    pub fn all_room_details(&self) -> Result<Vec<RoomDetails>> {
        let mut rooms = Vec::new();
        for room_id in self.store.room_ids()? {
            // A room whose create event is not stored yet (a join under way) has no state.
            if self.room(&room_id)?.snapshot.is_some() {
                rooms.push(self.room_details(&room_id)?);
            }
        }
        Ok(rooms)
    }

    pub fn room_details(&self, room_id: &RoomId) -> Result<RoomDetails> {
        let room = self.room(room_id)?;
        let state = self.current_state(room_id)?;
        let content = |kind: &str| {
            state
                .iter()
                .find(|pdu| pdu.kind.to_string() == kind && pdu.state_key.as_deref() == Some(""))
                .map(|pdu| pdu.content_json())
                .unwrap_or_default()
        };
        let text = |kind: &str, field: &str| content(kind)[field].as_str().map(str::to_owned);
        let create = state.iter().find(|pdu| pdu.kind.to_string() == "m.room.create");
        let tombstone = content("m.room.tombstone");
        let joined: Vec<OwnedUserId> = self.member_view(&room)?.joined().cloned().collect();
        Ok(RoomDetails {
            room_id: room_id.to_owned(),
            name: text("m.room.name", "name"),
            topic: text("m.room.topic", "topic"),
            avatar: text("m.room.avatar", "url"),
            canonical_alias: text("m.room.canonical_alias", "alias"),
            joined_local_members: joined.iter().filter(|u| u.server_name() == self.server_name).count()
                as u64,
            joined_members: joined.len() as u64,
            version: room.version,
            // The creator is the create event's sender in every room version.
            creator: create.map(|pdu| pdu.sender.clone()),
            encryption: text("m.room.encryption", "algorithm"),
            federatable: content("m.room.create")["m.federate"] != JsonValue::Bool(false),
            public: self.store.is_published(room_id)?,
            join_rules: text("m.room.join_rules", "join_rule"),
            guest_access: text("m.room.guest_access", "guest_access"),
            history_visibility: text("m.room.history_visibility", "history_visibility"),
            state_events: state.len() as u64,
            room_type: text("m.room.create", "type"),
            tombstoned: tombstone.is_object(),
            replacement_room: tombstone["replacement_room"].as_str().map(str::to_owned),
        })
    }
}

impl Rooms {
    /// Gives `target` (a local user) the power of the room's most powerful local member,
    /// who sends the change; invites `target` if it is not in the room and the room is not
    /// public. Fails when no local member may change the power levels.
    pub async fn make_room_admin(&self, room_id: &RoomId, target: &UserId) -> Result<()> {
        let levels = self.power_levels(room_id)?;
        let admin = self
            .current_members(room_id)?
            .joined()
            .filter(|user| user.server_name() == self.server_name)
            .max_by_key(|user| levels.for_user(user))
            .filter(|user| levels.user_can_send_state(user, StateEventType::RoomPowerLevels))
            .cloned()
            .ok_or_else(|| {
                Error::InvalidParam("no local member of the room may change its power levels".to_owned())
            })?;
        let level = match levels.for_user(&admin) {
            UserPowerLevel::Int(level) => level,
            // A creator of a room whose version privileges them has no number: the target
            // gets the highest number in use, and at least a room admin's 100.
            _ => levels.max().max(100.into()),
        };
        if levels.for_user(target) < level {
            let mut content = self
                .state_content(room_id, &StateEventType::RoomPowerLevels, "")?
                .ok_or_else(|| Error::InvalidParam("the room has no power levels".to_owned()))?;
            content["users"][target.as_str()] = json!(level);
            let spec = EventSpec::state(TimelineEventType::RoomPowerLevels, "", content);
            self.append(room_id, &admin, spec, None).await?;
        }
        let in_room = matches!(
            self.membership(room_id, target)?,
            Some(MembershipState::Join | MembershipState::Invite)
        );
        let public = self
            .state_content(room_id, &StateEventType::RoomJoinRules, "")?
            .is_some_and(|rules| rules["join_rule"] == "public");
        if !in_room && !public {
            self.invite(room_id, &admin, target, None, false).await?;
        }
        tracing::info!(%room_id, %target, via = %admin, "made room admin");
        Ok(())
    }
}
