//! Turning a draft into a signed PDU: room-version format, content hash, our ed25519
//! signature, and the event id from the reference hash, all through `ruma::signatures`.

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName, UserId,
    canonical_json::try_from_json_map,
    room_version_rules::RoomVersionRules,
    signatures::{JsonError, hash_and_sign_event, reference_hash},
};
use serde_json::{Value as JsonValue, json};

use super::Error;
use crate::signing_key::SigningKey;

/// Everything about a new event except what signing adds.
pub struct Draft<'a> {
    /// `None` only for the create event of a room whose id is that event's hash.
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: JsonValue,
    /// Pre-v11 rooms carry a redaction's target at the top level.
    pub redacts: Option<&'a EventId>,
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: u64,
}

/// Signs a draft; returns the event id and the PDU as stored and sent over federation.
pub fn sign(
    draft: Draft<'_>,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &SigningKey,
) -> Result<(OwnedEventId, JsonValue), Error> {
    let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let mut pdu = json!({
        "auth_events": draft.auth_events,
        "content": draft.content,
        "depth": draft.depth,
        "origin_server_ts": now,
        "prev_events": draft.prev_events,
        "sender": draft.sender,
        "type": draft.kind,
    });
    if let Some(room_id) = draft.room_id {
        pdu["room_id"] = json!(room_id);
    }
    if let Some(state_key) = draft.state_key {
        pdu["state_key"] = json!(state_key);
    }
    if let Some(redacts) = draft.redacts {
        pdu["redacts"] = json!(redacts);
    }
    let JsonValue::Object(map) = pdu else { unreachable!("built as an object") };
    let mut object = try_from_json_map(map)
        .map_err(|e| Error::BadJson(format!("content is not valid canonical JSON: {e}")))?;
    hash_and_sign_event(server_name.as_str(), key, &mut object, &rules.redaction).map_err(json_error)?;
    let hash = reference_hash(&object, rules).map_err(json_error)?;
    let event_id =
        EventId::parse(format!("${hash}")).map_err(|e| Error::Internal(format!("event id: {e}")))?;
    let pdu = serde_json::to_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((event_id, pdu))
}

fn json_error(e: JsonError) -> Error {
    match e {
        JsonError::PduTooLarge => Error::TooLarge("the event exceeds the 65536-byte PDU limit".to_owned()),
        other => Error::BadJson(other.to_string()),
    }
}
