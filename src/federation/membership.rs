//! Joins and invites that cross servers.
//!
//! - Joining a room this server does not have: `make_join` to a resident server for a
//!   template, sign it, `send_join` it, check what comes back, and start our copy of the
//!   room from the state the resident server sent.
//! - Inviting another server's user: that server must co-sign the invite (`/invite`)
//!   before it is stored and sent to the room.
//! - Being invited from another server: check and co-sign the invite, and keep it (with
//!   the stripped state that describes the room) for the user's `/sync`.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId,
    UserId,
    api::federation::{
        membership::{
            RawStrippedState, create_invite, create_join_event, create_leave_event, prepare_join_event,
            prepare_leave_event,
        },
        query::{get_profile_information, get_room_information},
    },
    events::TimelineEventType,
    room_version_rules::RoomVersionRules,
    signatures::{hash_and_sign_event, sign_json},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::inbound::{check_pdu, event_id_of};
use crate::{
    error::{Error, Result},
    now_ms,
    rooms::{EventSpec, MemberProfile, SUPPORTED_VERSIONS},
    services::Services,
    storage::RemoteInvite,
};

fn raw_json(value: &impl serde::Serialize) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::Internal(e.to_string()))
}

/// Joins `user` to a room this server is not in, through the first of `via` that lets it.
pub async fn join_remote(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    profile: &MemberProfile,
    via: &[OwnedServerName],
) -> Result<()> {
    let own = &services.config.server_name;
    let mut last_error = Error::NotFound(format!("no server to join {room_id} through"));
    for server in via.iter().filter(|s| *s != own) {
        match join_through(services, server, room_id, user, profile).await {
            Ok(()) => {
                services.store.remove_remote_invite(user, room_id).await?;
                return Ok(());
            }
            Err(e) => {
                tracing::info!(%server, %room_id, error = %e, "could not join through this server");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

async fn join_through(
    services: &Services,
    server: &OwnedServerName,
    room_id: &RoomId,
    user: &UserId,
    profile: &MemberProfile,
) -> Result<()> {
    let client = &services.federation.client;
    let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    request.ver = SUPPORTED_VERSIONS.to_vec();
    let template = client.send(server, request).await?;
    let content = profile.member_content("join", None);
    let (version, rules, event_id, event) =
        sign_template(services, server, user, template.room_version, &template.event, content)?;

    let response = client
        .send(
            server,
            create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw_json(&event)?),
        )
        .await?;
    let state = check_all(services, &response.room_state.state, &rules).await;
    let auth_chain = check_all(services, &response.room_state.auth_chain, &rules).await;
    let join = serde_json::to_value(&event).map_err(|e| Error::Internal(e.to_string()))?;
    services.rooms.adopt_joined_room(room_id, version, (&event_id, join), state, auth_chain).await
}

/// Fills in and signs a membership event template another server made (`make_join`,
/// `make_leave`) for `user`, after checking it is one.
fn sign_template(
    services: &Services,
    server: &OwnedServerName,
    user: &UserId,
    version: Option<RoomVersionId>,
    template: &RawJsonValue,
    content: JsonValue,
) -> Result<(RoomVersionId, RoomVersionRules, OwnedEventId, CanonicalJsonObject)> {
    let version = version.unwrap_or(RoomVersionId::V1);
    let rules = version
        .rules()
        .filter(|_| SUPPORTED_VERSIONS.contains(&version))
        .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version} is not supported")))?;
    let mut event: CanonicalJsonObject = serde_json::from_str(template.get())
        .map_err(|e| Error::Federation(format!("{server} sent a bad membership template: {e}")))?;
    let is_users = event.get("type").and_then(|t| t.as_str()) == Some("m.room.member")
        && event.get("state_key").and_then(|k| k.as_str()) == Some(user.as_str())
        && event.get("sender").and_then(|k| k.as_str()) == Some(user.as_str());
    if !is_users {
        return Err(Error::Federation(format!("{server} sent a membership template for something else")));
    }
    event.insert(
        "content".to_owned(),
        serde_json::from_value(content).map_err(|e| Error::Internal(e.to_string()))?,
    );
    event.insert(
        "origin_server_ts".to_owned(),
        ruma::CanonicalJsonValue::Integer(ruma::Int::try_from(now_ms()).unwrap_or_default()),
    );
    hash_and_sign_event(own_name(services), &*services.signing_key, &mut event, &rules.redaction)
        .map_err(|e| Error::Internal(format!("cannot sign the membership event: {e}")))?;
    let event_id = event_id_of(&event, &rules).map_err(Error::Internal)?;
    Ok((version, rules, event_id, event))
}

/// Rejects an invite to a room this server does not have, through the server that sent it
/// (`make_leave`, `send_leave`), and forgets it here either way.
pub async fn reject_remote_invite(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    via: &OwnedServerName,
) -> Result<()> {
    let client = &services.federation.client;
    let rejected = async {
        let template = client
            .send(via, prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned()))
            .await?;
        let content = serde_json::json!({"membership": "leave"});
        let (_, _, event_id, event) =
            sign_template(services, via, user, template.room_version, &template.event, content)?;
        client
            .send(via, create_leave_event::v2::Request::new(room_id.to_owned(), event_id, raw_json(&event)?))
            .await?;
        Ok::<(), Error>(())
    };
    if let Err(e) = rejected.await {
        // The invite is still dropped here: the user asked to be rid of it.
        tracing::info!(%via, %room_id, error = %e, "could not tell the inviting server of the rejection");
    }
    let position = services.store.reject_remote_invite(user, room_id).await?;
    services.sync.notify_user(user, position);
    Ok(())
}

/// The PDUs among `raw` whose signatures check out, with their ids.
async fn check_all(
    services: &Services,
    raw: &[Box<RawJsonValue>],
    rules: &ruma::room_version_rules::RoomVersionRules,
) -> Vec<(OwnedEventId, JsonValue)> {
    let mut checked = Vec::with_capacity(raw.len());
    for pdu in raw {
        match check_pdu(services, pdu, rules).await {
            Ok(pdu) => checked.push((pdu.event_id, pdu.json)),
            Err(why) => tracing::warn!(%why, "dropped an event of a joined room's state"),
        }
    }
    checked
}

/// Invites another server's user: their server co-signs the invite, then it is stored and
/// sent to the room like any event.
pub async fn invite_remote(
    services: &Services,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    content: JsonValue,
) -> Result<()> {
    let spec = EventSpec::state(TimelineEventType::RoomMember, target.as_str(), content);
    let (version, event_id, pdu) = services.rooms.prepare_event(room_id, sender, spec).await?;
    let rules = version.rules().ok_or_else(|| Error::Internal("unknown room version".to_owned()))?;
    let invite_state = services
        .rooms
        .invite_state(room_id)?
        .iter()
        .map(|event| Ok(RawStrippedState::Pdu(raw_json(event)?)))
        .collect::<Result<Vec<_>>>()?;
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        event_id.clone(),
        version,
        raw_json(&pdu)?,
        invite_state,
    );
    let response = services.federation.client.send(target.server_name(), request).await?;
    let signed = check_pdu(services, &response.event, &rules)
        .await
        .map_err(|why| Error::Federation(format!("{} returned a bad invite: {why}", target.server_name())))?;
    if signed.event_id != event_id {
        return Err(Error::Federation(format!("{} changed the invite", target.server_name())));
    }
    services.rooms.add_event(room_id, &event_id, signed.json).await?;
    Ok(())
}

