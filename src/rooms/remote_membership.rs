//! Membership that crosses servers, and the decision of when it must.
//!
//! - Joining a room this server does not have: `make_join` to a resident server for a
//!   template, sign it, `send_join` it, check what comes back, and start our copy of the
//!   room from the state the resident server sent ([`Rooms::adopt_joined_room`]).
//! - Inviting another server's user: that server must co-sign the invite (`/invite`)
//!   before it is stored and sent to the room like any event.
//! - Being invited from another server: check and co-sign the invite, and keep it (with
//!   the stripped state that describes the room) for the user's `/sync`.
//! - Rejecting such an invite: `make_leave` and `send_leave` through the inviting server.
//!
//! [`Rooms::join`], [`Rooms::invite`] and [`Rooms::leave`] are the operations the client
//! API calls: each goes through another server only when this one cannot act alone.

use ruma::{
    CanonicalJsonObject, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId,
    RoomOrAliasId, RoomVersionId, UserId,
    api::federation::{
        membership::{
            RawStrippedState, create_invite, create_join_event, create_leave_event, prepare_join_event,
            prepare_leave_event,
        },
        query::get_room_information,
    },
    events::{TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    signatures::{hash_and_sign_event, sign_json},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{EventSpec, Rooms, SUPPORTED_VERSIONS};
use crate::{
    error::{Error, Result},
    federation::event_id_of,
    now_ms,
    storage::RemoteInvite,
};

fn raw_json(value: &impl serde::Serialize) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::Internal(e.to_string()))
}

/// The rules of a room version this server supports.
fn supported_rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version
        .rules()
        .filter(|_| SUPPORTED_VERSIONS.contains(version))
        .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version} is not supported")))
}

impl Rooms {
    /// Resolves `!room:server` or `#alias:server` to a room id, asking the alias's server
    /// when it is another one; also returns servers to join through.
    pub async fn resolve_room(&self, target: &RoomOrAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        match <&RoomId>::try_from(target) {
            Ok(room_id) => Ok((room_id.to_owned(), vec![])),
            Err(alias) if alias.server_name() != self.server_name => self.resolve_remote_alias(alias).await,
            Err(alias) => self
                .resolve_alias(alias)?
                .map(|room_id| (room_id, vec![]))
                .ok_or_else(|| Error::NotFound(format!("no room has the alias {alias}"))),
        }
    }

