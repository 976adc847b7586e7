//! Joining, knocking, inviting, leaving, kicking, banning: each is an `m.room.member`
//! event whose legality the auth rules decide; a few extra checks give clearer refusals.

use ruma::{
    OwnedUserId, RoomId, UserId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
};
use serde_json::{Value as JsonValue, json};

use super::{Error, EventSpec, INVITE_STATE_TYPES, Result, Rooms, restricted::AUTHORISING_USER, stripped};

/// What a member event says about the member.
#[derive(Debug, Clone, Default)]
pub struct MemberProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

impl MemberProfile {
    pub fn member_content(&self, membership: &MembershipState, reason: Option<&str>) -> JsonValue {
        let mut content = json!({"membership": membership});
        if let Some(name) = &self.displayname {
            content["displayname"] = json!(name);
        }
        if let Some(url) = &self.avatar_url {
            content["avatar_url"] = json!(url);
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        content
    }
}

fn reason_content(membership: &MembershipState, reason: Option<&str>) -> JsonValue {
    MemberProfile::default().member_content(membership, reason)
}

impl Rooms {
    /// The profile fields a member event carries for a local `user`: their current display
    /// name and avatar.
    pub fn member_profile(&self, user: &UserId) -> MemberProfile {
        let profile = self.accounts.profile(user).unwrap_or_default();
        let field = |name: &str| profile.get(name).and_then(JsonValue::as_str).map(str::to_owned);
        MemberProfile { displayname: field("displayname"), avatar_url: field("avatar_url") }
    }

    /// Sets or (with `None`) removes a field of the requester's own profile. A new display
    /// name or avatar goes on to every room they are in, in a new member event, as other
    /// servers and clients show members by those events.
    pub async fn set_profile_field(
        &self,
        requester: &UserId,
        target: &UserId,
        field: &str,
        value: Option<JsonValue>,
    ) -> Result<()> {
        self.accounts.set_profile_field(requester, target, field, value).await?;
        if !matches!(field, "displayname" | "avatar_url") {
            return Ok(());
        }
        let profile = self.member_profile(target);
        for room_id in self.joined_rooms(target)? {
            let Some(mut content) =
                self.state_content(&room_id, &StateEventType::RoomMember, target.as_str())?
            else {
                continue;
            };
            for (name, value) in [("displayname", &profile.displayname), ("avatar_url", &profile.avatar_url)]
            {
                match value {
                    Some(value) => content[name] = json!(value),
                    None => {
                        content.as_object_mut().map(|c| c.remove(name));
                    }
                }
            }
            // One room refusing (its power levels, say) does not keep the others from it.
            if let Err(e) = self.set_membership(&room_id, target, target, content).await {
                tracing::info!(%room_id, user = %target, error = %e, "profile change not applied in this room");
            }
        }
        Ok(())
    }

    /// Deactivates a local account: it can no longer log in, and it leaves every room it is
    /// in or invited to, so other members (and servers) see it go. With `erase`, its display
    /// name and avatar go too.
    pub async fn deactivate_account(&self, user: &UserId, erase: bool) -> Result<()> {
        self.accounts.deactivate(user, erase).await?;
        if erase {
            for field in ["displayname", "avatar_url"] {
                self.accounts.set_profile_field(user, user, field, None).await?;
            }
        }
        for (room_id, entry) in self.store.user_rooms(user)? {
            if !matches!(
                entry.membership,
                MembershipState::Join | MembershipState::Invite | MembershipState::Knock
            ) {
                continue;
            }
            // One room refusing does not keep the account in the others.
            if let Err(e) = self.leave(&room_id, user, Some("account deactivated")).await {
                tracing::warn!(%room_id, %user, error = %e, "a deactivated account could not leave this room");
            }
        }
        Ok(())
    }

    pub(super) async fn set_membership(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        content: JsonValue,
    ) -> Result<()> {
        let spec = EventSpec::state(TimelineEventType::RoomMember, target.as_str(), content);
        self.append(room_id, sender, spec, None).await.map(|_| ())
    }

    /// Joins a local user to a room this server has. Joining a room one is already in
    /// changes nothing. Where the join rules admit members of other rooms, one of our users
    /// who may invite vouches for the join ([`Rooms::join_authoriser`]).
    pub(super) async fn join_here(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let room = self.room(room_id)?;
        if self.membership(room_id, user)? == Some(MembershipState::Join) {
            return Ok(());
        }
        let mut content = self.member_profile(user).member_content(&MembershipState::Join, reason);
        if let Some(authoriser) = self.join_authoriser(&room, user)? {
            content[AUTHORISING_USER] = json!(authoriser);
        }
        self.set_membership(room_id, user, user, content).await
    }

