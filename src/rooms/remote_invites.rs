//! Invites across servers, and the end of a local user's invite or knock in a room only
//! other servers have.
//!
//! - Inviting another server's user: that server must co-sign the invite (`/invite`)
//!   before it is stored and sent to the room like any event.
//! - Being invited from another server: check and co-sign the invite, and keep it (with
//!   the stripped state that describes the room) for the user's `/sync`. An invite after a
//!   knock is the knock accepted: it replaces the knock.
//! - Being turned away: the room's server sends the member's server the event that ends an
//!   invite or knock (a kick, a ban), and the user's room list follows.

use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
    api::federation::membership::{RawStrippedState, create_invite},
    events::{TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    signatures::sign_json,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use super::{
    EventSpec, Rooms,
    remote_membership::{raw_json, supported_rules},
};
use crate::{
    error::{Error, Result},
    federation::event_id_of,
    storage::RemoteMembership,
};

impl Rooms {
    /// Invites a user, of this server or another. Another server co-signs the invite of
    /// its user before it is stored and sent to the room like any event.
    pub async fn invite(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        self.check_not_blocked(room_id)?;
        let content = self.invite_content(room_id, target, reason, is_direct)?;
        if self.swallows(sender)? {
            return Ok(());
        }
        if target.server_name() == self.server_name {
            if !self.accounts.exists(target)? {
                return Err(Error::NotFound(format!("unknown user {target}")));
            }
            return self.set_membership(room_id, sender, target, content).await;
        }
        let spec = EventSpec::state(TimelineEventType::RoomMember, target.as_str(), content);
        let (version, event_id, pdu) = self.prepare_event(room_id, sender, spec).await?;
        let rules = version.rules().ok_or_else(|| Error::Internal("unknown room version".to_owned()))?;
        let invite_state = self
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
        let response = self.federation.client.send(target.server_name(), request).await?;
        let signed = self.federation.verify_pdu(&response.event, &rules).await.map_err(|why| {
            Error::Federation(format!("{} returned a bad invite: {why}", target.server_name()))
        })?;
        if signed.event_id != event_id {
            return Err(Error::Federation(format!("{} changed the invite", target.server_name())));
        }
        self.add_event(room_id, &event_id, signed.json).await?;
        Ok(())
    }

    /// `PUT /invite` from another server: checks the invite is for one of our users and
    /// signed by its sender's server, co-signs it, and keeps it for the user's `/sync`.
    pub async fn receive_invite(
        &self,
        origin: &OwnedServerName,
        room_id: &RoomId,
        version: &RoomVersionId,
        event: &RawJsonValue,
        invite_state: &[RawStrippedState],
    ) -> Result<JsonValue> {
        let rules = supported_rules(version)?;
        let checked = self.federation.verify_pdu(event, &rules).await.map_err(Error::Forbidden)?;
        let pdu = &checked.json;
        let target = pdu["state_key"]
            .as_str()
            .and_then(|key| UserId::parse(key).ok())
            .filter(|user| user.server_name() == self.server_name)
            .ok_or_else(|| Error::Forbidden("the invite is not for a user of this server".to_owned()))?;
        let sender = pdu["sender"].as_str().and_then(|s| UserId::parse(s).ok());
        let is_invite = pdu["type"] == "m.room.member" && pdu["content"]["membership"] == "invite";
        if !is_invite
            || sender.is_none_or(|s| s.server_name() != origin)
            || pdu["room_id"] != room_id.as_str()
        {
            return Err(Error::Forbidden("not an invite from the requesting server".to_owned()));
        }
        self.check_not_blocked(room_id)?;
        if !self.accounts.exists(&target)? {
            return Err(Error::NotFound(format!("no user {target} here")));
        }
        let signed = self.co_sign(checked.json.clone(), &rules)?;
        let invite = RemoteMembership {
            membership: MembershipState::Invite,
            room_version: version.clone(),
            stripped_state: self.stripped_room_state(invite_state, &rules, pdu).await,
            event: signed.clone(),
            via: origin.clone(),
        };
        let position = self.store.store_remote_membership(&target, room_id, &invite).await?;
        self.notifier.notify([&*target], position);
        Ok(signed)
    }

    /// Adds our signature over the redacted event to another server's event, as for the
    /// events we send.
    pub(super) fn co_sign(&self, event: JsonValue, rules: &RoomVersionRules) -> Result<JsonValue> {
        let mut object: CanonicalJsonObject =
            serde_json::from_value(event).map_err(|e| Error::BadJson(e.to_string()))?;
        let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        redacted.remove("unsigned");
        redacted.remove("signatures");
        sign_json(self.server_name.as_str(), &*self.key, &mut redacted)
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(ours) = redacted.get("signatures").and_then(|s| s.as_object()).cloned()
            && let Some(ruma::CanonicalJsonValue::Object(signatures)) = object.get_mut("signatures")
        {
            signatures.extend(ours);
        }
        serde_json::to_value(&object).map_err(|e| Error::Internal(e.to_string()))
    }

    /// What a user's clients are shown of a room another server invited them to or took
    /// their knock for: the events that server sent to describe it, stripped, then the
    /// user's own member event. Full PDUs (since Matrix 1.16) must be properly signed; older
    /// servers send stripped events, passed on as they are.
    pub(super) async fn stripped_room_state(
        &self,
        state: &[RawStrippedState],
        rules: &RoomVersionRules,
        own: &JsonValue,
    ) -> Vec<JsonValue> {
        let mut stripped = Vec::with_capacity(state.len() + 1);
        for event in state {
            #[allow(deprecated, reason = "servers before Matrix 1.16 still send stripped events")]
            let event = match event {
                RawStrippedState::Pdu(pdu) => match self.federation.verify_pdu(pdu, rules).await {
                    Ok(checked) => checked.json,
                    Err(why) => {
                        tracing::info!(%why, "dropped a badly signed event of a room's stripped state");
                        continue;
                    }
                },
                RawStrippedState::Stripped(event) => match serde_json::from_str(event.json().get()) {
                    Ok(event) => event,
                    Err(_) => continue,
                },
                _ => continue,
            };
            stripped.push(stripped_json(&event));
        }
        stripped.push(stripped_json(own));
        stripped
    }

    /// A PDU from `origin` for a room this server does not have. What concerns us there is
    /// the end of a local user's invite or knock (refused, withdrawn, a ban): the room's
    /// server sends that to the member's server. It must name the invite or knock we keep
    /// among its auth events; who may end it is the room's business, which this server cannot
    /// judge without the room. Anything else is not ours: `None`.
    pub(super) async fn receive_remote_membership_end(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        raw: &RawJsonValue,
    ) -> Option<(OwnedEventId, std::result::Result<(), String>)> {
        let pdu: JsonValue = serde_json::from_str(raw.get()).ok()?;
        let user = UserId::parse(pdu["state_key"].as_str()?).ok()?;
        let ends = match pdu["content"]["membership"].as_str() {
            Some("leave") => MembershipState::Leave,
            Some("ban") => MembershipState::Ban,
            _ => return None,
        };
        // The user's own leave went out from here, through `make_leave`.
        if pdu["type"] != "m.room.member"
            || user.server_name() != self.server_name
            || pdu["sender"] == user.as_str()
        {
            return None;
        }
        let remote = self.store.remote_membership(&user, room_id).ok()??;
        let rules = supported_rules(&remote.room_version).ok()?;
        let kept: CanonicalJsonObject = serde_json::from_value(remote.event).ok()?;
        let kept_id = event_id_of(&kept, &rules).ok()?;
        let names_ours =
            pdu["auth_events"].as_array().is_some_and(|ids| ids.iter().any(|id| id == kept_id.as_str()));
        if !names_ours {
            return None;
        }
        let checked = match self.federation.verify_pdu(raw, &rules).await {
            Ok(checked) => checked,
            Err(why) => {
                tracing::warn!(%origin, %why, "refused a PDU");
                let object: CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
                return Some((event_id_of(&object, &rules).ok()?, Err(why)));
            }
        };
        let outcome = match self.store.end_remote_membership(&user, room_id, ends).await {
            Ok(position) => {
                self.notifier.notify([&*user], position);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        Some((checked.event_id, outcome))
    }
}

/// An event as shown to someone who cannot see the room yet (the JSON form of
/// [`super::stripped`]).
fn stripped_json(event: &JsonValue) -> JsonValue {
    json!({
        "type": event["type"], "state_key": event["state_key"],
        "sender": event["sender"], "content": event["content"],
    })
}
