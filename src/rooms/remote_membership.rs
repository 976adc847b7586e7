//! Membership that crosses servers, and the decision of when it must.
//!
//! - Joining a room this server does not have: `make_join` to a resident server for a
//!   template, sign it, `send_join` it, check what comes back, and start our copy of the
//!   room from the state the resident server sent ([`Rooms::adopt_joined_room`]). In a
//!   restricted room the template names a user of the resident server who vouches for the
//!   join, and that server countersigns the event it returns.
//! - Knocking on a room this server does not have: `make_knock`, sign, `send_knock`; the
//!   knock is kept, with the stripped state the resident server answered with, for `/sync`.
//! - Leaving a room this server does not have (rejecting an invite, rescinding a knock):
//!   `make_leave` and `send_leave` through the server that sent the invite or took the knock.
//!
//! [`Rooms::join`], [`Rooms::knock`] and [`Rooms::leave`] are the operations the client API
//! calls: each goes through another server only when this one cannot act alone. Invites
//! across servers are in `remote_invites`.

use std::future::Future;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId,
    RoomOrAliasId, RoomVersionId, UserId,
    api::federation::{
        membership::{
            create_join_event, create_knock_event, create_leave_event, prepare_join_event,
            prepare_knock_event, prepare_leave_event,
        },
        query::get_room_information,
    },
    events::room::member::MembershipState,
    room_version_rules::RoomVersionRules,
    signatures::hash_and_sign_event,
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{MemberProfile, Rooms, SUPPORTED_VERSIONS, restricted::AUTHORISING_USER};
use crate::{
    error::{Error, Result},
    federation::event_id_of,
    now_ms,
    storage::RemoteMembership,
};

pub(super) fn raw_json(value: &impl serde::Serialize) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::Internal(e.to_string()))
}

