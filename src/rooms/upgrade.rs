//! Room upgrades (spec: "Room Upgrades", server behaviour): a new room in the new version
//! with the old one's transferable state and bans, a tombstone in the old room, its local
//! aliases and directory listing moved over, and the old room closed to new messages.

use ruma::{
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{
        StateEventType, TimelineEventType,
        room::{member::MembershipState, power_levels::UserPowerLevel},
    },
};
use serde_json::{Map, Value as JsonValue, json};

use super::{Error, EventSpec, Result, Rooms, SUPPORTED_VERSIONS};

/// State copied to the new room, as the spec recommends, plus the canonical alias (its
/// aliases move along) — all with the empty state key.
const TRANSFERRED_STATE: &[StateEventType] = &[
    StateEventType::RoomServerAcl,
    StateEventType::RoomEncryption,
    StateEventType::RoomName,
    StateEventType::RoomAvatar,
    StateEventType::RoomTopic,
    StateEventType::RoomGuestAccess,
    StateEventType::RoomHistoryVisibility,
    StateEventType::RoomJoinRules,
    StateEventType::RoomCanonicalAlias,
];

/// The power the spec's example gives the old room's `events_default` and `invite`, so
/// ordinary members can no longer talk or invite there.
const RESTRICTED_LEVEL: i64 = 50;