    /// Knocks on a room this server has, asking its members for an invite. Those in the room,
    /// invited or banned cannot; whether the join rules allow knocking is the auth rules' call.
    pub(super) async fn knock_here(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.room(room_id)?;
        match self.membership(room_id, user)? {
            Some(MembershipState::Join) => {
                return Err(Error::Forbidden(format!("{user} is already in {room_id}")));
            }
            Some(MembershipState::Invite) => {
                return Err(Error::Forbidden(format!("{user} is already invited to {room_id}")));
            }
            Some(MembershipState::Ban) => {
                return Err(Error::Forbidden(format!("{user} is banned from {room_id}")));
            }
            _ => {}
        }
        let content = self.member_profile(user).member_content(&MembershipState::Knock, reason);
        self.set_membership(room_id, user, user, content).await
    }

    /// The content of an invite, refused early when the target is already in or banned.
    pub fn invite_content(
        &self,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<JsonValue> {
        match self.membership(room_id, target)? {
            Some(MembershipState::Join) => {
                return Err(Error::Forbidden(format!("{target} is already in the room")));
            }
            Some(MembershipState::Ban) => {
                return Err(Error::Forbidden(format!("{target} is banned from the room")));
            }
            _ => {}
        }
        let mut content = self.member_profile(target).member_content(&MembershipState::Invite, reason);
        if is_direct {
            content["is_direct"] = json!(true);
        }
        Ok(content)
    }

    /// Fails unless `user` is joined to, invited to or knocking on the room: the states a
    /// leave (own or a kick) can end.
    fn require_present(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        match self.membership(room_id, user)? {
            Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock) => Ok(()),
            _ => Err(Error::Forbidden(format!("{user} is not in room {room_id}"))),
        }
    }

    /// Leaves a room this server has, or rejects an invite to it.
    pub(super) async fn leave_here(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.room(room_id)?;
        self.require_present(room_id, user)?;
        self.set_membership(room_id, user, user, reason_content(&MembershipState::Leave, reason)).await
    }

    pub async fn kick(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.require_present(room_id, target)?;
        self.set_membership(room_id, sender, target, reason_content(&MembershipState::Leave, reason)).await
    }

    pub async fn ban(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(room_id, sender, target, reason_content(&MembershipState::Ban, reason)).await
    }

    pub async fn unban(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        if self.membership(room_id, target)? != Some(MembershipState::Ban) {
            return Err(Error::Forbidden(format!("{target} is not banned")));
        }
        self.set_membership(room_id, sender, target, reason_content(&MembershipState::Leave, reason)).await
    }

    /// Stops listing a room the user has left; its history is then closed to them.
    pub async fn forget(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        match self.membership(room_id, user)? {
            Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock) => {
                Err(Error::BadRequest(format!("{user} is in room {room_id}: leave it before forgetting it")))
            }
            None => Err(Error::NotFound(format!("{user} was never in {room_id}"))),
            Some(_) => Ok(self.store.forget_room(user, room_id).await?),
        }
    }

    /// Who invited `user` to the room, as the invite's stripped state tells.
    pub fn inviter(&self, user: &UserId, room_id: &RoomId) -> Result<Option<OwnedUserId>> {
        let state = self.stripped_state_for(user, room_id)?;
        let invite = state
            .iter()
            .find(|event| event["type"] == "m.room.member" && event["state_key"] == user.as_str());
        Ok(invite.and_then(|invite| UserId::parse(invite["sender"].as_str()?).ok()))
    }

    /// What a user invited to or knocking on the room is shown of it, as stripped state
    /// events: a few state events that describe it, their own member event (the invite or
    /// knock), and an inviter's member event. For a room only another server has, what that
    /// server sent with the invite or in answer to the knock.
    pub fn stripped_state_for(&self, user: &UserId, room_id: &RoomId) -> Result<Vec<JsonValue>> {
        if let Some(remote) = self.store.remote_membership(user, room_id)? {
            return Ok(remote.stripped_state);
        }
        let state = self.current_state(room_id)?;
        let invite = state.iter().find(|pdu| {
            pdu.kind == TimelineEventType::RoomMember && pdu.state_key.as_deref() == Some(user.as_str())
        });
        let inviter = invite.map(|invite| invite.sender.as_str()).filter(|inviter| *inviter != user.as_str());
        Ok(state
            .iter()
            .filter(|pdu| {
                let is_member_of = |who: Option<&str>| {
                    pdu.kind == TimelineEventType::RoomMember
                        && who.is_some()
                        && pdu.state_key.as_deref() == who
                };
                INVITE_STATE_TYPES.contains(&pdu.kind.to_string().as_str())
                    || is_member_of(Some(user.as_str()))
                    || is_member_of(inviter)
            })
            .map(stripped)
            .collect())
    }
}
