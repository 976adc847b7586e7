//! Room endpoints: create, upgrade, state, send, read events and history, members.

use std::sync::Arc;

use ruma::{
    UserId,
    api::client::room::Visibility,
    api::client::{
        membership::{get_member_events, joined_members, joined_rooms},
        message::send_message_event,
        redact::redact_event,
        room::{
            create_room::{self, v3::RoomPreset},
            upgrade_room,
        },
        state::{get_state_event_for_key, get_state_events, send_state_event},
    },
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
    serde::Raw,
};
use serde_json::{Map, Value as JsonValue};

use crate::{
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    rooms::{CreateRoom, EventSpec, Preset, Txn},
    services::Services,
};

pub fn routes(router: &mut Router) {
    // A room's creation or upgrade is one send, whatever events it makes.
    router.ruma_limited(RateLimitClass::Message, create);
    router.ruma(joined);
    router.ruma_limited(RateLimitClass::Message, send_message);
    router.ruma_limited(RateLimitClass::Message, send_state);
    router.ruma(state_all);
    router.ruma(state_one);
    router.ruma_limited(RateLimitClass::Message, redact);
    router.ruma(members);
    router.ruma(joined_members_of);
    router.ruma_limited(RateLimitClass::Message, upgrade);
}

fn json_object<T>(raw: &Raw<T>, what: &str) -> Result<Map<String, JsonValue>, ApiError> {
    match serde_json::from_str(raw.json().get()) {
        Ok(JsonValue::Object(map)) => Ok(map),
        _ => Err(ApiError::bad_json(format!("{what} must be a JSON object"))),
    }
}

pub fn raw<T>(value: JsonValue) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("JSON values serialise"))
}

async fn create(
    services: Arc<Services>,
    req: Req<create_room::v3::Request>,
) -> Result<create_room::v3::Response, ApiError> {
    let body = req.body;
    let creator = req.auth.user_id;
    let preset = match body.preset {
        None => None,
        Some(RoomPreset::PrivateChat) => Some(Preset::PrivateChat),
        Some(RoomPreset::TrustedPrivateChat) => Some(Preset::TrustedPrivateChat),
        Some(RoomPreset::PublicChat) => Some(Preset::PublicChat),
        Some(other) => return Err(ApiError::bad_json(format!("unknown preset {}", other.as_str()))),
    };
    let mut initial_state = Vec::new();
    for event in &body.initial_state {
        let event = json_object(event, "an initial_state event")?;
        let kind = event
            .get("type")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| ApiError::bad_json("initial_state events need a type"))?;
        let state_key = event.get("state_key").and_then(JsonValue::as_str).unwrap_or_default();
        let content = event.get("content").cloned().unwrap_or_default();
        initial_state.push(EventSpec::state(kind, state_key, content));
    }
    let creation_content = match &body.creation_content {
        Some(raw) => json_object(raw, "creation_content")?,
        None => Map::new(),
    };
    let power_level_content_override = match &body.power_level_content_override {
        Some(raw) => Some(json_object(raw, "power_level_content_override")?),
        None => None,
    };
    let canonical_alias = body
        .room_alias_name
        .as_deref()
        .map(|name| {
            ruma::RoomAliasId::parse(format!("#{name}:{}", services.config.server_name))
                .map_err(|e| ApiError::invalid_param(format!("room_alias_name: {e}")))
        })
        .transpose()?;
    let room_id = services
        .rooms
        .create_room(CreateRoom {
            creator: creator.clone(),
            version: body.room_version,
            preset,
            public: body.visibility == Visibility::Public,
            name: body.name,
            topic: body.topic,
            canonical_alias,
            invite: body.invite.clone(),
            is_direct: body.is_direct,
            initial_state,
            creation_content,
            power_level_content_override,
        })
        .await?;
    Ok(create_room::v3::Response::new(room_id))
}