/// A power level as the auth rules read it (integers; older rooms also allow numeric strings).
fn level(value: &JsonValue, default: i64) -> i64 {
    match value {
        JsonValue::Number(n) => n.as_i64().unwrap_or(default),
        JsonValue::String(s) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

impl Rooms {
    /// Upgrades a room to `new_version` for `user`, who must be allowed to send its
    /// `m.room.tombstone`; returns the new room. `additional_creators` are the new room's,
    /// where its version has them (the old room's are not carried over, as the spec says).
    pub async fn upgrade_room(
        &self,
        user: &UserId,
        room_id: &RoomId,
        new_version: &RoomVersionId,
        additional_creators: &[OwnedUserId],
    ) -> Result<OwnedRoomId> {
        if !SUPPORTED_VERSIONS.contains(new_version) {
            return Err(Error::UnsupportedRoomVersion(format!(
                "room version {new_version} is not supported"
            )));
        }
        let old = self.room(room_id)?;
        if !self.may_send_state(room_id, user, &StateEventType::RoomTombstone)? {
            return Err(Error::Forbidden(format!("{user} may not upgrade room {room_id}")));
        }
        let new_rules = new_version.rules().expect("supported versions have rules");
        let creators_are_implicit = new_rules.authorization.explicitly_privilege_room_creators;

        let mut create_content = Map::new();
        let mut predecessor = json!({"room_id": room_id});
        // Deprecated and optional from v12 on, but still to be given where practical.
        if let Some(last) = old.extremities.first() {
            predecessor["event_id"] = json!(last);
        }
        create_content.insert("predecessor".to_owned(), predecessor);
        let old_create = self.state_content(room_id, &StateEventType::RoomCreate, "")?.unwrap_or_default();
        if let Some(room_type) = old_create.get("type") {
            create_content.insert("type".to_owned(), room_type.clone());
        }
        let new_creators: Vec<&UserId> =
            std::iter::once(user).chain(additional_creators.iter().map(|u| &**u)).collect();
        if new_rules.authorization.additional_room_creators && !additional_creators.is_empty() {
            create_content.insert("additional_creators".to_owned(), json!(additional_creators));
        }

        let (initial_levels, final_levels) =
            self.upgraded_power_levels(room_id, user, &new_creators, creators_are_implicit)?;
        let mut events = vec![
            EventSpec::state(
                TimelineEventType::RoomMember,
                user.as_str(),
                self.member_profile(user).member_content(&MembershipState::Join, None),
            ),
            EventSpec::state(TimelineEventType::RoomPowerLevels, "", initial_levels.clone()),
        ];
        for kind in TRANSFERRED_STATE {
            if let Some(content) = self.state_content(room_id, kind, "")? {
                events.push(EventSpec::state(kind.to_string(), "", content));
            }
        }
        // A space keeps its rooms.
        if old_create["type"] == "m.space" {
            for pdu in self.space_child_events(&old)? {
                if let Some(state_key) = &pdu.state_key {
                    events.push(EventSpec::state(pdu.kind.clone(), state_key, pdu.content_json()));
                }
            }
        }
        // Whoever was banned stays banned (as Synapse does); invites and other members are
        // not carried over, since nobody may act for users of other servers.
        for (banned, _) in self.members(room_id)?.into_iter().filter(|(_, m)| *m == MembershipState::Ban) {
            let mut content = json!({"membership": "ban"});
            if let Some(reason) = self
                .state_content(room_id, &StateEventType::RoomMember, banned.as_str())?
                .and_then(|c| c.get("reason").cloned())
            {
                content["reason"] = reason;
            }
            events.push(EventSpec::state(TimelineEventType::RoomMember, banned.as_str(), content));
        }
        if final_levels != initial_levels {
            events.push(EventSpec::state(TimelineEventType::RoomPowerLevels, "", final_levels));
        }
        let new_room = self.build_room(new_version, user, create_content, events).await?;
        tracing::info!(old = %room_id, new = %new_room, version = %new_version, "room upgraded");

        self.append(
            room_id,
            user,
            EventSpec::state(
                TimelineEventType::RoomTombstone,
                "",
                json!({"body": "This room has been replaced", "replacement_room": new_room}),
            ),
            None,
        )
        .await?;
        self.store.move_directory_entries(room_id, &new_room).await?;
        self.close_old_room(room_id, user).await;
        Ok(new_room)
    }

    /// The new room's power levels: the old room's, with the new room's creators taken out
    /// of `users` where their power is implicit, or else the upgrading user kept at least
    /// as powerful as the old room made them. The first value is what the room starts
    /// with: the upgrading user raised, if needed, to copy every state event and ban (as
    /// Synapse does); the second, what it keeps afterwards.
    fn upgraded_power_levels(
        &self,
        room_id: &RoomId,
        user: &UserId,
        new_creators: &[&UserId],
        creators_are_implicit: bool,
    ) -> Result<(JsonValue, JsonValue)> {
        let mut levels =
            self.state_content(room_id, &StateEventType::RoomPowerLevels, "")?.unwrap_or_default();
        if !levels.is_object() {
            levels = json!({});
        }
        if !levels["users"].is_object() {
            levels["users"] = json!({});
        }
        if creators_are_implicit {
            let users = levels["users"].as_object_mut().expect("made an object above");
            for creator in new_creators {
                users.remove(creator.as_str());
            }
            return Ok((levels.clone(), levels));
        }
        // A creator of a room where creators are all-powerful keeps full power.
        if self.power_levels(room_id)?.for_user(user) == UserPowerLevel::Infinite {
            levels["users"][user.as_str()] = json!(100);
        }
        let events_max = levels["events"]
            .as_object()
            .into_iter()
            .flat_map(|events| events.values())
            .map(|v| level(v, 0))
            .max()
            .unwrap_or(0);
        let needed = level(&levels["state_default"], 50).max(level(&levels["ban"], 50)).max(events_max);
        let current = match levels["users"].get(user.as_str()) {
            Some(value) => level(value, 0),
            None => level(&levels["users_default"], 0),
        };
        let mut initial = levels.clone();
        if current < needed {
            initial["users"][user.as_str()] = json!(needed);
        }
        Ok((initial, levels))
    }

    /// Takes the old room's canonical alias away (its aliases now name the new room) and
    /// raises `events_default` and `invite` so that ordinary members no longer talk or
    /// invite there. Both are courtesies: if the upgrading user may not do them, the
    /// upgrade still stands.
    async fn close_old_room(&self, room_id: &RoomId, user: &UserId) {
        let alias = self.state_content(room_id, &StateEventType::RoomCanonicalAlias, "");
        if let Ok(Some(alias)) = alias
            && alias.as_object().is_some_and(|a| !a.is_empty())
        {
            let spec = EventSpec::state(TimelineEventType::RoomCanonicalAlias, "", json!({}));
            if let Err(e) = self.append(room_id, user, spec, None).await {
                tracing::warn!(%room_id, error = %e, "could not remove the upgraded room's canonical alias");
            }
        }
        let levels = match self.state_content(room_id, &StateEventType::RoomPowerLevels, "") {
            Ok(Some(levels)) if levels.is_object() => levels,
            _ => return,
        };
        let restricted = RESTRICTED_LEVEL.max(level(&levels["users_default"], 0) + 1);
        let mut closed = levels.clone();
        for key in ["events_default", "invite"] {
            // Both default to 0 when absent.
            if level(&levels[key], 0) < restricted {
                closed[key] = json!(restricted);
            }
        }
        if closed == levels {
            return;
        }
        let spec = EventSpec::state(TimelineEventType::RoomPowerLevels, "", closed);
        if let Err(e) = self.append(room_id, user, spec, None).await {
            tracing::warn!(%room_id, error = %e, "could not restrict the upgraded room's power levels");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_levels_read_integers_and_numeric_strings() {
        assert_eq!(level(&json!(75), 0), 75);
        assert_eq!(level(&json!("60"), 0), 60);
        assert_eq!(level(&json!(null), 50), 50);
        assert_eq!(level(&json!("high"), 50), 50);
    }
}
