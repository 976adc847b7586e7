//! `createRoom`: the create event, then the standard sequence of initial events.

use std::collections::HashMap;

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{TimelineEventType, room::member::MembershipState},
};
use serde_json::{Map, Value as JsonValue, json};

use super::{Error, EventSpec, Pdu, Position, Result, Rooms, auth, builder};

/// Room versions this server creates and joins.
pub const SUPPORTED_VERSIONS: &[RoomVersionId] =
    &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
/// The version for new rooms unless asked otherwise, as the spec recommends.
pub const DEFAULT_VERSION: RoomVersionId = RoomVersionId::V12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A `createRoom` request, already parsed.
pub struct CreateRoom {
    pub creator: OwnedUserId,
    pub version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    /// Published in the room directory (`visibility: public`).
    pub public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    /// The full alias for `room_alias_name`.
    pub canonical_alias: Option<OwnedRoomAliasId>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub initial_state: Vec<EventSpec>,
    pub creation_content: Map<String, JsonValue>,
    pub power_level_content_override: Option<Map<String, JsonValue>>,
}

impl Rooms {
    /// Creates a room with its initial state and invites, as `createRoom` asks. Local
    /// invitees must exist; other servers' users are invited once the room exists (a
    /// failure there is logged: the room stands and the invite can be sent again).
    pub async fn create_room(&self, request: CreateRoom) -> Result<OwnedRoomId> {
        for invitee in request.invite.iter().filter(|user| user.server_name() == self.server_name) {
            if !self.accounts.exists(invitee)? {
                return Err(Error::NotFound(format!("unknown user {invitee}")));
            }
        }
        let version = request.version.clone().unwrap_or(DEFAULT_VERSION);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(Error::UnsupportedRoomVersion(format!("room version {version} is not supported")));
        }
        let rules = version.rules().expect("supported versions have rules");
        if let Some(alias) = &request.canonical_alias {
            self.check_alias_available(alias)?;
        }
        let preset =
            request.preset.unwrap_or(if request.public { Preset::PublicChat } else { Preset::PrivateChat });
        let creator = &request.creator;

        // The create event's content, beyond what every room's has.
        let mut create_content = request.creation_content.clone();
        if rules.authorization.additional_room_creators
            && preset == Preset::TrustedPrivateChat
            && !request.invite.is_empty()
        {
            // In v12 "as powerful as the creator" means being a creator, alongside any
            // additional creators the client named itself.
            let mut creators = match create_content.get("additional_creators") {
                Some(JsonValue::Array(creators)) => creators.clone(),
                _ => Vec::new(),
            };
            for invitee in &request.invite {
                let invitee = json!(invitee);
                if !creators.contains(&invitee) {
                    creators.push(invitee);
                }
            }
            create_content.insert("additional_creators".to_owned(), JsonValue::Array(creators));
        }

        let mut events = vec![EventSpec::state(
            TimelineEventType::RoomMember,
            creator.as_str(),
            self.member_profile(&request.creator).member_content(&MembershipState::Join, None),
        )];
        events.push(EventSpec::state(
            TimelineEventType::RoomPowerLevels,
            "",
            power_levels(&request, preset, rules.authorization.explicitly_privilege_room_creators)?,
        ));
        if let Some(alias) = &request.canonical_alias {
            events.push(EventSpec::state(TimelineEventType::RoomCanonicalAlias, "", json!({"alias": alias})));
        }
        let join_rule = if preset == Preset::PublicChat { "public" } else { "invite" };
        events.push(EventSpec::state(TimelineEventType::RoomJoinRules, "", json!({"join_rule": join_rule})));
        events.push(EventSpec::state(
            TimelineEventType::RoomHistoryVisibility,
            "",
            json!({"history_visibility": "shared"}),
        ));
        if preset != Preset::PublicChat {
            events.push(EventSpec::state(
                TimelineEventType::RoomGuestAccess,
                "",
                json!({"guest_access": "can_join"}),
            ));
        }
        events.extend(request.initial_state.iter().cloned());
        if let Some(name) = &request.name {
            events.push(EventSpec::state(TimelineEventType::RoomName, "", json!({"name": name})));
        }
        if let Some(topic) = &request.topic {
            // Since v1.15 the topic also goes as an `m.topic` content block, in plain text.
            let content =
                json!({"topic": topic, "m.topic": {"m.text": [{"mimetype": "text/plain", "body": topic}]}});
            events.push(EventSpec::state(TimelineEventType::RoomTopic, "", content));
        }
        // Another server's users are invited once the room exists: their server co-signs.
        for invitee in request.invite.iter().filter(|user| user.server_name() == self.server_name) {
            let mut content = self.member_profile(invitee).member_content(&MembershipState::Invite, None);
            if request.is_direct {
                content["is_direct"] = json!(true);
            }
            events.push(EventSpec::state(TimelineEventType::RoomMember, invitee.as_str(), content));
        }