async fn joined(
    services: Arc<Services>,
    req: Req<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response, ApiError> {
    Ok(joined_rooms::v3::Response::new(services.rooms.joined_rooms(&req.auth.user_id)?))
}

async fn send_message(
    services: Arc<Services>,
    req: Req<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response, ApiError> {
    let content = JsonValue::Object(json_object(&req.body.body, "event content")?);
    let kind = TimelineEventType::from(req.body.event_type.to_string());
    let txn = Txn { device_id: &req.auth.device_id, txn_id: req.body.txn_id.as_str() };
    let event_id = services
        .rooms
        .send(&req.body.room_id, &req.auth.user_id, EventSpec::message(kind, content), Some(txn))
        .await?;
    Ok(send_message_event::v3::Response::new(event_id))
}

async fn send_state(
    services: Arc<Services>,
    req: Req<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response, ApiError> {
    let content = JsonValue::Object(json_object(&req.body.body, "state content")?);
    // Only for senders the auth rules would let through, so nobody else learns about aliases.
    let kind = StateEventType::RoomCanonicalAlias;
    if req.body.event_type == kind
        && services.rooms.may_send_state(&req.body.room_id, &req.auth.user_id, &kind)?
    {
        services.rooms.check_canonical_alias(&req.body.room_id, &content)?;
    }
    let spec = EventSpec::state(req.body.event_type.to_string(), req.body.state_key, content);
    let event_id = services.rooms.send(&req.body.room_id, &req.auth.user_id, spec, None).await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

async fn redact(
    services: Arc<Services>,
    req: Req<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response, ApiError> {
    let body = req.body;
    let txn = Txn { device_id: &req.auth.device_id, txn_id: body.txn_id.as_str() };
    let event_id = services
        .rooms
        .redact(&body.room_id, &req.auth.user_id, &body.event_id, body.reason.as_deref(), txn)
        .await?;
    Ok(redact_event::v3::Response::new(event_id))
}

async fn state_all(
    services: Arc<Services>,
    req: Req<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response, ApiError> {
    let state = services.rooms.reader(&req.body.room_id, &req.auth.user_id)?.state()?;
    let events = state.iter().map(|pdu| pdu.client_event().to_raw()).collect();
    Ok(get_state_events::v3::Response::new(events))
}

async fn state_one(
    services: Arc<Services>,
    req: Req<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response, ApiError> {
    let body = req.body;
    let kind = body.event_type.to_string();
    let pdu = services
        .rooms
        .reader(&body.room_id, &req.auth.user_id)?
        .state_event(&kind, &body.state_key)?
        .ok_or_else(|| ApiError::not_found(format!("no {kind} state with key {:?}", body.state_key)))?;
    let value = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => pdu.client_event().to_json(),
        _ => pdu.content_json(),
    };
    Ok(get_state_event_for_key::v3::Response::new(
        serde_json::value::to_raw_value(&value).expect("JSON values serialise"),
    ))
}

async fn members(
    services: Arc<Services>,
    req: Req<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response, ApiError> {
    let body = req.body;
    let chunk = services
        .rooms
        .reader(&body.room_id, &req.auth.user_id)?
        .state()?
        .into_iter()
        .filter(|pdu| pdu.kind == TimelineEventType::RoomMember)
        .filter(|pdu| {
            let membership = pdu.membership();
            let membership = membership.as_ref().map(MembershipState::as_str);
            let is = body.membership.as_ref().map(|m| Some(m.as_str()) == membership);
            let is_not = body.not_membership.as_ref().map(|m| Some(m.as_str()) != membership);
            // Given both, the spec makes them an "or": either one matching keeps the member.
            match (is, is_not) {
                (Some(is), Some(is_not)) => is || is_not,
                (is, is_not) => is.unwrap_or(true) && is_not.unwrap_or(true),
            }
        })
        .map(|pdu| pdu.client_event().to_raw())
        .collect();
    Ok(get_member_events::v3::Response::new(chunk))
}

async fn joined_members_of(
    services: Arc<Services>,
    req: Req<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response, ApiError> {
    let body = req.body;
    services.rooms.reader(&body.room_id, &req.auth.user_id)?.require_present()?;
    let mut joined = std::collections::BTreeMap::new();
    for pdu in services.rooms.current_state(&body.room_id)? {
        if pdu.kind != TimelineEventType::RoomMember {
            continue;
        }
        if pdu.membership() != Some(MembershipState::Join) {
            continue;
        }
        let content = pdu.content_json();
        let Some(user) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) else { continue };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = content["displayname"].as_str().map(str::to_owned);
        member.avatar_url = content["avatar_url"].as_str().map(Into::into);
        joined.insert(user, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

async fn upgrade(
    services: Arc<Services>,
    req: Req<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response, ApiError> {
    let body = req.body;
    let replacement = services
        .rooms
        .upgrade_room(&req.auth.user_id, &body.room_id, &body.new_version, &body.additional_creators)
        .await?;
    Ok(upgrade_room::v3::Response::new(replacement))
}