    /// Resolves an alias of another server through `/query/directory`.
    pub async fn resolve_remote_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let response = self.federation.client.send(alias.server_name(), request).await.map_err(|e| {
            Error::NotFound(format!("cannot resolve {alias} on {}: {e}", alias.server_name()))
        })?;
        Ok((response.room_id, response.servers))
    }

    /// Joins a local user to a room: here when this server has the room, otherwise through
    /// another server in it: those in `via`, the one that sent an invite, the room id's.
    pub async fn join(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        mut via: Vec<OwnedServerName>,
    ) -> Result<()> {
        if self.store.room(room_id)?.is_some() {
            return self.join_here(room_id, user, reason).await;
        }
        if let Some(invite) = self.store.remote_invite(user, room_id)? {
            via.push(invite.via);
        }
        via.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut last_error = Error::NotFound(format!("no server to join {room_id} through"));
        for server in via.iter().filter(|s| **s != self.server_name) {
            match self.join_through(server, room_id, user, reason).await {
                Ok(()) => {
                    self.store.remove_remote_invite(user, room_id).await?;
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
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let client = &self.federation.client;
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_VERSIONS.to_vec();
        let template = client.send(server, request).await?;
        let content = self.member_profile(user).member_content(&MembershipState::Join, reason);
        let (version, rules, event_id, event) =
            self.sign_template(server, user, template.room_version, &template.event, content)?;
        let response = client
            .send(
                server,
                create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw_json(&event)?),
            )
            .await?;
        let state = self.federation.verify_all(&response.room_state.state, &rules).await;
        let auth_chain = self.federation.verify_all(&response.room_state.auth_chain, &rules).await;
        let join = serde_json::to_value(&event).map_err(|e| Error::Internal(e.to_string()))?;
        let pairs = |checked: Vec<crate::federation::CheckedPdu>| {
            checked.into_iter().map(|pdu| (pdu.event_id, pdu.json)).collect()
        };
        self.adopt_joined_room(room_id, version, (&event_id, join), pairs(state), pairs(auth_chain)).await
    }

    /// Fills in and signs a membership event template another server made (`make_join`,
    /// `make_leave`) for `user`, after checking it is one.
    fn sign_template(
        &self,
        server: &OwnedServerName,
        user: &UserId,
        version: Option<RoomVersionId>,
        template: &RawJsonValue,
        content: JsonValue,
    ) -> Result<(RoomVersionId, RoomVersionRules, OwnedEventId, CanonicalJsonObject)> {
        let version = version.unwrap_or(RoomVersionId::V1);
        let rules = supported_rules(&version)?;
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
        hash_and_sign_event(self.server_name.as_str(), &*self.key, &mut event, &rules.redaction)
            .map_err(|e| Error::Internal(format!("cannot sign the membership event: {e}")))?;
        let event_id = event_id_of(&event, &rules).map_err(Error::Internal)?;
        Ok((version, rules, event_id, event))
    }

    /// Leaves a room or rejects an invite. An invite to a room only the inviting server has
    /// is rejected through that server.
    pub async fn leave(&self, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
        if self.store.room(room_id)?.is_none()
            && let Some(invite) = self.store.remote_invite(user, room_id)?
        {
            return self.reject_remote_invite(room_id, user, &invite.via).await;
        }
        self.leave_here(room_id, user, reason).await
    }

    /// Rejects an invite to a room this server does not have, through the server that sent
    /// it (`make_leave`, `send_leave`), and forgets it here either way.
    async fn reject_remote_invite(
        &self,
        room_id: &RoomId,
        user: &UserId,
        via: &OwnedServerName,
    ) -> Result<()> {
        let client = &self.federation.client;
        let rejected = async {
            let template = client
                .send(via, prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned()))
                .await?;
            let content = serde_json::json!({"membership": MembershipState::Leave});
            let (_, _, event_id, event) =
                self.sign_template(via, user, template.room_version, &template.event, content)?;
            client
                .send(
                    via,
                    create_leave_event::v2::Request::new(room_id.to_owned(), event_id, raw_json(&event)?),
                )
                .await?;
            Ok::<(), Error>(())
        };
        if let Err(e) = rejected.await {
            // The invite is still dropped here: the user asked to be rid of it.
            tracing::info!(%via, %room_id, error = %e, "could not tell the inviting server of the rejection");
        }
        let position = self.store.reject_remote_invite(user, room_id).await?;
        self.notifier.notify([user], position);
        Ok(())
    }

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
        let content = self.invite_content(room_id, target, reason, is_direct)?;
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
        invite_state: Vec<JsonValue>,
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
        if !self.accounts.exists(&target)? {
            return Err(Error::NotFound(format!("no user {target} here")));
        }
        let signed = self.co_sign(checked.json.clone(), &rules)?;
        let invite = RemoteInvite {
            room_version: version.clone(),
            event: signed.clone(),
            invite_state: stripped_invite_state(&invite_state, &target, pdu),
            via: origin.clone(),
        };
        let position = self.store.store_remote_invite(&target, room_id, &invite).await?;
        self.notifier.notify([&*target], position);
        Ok(signed)
    }

    /// Adds our signature over the redacted event to another server's event, as for the
    /// events we send.
    fn co_sign(&self, event: JsonValue, rules: &RoomVersionRules) -> Result<JsonValue> {
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
}

/// What the invited user's clients are shown of a room: the inviting server sends full
/// PDUs (or, before v1.16, stripped events), and clients get the stripped form either way,
/// with the invite itself.
fn stripped_invite_state(
    invite_state: &[JsonValue],
    target: &OwnedUserId,
    invite: &JsonValue,
) -> Vec<JsonValue> {
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
        "type": "m.room.member", "state_key": target, "sender": invite["sender"], "content": invite["content"],
    }));
    state
}