        let room_id =
            self.build_room(&version, creator, create_content, events).await.map_err(invalid_state)?;
        if let Some(alias) = &request.canonical_alias {
            self.create_alias(alias, &room_id, creator).await?;
        }
        if request.public {
            self.publish(&room_id).await?;
        }
        tracing::info!(%room_id, %version, "room created");
        for invitee in request.invite.iter().filter(|user| user.server_name() != self.server_name) {
            if let Err(e) = self.invite(&room_id, creator, invitee, None, request.is_direct).await {
                tracing::warn!(%invitee, error = %e, "could not invite a user of another server");
            }
        }
        Ok(room_id)
    }

    /// Creates a room from its create event's content and the events that follow it, all
    /// sent by `creator`. Every event is built and authorized against the state the earlier
    /// ones make before anything is stored, so a room the rules refuse leaves nothing
    /// behind; an event they refuse fails with `Forbidden`.
    pub(super) async fn build_room(
        &self,
        version: &RoomVersionId,
        creator: &UserId,
        mut create_content: Map<String, JsonValue>,
        events: Vec<EventSpec>,
    ) -> Result<OwnedRoomId> {
        let rules = version.rules().expect("supported versions have rules");
        create_content.insert("room_version".to_owned(), json!(version));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".to_owned(), json!(creator));
        }
        let random_room_id = (!rules.authorization.room_create_event_id_as_room_id).then(|| {
            let local: String = {
                use rand::{Rng, distributions::Alphanumeric};
                rand::thread_rng().sample_iter(&Alphanumeric).take(18).map(char::from).collect()
            };
            RoomId::parse(format!("!{local}:{}", self.server_name)).expect("valid room id")
        });
        let draft = builder::Draft {
            room_id: random_room_id.as_deref(),
            sender: creator,
            kind: "m.room.create",
            state_key: Some(""),
            content: JsonValue::Object(create_content),
            redacts: None,
            prev_events: &[],
            auth_events: &[],
            depth: 1,
        };
        let (create_id, create_json) = builder::sign(draft, &rules, &self.server_name, &self.key)?;
        let room_id = match random_room_id {
            Some(id) => id,
            None => RoomId::parse(format!("!{}", &create_id.as_str()[1..]))
                .map_err(|e| Error::Internal(format!("room id from create event: {e}")))?,
        };
        let create_pdu =
            Pdu::from_json(create_id.clone(), &room_id, &create_json).map_err(Error::Internal)?;
        auth::authorize(&rules.authorization, &create_pdu, |_| None, |_, _| None)?;

        let mut state: HashMap<(String, String), Pdu> = HashMap::new();
        state.insert(("m.room.create".to_owned(), String::new()), create_pdu.clone());
        let mut built = vec![(create_pdu, create_json)];
        for spec in events {
            let (prev, depth) = {
                let (last, _) = built.last().expect("the create event comes first");
                (vec![last.event_id.clone()], u64::from(last.depth) + 1)
            };
            let position = Position { room_id: &room_id, rules: &rules, prev_events: &prev, depth };
            let (pdu, pdu_json) = self.prepare(
                position,
                creator,
                spec,
                |id| built.iter().map(|(pdu, _)| pdu).find(|pdu| pdu.event_id == id).cloned(),
                |kind, key| state.get(&(kind.to_string(), key.to_owned())).cloned(),
            )?;
            if let Some(key) = &pdu.state_key {
                state.insert((pdu.kind.to_string(), key.clone()), pdu.clone());
            }
            built.push((pdu, pdu_json));
        }

        let lock = self.append_lock(&room_id);
        let _guard = lock.lock().await;
        let mut room = self.store.new_room_record(room_id.clone(), version.clone())?;
        for (pdu, pdu_json) in built {
            room = self.store_event(&room, &pdu, pdu_json, None).await?;
        }
        Ok(room_id)
    }
}

/// The auth rules refusing an event of the initial state means the request asked for an
/// impossible room.
fn invalid_state(e: Error) -> Error {
    match e {
        Error::Forbidden(why) => {
            Error::InvalidRoomState(format!("the requested initial state is invalid: {why}"))
        }
        other => other,
    }
}

/// The initial power levels: the spec's defaults, the preset's changes, then the
/// client's override, key by key.
fn power_levels(request: &CreateRoom, preset: Preset, creators_are_implicit: bool) -> Result<JsonValue> {
    let mut users = Map::new();
    if !creators_are_implicit {
        users.insert(request.creator.to_string(), json!(100));
        if preset == Preset::TrustedPrivateChat {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
    }
    let mut content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == Preset::PublicChat { 50 } else { 0 },
        "notifications": {"room": 50},
    });
    if let Some(overrides) = &request.power_level_content_override {
        if creators_are_implicit
            && overrides.get("users").and_then(|u| u.get(request.creator.as_str())).is_some()
        {
            return Err(Error::InvalidParam(
                "in this room version the creator's power is implicit and cannot be listed in users"
                    .to_owned(),
            ));
        }
        for (key, value) in overrides {
            content[key] = value.clone();
        }
    }
    Ok(content)
}