/// The rules of a room version this server supports.
pub(super) fn supported_rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
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
                .find_alias(alias)
                .await?
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
    /// another server in it: those in `via`, the one that sent an invite or took a knock,
    /// the room id's.
    pub async fn join(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        mut via: Vec<OwnedServerName>,
    ) -> Result<()> {
        self.check_not_blocked(room_id)?;
        if self.store.room(room_id)?.is_some() {
            return self.join_here(room_id, user, reason).await;
        }
        if let Some(remote) = self.store.remote_membership(user, room_id)? {
            via.push(remote.via);
        }
        self.through_any(room_id, via, |server| self.join_through(server, room_id, user, reason)).await?;
        self.store.remove_remote_membership(user, room_id).await?;
        Ok(())
    }

    /// Tries `attempt` through each server of `via` (then the room id's) but this one, until
    /// one succeeds; otherwise fails as the last one did.
    async fn through_any<T, F, Fut>(
        &self,
        room_id: &RoomId,
        mut via: Vec<OwnedServerName>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(OwnedServerName) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        via.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut last_error = Error::NotFound(format!("no server to reach {room_id} through"));
        let mut tried = Vec::new();
        for server in via {
            if server == self.server_name || tried.contains(&server) {
                continue;
            }
            tried.push(server.clone());
            match attempt(server.clone()).await {
                Ok(done) => return Ok(done),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "could not reach the room through this server");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        server: OwnedServerName,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let client = &self.federation.client;
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_VERSIONS.to_vec();
        let template = client.send(&server, request).await?;
        let content = self.member_profile(user).member_content(&MembershipState::Join, reason);
        let template_version = template.room_version.unwrap_or(RoomVersionId::V1);
        let (version, rules, event_id, event) =
            self.sign_template(&server, user, template_version, &template.event, content)?;
        let authorised = event
            .get("content")
            .and_then(|c| c.as_object())
            .is_some_and(|c| c.contains_key(AUTHORISING_USER));
        let response = client
            .send(
                &server,
                create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw_json(&event)?),
            )
            .await?;
        // A restricted join counts only with the signature of the server that vouched for
        // it, on the copy it sends back; the event id does not cover signatures.
        let join = match &response.room_state.event {
            Some(signed) => {
                let checked = self.federation.verify_pdu(signed, &rules).await.map_err(|why| {
                    Error::Federation(format!("{server} returned a badly signed join: {why}"))
                })?;
                if checked.event_id != event_id {
                    return Err(Error::Federation(format!("{server} returned another join than ours")));
                }
                checked.json
            }
            None if authorised => {
                return Err(Error::Federation(format!(
                    "{server} did not countersign the join it vouched for"
                )));
            }
            None => serde_json::to_value(&event).map_err(|e| Error::Internal(e.to_string()))?,
        };
        let state = self.federation.verify_all(&response.room_state.state, &rules).await;
        let auth_chain = self.federation.verify_all(&response.room_state.auth_chain, &rules).await;
        let pairs = |checked: Vec<crate::federation::CheckedPdu>| {
            checked.into_iter().map(|pdu| (pdu.event_id, pdu.json)).collect()
        };
        self.adopt_joined_room(room_id, version, (&event_id, join), pairs(state), pairs(auth_chain)).await
    }

    /// Fills in and signs a membership event template another server made (`make_join`,
    /// `make_knock`, `make_leave`) for `user`, after checking it is one: `content` replaces
    /// the template's, keeping the user who vouches for a restricted join.
    fn sign_template(
        &self,
        server: &OwnedServerName,
        user: &UserId,
        version: RoomVersionId,
        template: &RawJsonValue,
        mut content: JsonValue,
    ) -> Result<(RoomVersionId, RoomVersionRules, OwnedEventId, CanonicalJsonObject)> {
        let rules = supported_rules(&version)?;
        let mut event: CanonicalJsonObject = serde_json::from_str(template.get())
            .map_err(|e| Error::Federation(format!("{server} sent a bad membership template: {e}")))?;
        let template_content = match event.get("content") {
            Some(CanonicalJsonValue::Object(content)) => content.clone(),
            _ => CanonicalJsonObject::new(),
        };
        let is_users = event.get("type").and_then(|t| t.as_str()) == Some("m.room.member")
            && event.get("state_key").and_then(|k| k.as_str()) == Some(user.as_str())
            && event.get("sender").and_then(|k| k.as_str()) == Some(user.as_str())
            && template_content.get("membership").and_then(|m| m.as_str()) == content["membership"].as_str();
        if !is_users {
            return Err(Error::Federation(format!("{server} sent a membership template for something else")));
        }
        if let Some(CanonicalJsonValue::String(authoriser)) = template_content.get(AUTHORISING_USER) {
            content[AUTHORISING_USER] = JsonValue::String(authoriser.clone());
        }
        event.insert(
            "content".to_owned(),
            serde_json::from_value(content).map_err(|e| Error::Internal(e.to_string()))?,
        );
        event.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::Integer(ruma::Int::try_from(now_ms()).unwrap_or_default()),
        );
        hash_and_sign_event(self.server_name.as_str(), &*self.key, &mut event, &rules.redaction)
            .map_err(|e| Error::Internal(format!("cannot sign the membership event: {e}")))?;
        let event_id = event_id_of(&event, &rules).map_err(Error::Internal)?;
        Ok((version, rules, event_id, event))
    }

    /// Knocks on a room for a local user, asking its members to let them in: here when this
    /// server has the room, otherwise through another server in it (`make_knock`,
    /// `send_knock`): those in `via`, then the room id's.
    pub async fn knock(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        via: Vec<OwnedServerName>,
    ) -> Result<()> {
        self.check_not_blocked(room_id)?;
        if self.store.room(room_id)?.is_some() {
            return self.knock_here(room_id, user, reason).await;
        }
        if self
            .store
            .remote_membership(user, room_id)?
            .is_some_and(|r| r.membership == MembershipState::Invite)
        {
            return Err(Error::Forbidden(format!("{user} is already invited to {room_id}")));
        }
        let knock = self
            .through_any(room_id, via, |server| self.knock_through(server, room_id, user, reason))
            .await?;
        let position = self.store.store_remote_membership(user, room_id, &knock).await?;
        self.notifier.notify([user], position);
        Ok(())
    }

    async fn knock_through(
        &self,
        server: OwnedServerName,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<RemoteMembership> {
        let client = &self.federation.client;
        let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_VERSIONS.to_vec();
        let template = client.send(&server, request).await?;
        let content = self.member_profile(user).member_content(&MembershipState::Knock, reason);
        let (version, rules, event_id, event) =
            self.sign_template(&server, user, template.room_version, &template.event, content)?;
        let request = create_knock_event::v1::Request::new(room_id.to_owned(), event_id, raw_json(&event)?);
        let response = client.send(&server, request).await?;
        let event = serde_json::to_value(&event).map_err(|e| Error::Internal(e.to_string()))?;
        let stripped_state = self.stripped_room_state(&response.knock_room_state, &rules, &event).await;
        Ok(RemoteMembership {
            membership: MembershipState::Knock,
            room_version: version,
            event,
            stripped_state,
            via: server,
        })
    }

    /// Leaves a room, rejects an invite or rescinds a knock. An invite or knock in a room
    /// only other servers have ends through the server that sent or took it.
    pub async fn leave(&self, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
        if self.store.room(room_id)?.is_none()
            && let Some(remote) = self.store.remote_membership(user, room_id)?
        {
            return self.leave_remote(room_id, user, reason, &remote.via).await;
        }
        self.leave_here(room_id, user, reason).await
    }

    /// Leaves a room this server does not have (an invite or a knock) through `via`
    /// (`make_leave`, `send_leave`), and forgets the invite or knock here either way.
    async fn leave_remote(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        via: &OwnedServerName,
    ) -> Result<()> {
        let client = &self.federation.client;
        let left = async {
            let template = client
                .send(via, prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned()))
                .await?;
            let content = MemberProfile::default().member_content(&MembershipState::Leave, reason);
            let version = template.room_version.unwrap_or(RoomVersionId::V1);
            let (_, _, event_id, event) = self.sign_template(via, user, version, &template.event, content)?;
            client
                .send(
                    via,
                    create_leave_event::v2::Request::new(room_id.to_owned(), event_id, raw_json(&event)?),
                )
                .await?;
            Ok::<(), Error>(())
        };
        if let Err(e) = left.await {
            // Still dropped here: the user asked to be rid of it.
            tracing::info!(%via, %room_id, error = %e, "could not tell the room's server that the user left");
        }
        let position = self.store.end_remote_membership(user, room_id, MembershipState::Leave).await?;
        self.notifier.notify([user], position);
        Ok(())
    }
}
