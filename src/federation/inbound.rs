//! What other servers send us: transactions of PDUs and EDUs.
//!
//! Every PDU is checked as the spec's "checks performed on receipt of a PDU" list:
//! format (`ruma::state_res::check_pdu_format`), the signatures of every server that must
//! have signed it (`ruma::signatures::verify_event`, with keys from [`super::keys`]), the
//! content hash (a mismatch stores the redacted form), then the auth rules in
//! [`crate::rooms::Rooms::add_event`]. Missing `prev_events` are fetched from the sender
//! with `/get_missing_events` first.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, RoomId, ServerName, UserId,
    api::federation::event::get_missing_events,
    room_version_rules::RoomVersionRules,
    signatures::{Verified, reference_hash, required_server_signatures_to_verify_event, verify_event},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use crate::{error::Error, rooms::Added, services::Services};

/// How many missing events to ask for at once, and how deep to chase gaps.
const MISSING_EVENTS_LIMIT: u32 = 20;

/// A PDU that passed the signature checks, with its id.
pub struct CheckedPdu {
    pub event_id: OwnedEventId,
    pub json: JsonValue,
}

/// The event id of a PDU (the reference hash, for every room version we support).
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, String> {
    let hash = reference_hash(object, rules).map_err(|e| format!("cannot hash the event: {e}"))?;
    EventId::parse(format!("${hash}")).map_err(|e| e.to_string())
}

/// Checks a PDU's format, signatures and content hash. A PDU whose content does not match
/// its hash is kept in its redacted form, as the spec requires.
pub async fn check_pdu(
    services: &Services,
    raw: &RawJsonValue,
    rules: &RoomVersionRules,
) -> Result<CheckedPdu, String> {
    let object: CanonicalJsonObject =
        serde_json::from_str(raw.get()).map_err(|e| format!("not canonical JSON: {e}"))?;
    ruma::state_res::check_pdu_format(&object, &rules.event_format)
        .map_err(|e| format!("malformed PDU: {e}"))?;
    let event_id = event_id_of(&object, rules)?;
    let servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
        .map_err(|e| format!("{event_id}: {e}"))?;
    let federation = &services.federation;
    let keys = federation.keys.key_map(&federation.client, &servers).await;
    let object = match verify_event(&keys, &object, rules) {
        Ok(Verified::All) => object,
        Ok(Verified::Signatures) => {
            tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
            ruma::canonical_json::redact(object, &rules.redaction, None).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(format!("{event_id}: bad signature: {e}")),
    };
    let json = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    Ok(CheckedPdu { event_id, json })
}

/// Processes one `PUT /send/{txnId}`; returns the outcome per PDU.
pub async fn transaction(
    services: &Services,
    origin: &ServerName,
    pdus: &[Box<RawJsonValue>],
    edus: &[JsonValue],
) -> BTreeMap<OwnedEventId, Result<(), String>> {
    let mut outcomes = BTreeMap::new();
    for raw in pdus {
        if let Some((event_id, outcome)) = receive_pdu(services, origin, raw).await {
            outcomes.insert(event_id, outcome);
        }
    }
    for edu in edus {
        if let Err(e) = apply_edu(services, origin, edu).await {
            tracing::info!(%origin, edu_type = %edu["edu_type"], error = %e, "ignored an EDU");
        }
    }
    outcomes
}

/// Checks and stores one PDU of a transaction. `None` when it cannot even be identified.
async fn receive_pdu(
    services: &Services,
    origin: &ServerName,
    raw: &RawJsonValue,
) -> Option<(OwnedEventId, Result<(), String>)> {
    #[derive(serde::Deserialize)]
    struct RoomOf {
        room_id: ruma::OwnedRoomId,
    }
    let room_id = serde_json::from_str::<RoomOf>(raw.get()).ok()?.room_id;
    let room = services.rooms.room(&room_id).ok()?;
    let rules = room.version.rules()?;
    let checked = match check_pdu(services, raw, &rules).await {
        Ok(checked) => checked,
        Err(why) => {
            tracing::warn!(%origin, %why, "refused a PDU");
            let object: CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
            return Some((event_id_of(&object, &rules).ok()?, Err(why)));
        }
    };
    fetch_missing_prev_events(services, origin, &room_id, &rules, &checked).await;
    let outcome = match services.rooms.add_event(&room_id, &checked.event_id, checked.json).await {
        Ok(Added::Stored | Added::AlreadyKnown) => Ok(()),
        Ok(Added::SoftFailed) => Ok(()),
        Err(e) => {
            tracing::warn!(%origin, event_id = %checked.event_id, error = %e, "refused a PDU");
            Err(e.to_string())
        }
    };
    Some((checked.event_id, outcome))
}

/// Fills a gap before `pdu` with `/get_missing_events` from `origin`: the events between
/// our forward extremities and it, stored oldest first.
async fn fetch_missing_prev_events(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    pdu: &CheckedPdu,
) {
    let prevs: Vec<OwnedEventId> =
        serde_json::from_value(pdu.json["prev_events"].clone()).unwrap_or_default();
    if prevs.iter().all(|id| services.rooms.pdu(id).ok().flatten().is_some()) {
        return;
    }
    let Ok(room) = services.rooms.room(room_id) else { return };
    let mut request = get_missing_events::v1::Request::new(
        room_id.to_owned(),
        room.extremities.clone(),
        vec![pdu.event_id.clone()],
    );
    request.limit = MISSING_EVENTS_LIMIT.into();
    let response = match services.federation.client.send(origin, request).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(%origin, %room_id, error = %e, "cannot fetch missing events");
            return;
        }
    };
    let mut events = Vec::new();
    for raw in &response.events {
        match check_pdu(services, raw, rules).await {
            Ok(checked) => events.push(checked),
            Err(why) => tracing::info!(%origin, %why, "refused a missing event"),
        }
    }
    events.sort_by_key(|e| e.json["depth"].as_u64().unwrap_or_default());
    for event in events {
        if let Err(e) = services.rooms.add_event(room_id, &event.event_id, event.json).await {
            tracing::info!(%origin, event_id = %event.event_id, error = %e, "refused a missing event");
        }
    }
}

