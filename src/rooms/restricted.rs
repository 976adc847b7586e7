//! Restricted join rules (`restricted`, `knock_restricted`): who may join without an invite
//! because they are joined to a room the join rules allow, and which of this server's users
//! vouches for such a join in `join_authorised_via_users_server` (room versions 8 and 10 on;
//! the auth rules then check that user's membership and power to invite).
//!
//! The resident server decides, for its own users and (in `make_join` and `send_join`) for
//! other servers' users alike: it can only judge membership of allowed rooms it has.

use ruma::{
    OwnedUserId, UserId,
    events::{
        StateEventType,
        room::{
            join_rules::{AllowRule, JoinRule, RoomJoinRulesEventContent},
            member::MembershipState,
        },
    },
};
use serde_json::Value as JsonValue;

use super::{Error, Result, Rooms, rules_of};
use crate::storage::RoomRecord;

/// The content field naming the user who authorised a restricted join.
pub(super) const AUTHORISING_USER: &str = "join_authorised_via_users_server";

impl Rooms {
    /// The local user to name in [`AUTHORISING_USER`] when `user` joins `room` now, or `None`
    /// when the join rules do not restrict this join (another join rule, or the user is
    /// invited or joined already).
    ///
    /// Refused with `Forbidden` when the user is joined to none of the allowed rooms this
    /// server has, `UnableToAuthoriseJoin` when it has none of them (for another server's
    /// user), and `UnableToGrantJoin` when none of its members in the room may invite.
    pub(super) fn join_authoriser(&self, room: &RoomRecord, user: &UserId) -> Result<Option<OwnedUserId>> {
        let Some(allowed) = self.restricted_to(room)? else { return Ok(None) };
        if matches!(
            self.membership(&room.room_id, user)?,
            Some(MembershipState::Join | MembershipState::Invite)
        ) {
            return Ok(None);
        }
        let mut known = Vec::new();
        for room_id in &allowed {
            if self.store.room(room_id)?.is_some() {
                known.push(room_id);
            }
        }
        // Every room our own users are in is here, so only another server's user can be in
        // an allowed room we cannot see.
        if known.is_empty() && user.server_name() != self.server_name {
            return Err(Error::UnableToAuthoriseJoin(format!(
                "{} is restricted to members of rooms this server is not in",
                room.room_id
            )));
        }
        let mut qualifies = false;
        for room_id in known {
            qualifies |= self.membership(room_id, user)? == Some(MembershipState::Join);
        }
        if !qualifies {
            return Err(Error::Forbidden(format!(
                "{user} is not invited to {} and not in any of the rooms its join rules allow",
                room.room_id
            )));
        }
        let members = self.member_view(room)?;
        let levels = &members.power_levels;
        // The most powerful of our members who may invite: the likeliest to stay able to.
        members
            .joined()
            .filter(|member| member.server_name() == self.server_name && levels.user_can_invite(member))
            .max_by_key(|member| levels.for_user(member))
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                Error::UnableToGrantJoin(format!(
                    "no member of {} on this server may invite {user}",
                    room.room_id
                ))
            })
    }

    /// The rooms whose members may join `room` without an invite, when its join rule is one
    /// the room version restricts that way; `None` for any other join rule.
    fn restricted_to(&self, room: &RoomRecord) -> Result<Option<Vec<ruma::OwnedRoomId>>> {
        let rules = rules_of(room)?.authorization;
        let Some(join_rules) = self.current_state_pdu(room, &StateEventType::RoomJoinRules, "") else {
            return Ok(None);
        };
        let Ok(content) = serde_json::from_str::<RoomJoinRulesEventContent>(join_rules.content.get()) else {
            return Ok(None);
        };
        let restricted = match content.join_rule {
            JoinRule::Restricted(restricted) if rules.restricted_join_rule => restricted,
            JoinRule::KnockRestricted(restricted) if rules.knock_restricted_join_rule => restricted,
            _ => return Ok(None),
        };
        Ok(Some(
            restricted
                .allow
                .into_iter()
                .filter_map(|rule| match rule {
                    AllowRule::RoomMembership(membership) => Some(membership.room_id),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// Checks a restricted join another server sent (`send_join`) that names one of our users
    /// as [`AUTHORISING_USER`]: that user may still vouch for it, and the joining user still
    /// qualifies. Our signature is added by the caller once this passes.
    pub(super) fn check_remote_authorised_join(&self, room: &RoomRecord, join: &JsonValue) -> Result<()> {
        let Some(named) = join["content"][AUTHORISING_USER].as_str() else { return Ok(()) };
        let named = UserId::parse(named)
            .map_err(|e| Error::InvalidParam(format!("{AUTHORISING_USER} is not a user id: {e}")))?;
        if named.server_name() != self.server_name {
            return Err(Error::InvalidParam(format!(
                "{AUTHORISING_USER} names {named}, who is not a user of this server"
            )));
        }
        let joining = join["state_key"]
            .as_str()
            .and_then(|user| UserId::parse(user).ok())
            .ok_or_else(|| Error::InvalidParam("the join has no user as its state key".to_owned()))?;
        // The user must qualify; which of our users vouches is up to the auth rules.
        self.join_authoriser(room, &joining)?;
        Ok(())
    }
}