/// `PUT /invite` from another server: checks the invite is for one of our users and signed
/// by its sender's server, co-signs it, and keeps it for the user's `/sync`.
pub async fn receive_invite(
    services: &Services,
    origin: &OwnedServerName,
    room_id: &RoomId,
    version: &RoomVersionId,
    event: &RawJsonValue,
    invite_state: Vec<JsonValue>,
) -> Result<JsonValue> {
    let rules = version
        .rules()
        .filter(|_| SUPPORTED_VERSIONS.contains(version))
        .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version} is not supported")))?;
    let checked = check_pdu(services, event, &rules).await.map_err(Error::Forbidden)?;
    let pdu = &checked.json;
    let target = pdu["state_key"]
        .as_str()
        .and_then(|key| UserId::parse(key).ok())
        .filter(|user| user.server_name() == services.config.server_name)
        .ok_or_else(|| Error::Forbidden("the invite is not for a user of this server".to_owned()))?;
    let sender = pdu["sender"].as_str().and_then(|s| UserId::parse(s).ok());
    let is_invite = pdu["type"] == "m.room.member" && pdu["content"]["membership"] == "invite";
    if !is_invite || sender.is_none_or(|s| s.server_name() != origin) || pdu["room_id"] != room_id.as_str() {
        return Err(Error::Forbidden("not an invite from the requesting server".to_owned()));
    }
    if services.accounts.profile(&target).is_err() {
        return Err(Error::NotFound(format!("no user {target} here")));
    }
    let mut object: CanonicalJsonObject =
        serde_json::from_value(checked.json.clone()).map_err(|e| Error::BadJson(e.to_string()))?;
    // Co-signing: our signature over the redacted event, as for events we send.
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|e| Error::BadJson(e.to_string()))?;
    redacted.remove("unsigned");
    redacted.remove("signatures");
    sign_json(own_name(services), &*services.signing_key, &mut redacted)
        .map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(ours) = redacted.get("signatures").and_then(|s| s.as_object()).cloned()
        && let Some(ruma::CanonicalJsonValue::Object(signatures)) = object.get_mut("signatures")
    {
        signatures.extend(ours);
    }
    let signed = serde_json::to_value(&object).map_err(|e| Error::Internal(e.to_string()))?;

    // The inviting server sends full PDUs (or, before v1.16, stripped events): clients
    // get the stripped form either way.
    let mut state: Vec<JsonValue> = invite_state
        .iter()
        .map(|event| {
            serde_json::json!({
                "type": event["type"], "state_key": event["state_key"],
                "sender": event["sender"], "content": event["content"],
            })
        })
        .collect();
    state.push(serde_json::json!({
        "type": "m.room.member", "state_key": target, "sender": pdu["sender"], "content": pdu["content"],
    }));
    let invite = RemoteInvite {
        room_version: version.clone(),
        event: signed.clone(),
        invite_state: state,
        via: origin.clone(),
    };
    let position = services.store.store_remote_invite(&target, room_id, &invite).await?;
    services.sync.notify_user(&target, position);
    Ok(signed)
}

/// Resolves an alias of another server through `/query/directory`.
pub async fn resolve_remote_alias(
    services: &Services,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    let request = get_room_information::v1::Request::new(alias.to_owned());
    let response =
        services.federation.client.send(alias.server_name(), request).await.map_err(|e| {
            Error::NotFound(format!("cannot resolve {alias} on {}: {e}", alias.server_name()))
        })?;
    Ok((response.room_id, response.servers))
}

/// Another server's user's profile fields, through `/query/profile`.
pub async fn remote_profile(services: &Services, user: &UserId) -> Result<BTreeMap<String, JsonValue>> {
    let request = get_profile_information::v1::Request::new(user.to_owned());
    let response = services
        .federation
        .client
        .send(user.server_name(), request)
        .await
        .map_err(|e| Error::NotFound(format!("profile of {user} not available: {e}")))?;
    Ok(response.iter().map(|(field, value)| (field.clone(), value.clone())).collect())
}

fn own_name(services: &Services) -> &str {
    services.config.server_name.as_str()
}