/// Applies one EDU. Servers speak only for their own users.
async fn apply_edu(services: &Services, origin: &ServerName, edu: &JsonValue) -> Result<(), Error> {
    let content = &edu["content"];
    let from_origin = |user: &str| -> Result<ruma::OwnedUserId, Error> {
        let user = UserId::parse(user).map_err(|e| Error::BadJson(e.to_string()))?;
        if user.server_name() != origin {
            return Err(Error::Forbidden(format!("{origin} cannot speak for {user}")));
        }
        Ok(user)
    };
    match edu["edu_type"].as_str() {
        Some("m.typing") => {
            let room_id = RoomId::parse(content["room_id"].as_str().unwrap_or_default())
                .map_err(|e| Error::BadJson(e.to_string()))?;
            let user = from_origin(content["user_id"].as_str().unwrap_or_default())?;
            let typing = content["typing"].as_bool().unwrap_or(false);
            let timeout = typing.then_some(std::time::Duration::from_secs(30));
            services.rooms.set_typing(&room_id, &user, timeout).await
        }
        Some("m.receipt") => {
            let Some(rooms) = content.as_object() else { return Ok(()) };
            for (room_id, by_type) in rooms {
                let room_id = RoomId::parse(room_id).map_err(|e| Error::BadJson(e.to_string()))?;
                let Some(users) = by_type["m.read"].as_object() else { continue };
                for (user, receipt) in users {
                    let user = from_origin(user)?;
                    let thread = receipt["data"]["thread_id"].as_str();
                    let event_ids: Vec<OwnedEventId> =
                        serde_json::from_value(receipt["event_ids"].clone()).unwrap_or_default();
                    for event_id in event_ids {
                        services.rooms.set_receipt(&room_id, &user, "m.read", &event_id, thread).await?;
                    }
                }
            }
            Ok(())
        }
        Some("m.direct_to_device") => {
            let sender = from_origin(content["sender"].as_str().unwrap_or_default())?;
            let kind = content["type"].as_str().unwrap_or_default();
            let message_id = content["message_id"].as_str().unwrap_or_default();
            let targets: BTreeMap<ruma::OwnedUserId, BTreeMap<String, JsonValue>> =
                serde_json::from_value(content["messages"].clone())
                    .map_err(|e| Error::BadJson(e.to_string()))?;
            let devices_of = |user: &UserId| {
                services.accounts.devices(user).unwrap_or_default().into_iter().map(|(id, _)| id).collect()
            };
            // The message id makes a retried EDU idempotent, like a client's transaction id.
            let via: &ruma::DeviceId = "federation".into();
            services.e2ee.send_to_device((&sender, via), message_id, kind, targets, devices_of).await
        }
        Some("m.device_list_update" | "m.signing_key_update") => {
            let user = from_origin(content["user_id"].as_str().unwrap_or_default())?;
            services.e2ee.remote_keys_changed(&user).await
        }
        // Presence from other servers is not shown yet.
        _ => Ok(()),
    }
}
