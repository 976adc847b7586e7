//! Membership endpoints: join, invite, leave, forget, kick, ban, unban.

use std::sync::Arc;

use ruma::{
    OwnedRoomId, OwnedServerName, RoomId, RoomOrAliasId, UserId,
    api::client::membership::{
        ban_user, forget_room,
        invite_user::{self, v3::InvitationRecipient},
        join_room_by_id, join_room_by_id_or_alias, kick_user, leave_room, unban_user,
    },
};

use super::rooms::member_profile;
use crate::{
    error::Error,
    federation,
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(join_by_id);
    router.ruma(join_by_id_or_alias);
    router.ruma(invite);
    router.ruma(leave);
    router.ruma(forget);
    router.ruma(kick);
    router.ruma(ban);
    router.ruma(unban);
}

/// Resolves `!room:server` or `#alias:server` to a room id, asking the alias's server when
/// it is another one; also returns servers to join through.
async fn resolve_room(
    services: &Services,
    target: &RoomOrAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), ApiError> {
    match <&RoomId>::try_from(target) {
        Ok(room_id) => Ok((room_id.to_owned(), vec![])),
        Err(alias) if alias.server_name() != services.config.server_name => {
            Ok(federation::membership::resolve_remote_alias(services, alias).await?)
        }
        Err(alias) => services
            .rooms
            .resolve_alias(alias)?
            .map(|room_id| (room_id, vec![]))
            .ok_or_else(|| ApiError::not_found(format!("no room has the alias {alias}"))),
    }
}

/// Joins a room here, or, when this server does not have the room, through another server
/// in it: those named by the client, the alias's, or the one that sent the invite.
async fn join_room(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    reason: Option<&str>,
    mut via: Vec<OwnedServerName>,
) -> Result<(), ApiError> {
    let profile = member_profile(services, user);
    if services.rooms.room(room_id).is_ok() {
        return Ok(services.rooms.join(room_id, user, &profile, reason).await?);
    }
    if let Some(invite) = services.store.remote_invite(user, room_id).map_err(Error::from)? {
        via.push(invite.via);
    }
    via.extend(room_id.server_name().map(ToOwned::to_owned));
    Ok(federation::membership::join_remote(services, room_id, user, &profile, &via).await?)
}

async fn join_by_id(
    services: Arc<Services>,
    req: Req<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response, ApiError> {
    join_room(&services, &req.body.room_id, &req.auth.user_id, req.body.reason.as_deref(), vec![]).await?;
    Ok(join_room_by_id::v3::Response::new(req.body.room_id))
}

async fn join_by_id_or_alias(
    services: Arc<Services>,
    req: Req<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response, ApiError> {
    let (room_id, mut via) = resolve_room(&services, &req.body.room_id_or_alias).await?;
    via.extend(req.body.via.iter().cloned());
    join_room(&services, &room_id, &req.auth.user_id, req.body.reason.as_deref(), via).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

async fn invite(
    services: Arc<Services>,
    req: Req<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response, ApiError> {
    let InvitationRecipient::UserId(recipient) = req.body.recipient else {
        return Err(ApiError::forbidden("third-party invites are not supported"));
    };
    let target = &recipient.user_id;
    if target.server_name() != services.config.server_name {
        let content =
            services.rooms.invite_content(&req.body.room_id, target, recipient.reason.as_deref(), false)?;
        federation::membership::invite_remote(
            &services,
            &req.body.room_id,
            &req.auth.user_id,
            target,
            content,
        )
        .await?;
        return Ok(invite_user::v3::Response::new());
    }
    if services.accounts.user(target)?.is_none() {
        return Err(ApiError::not_found(format!("unknown user {target}")));
    }
    services
        .rooms
        .invite(&req.body.room_id, &req.auth.user_id, target, recipient.reason.as_deref(), false)
        .await?;
    Ok(invite_user::v3::Response::new())
}

async fn leave(
    services: Arc<Services>,
    req: Req<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response, ApiError> {
    let user = &req.auth.user_id;
    // Rejecting an invite to a room only the inviting server has: through that server.
    if services.rooms.room(&req.body.room_id).is_err()
        && let Some(invite) = services.store.remote_invite(user, &req.body.room_id).map_err(Error::from)?
    {
        federation::membership::reject_remote_invite(&services, &req.body.room_id, user, &invite.via).await?;
        return Ok(leave_room::v3::Response::new());
    }
    services.rooms.leave(&req.body.room_id, &req.auth.user_id, req.body.reason.as_deref()).await?;
    Ok(leave_room::v3::Response::new())
}

async fn forget(
    services: Arc<Services>,
    req: Req<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response, ApiError> {
    services.rooms.forget(&req.body.room_id, &req.auth.user_id).await?;
    Ok(forget_room::v3::Response::new())
}

async fn kick(
    services: Arc<Services>,
    req: Req<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response, ApiError> {
    let body = req.body;
    services.rooms.kick(&body.room_id, &req.auth.user_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(kick_user::v3::Response::new())
}

async fn ban(
    services: Arc<Services>,
    req: Req<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response, ApiError> {
    let body = req.body;
    services.rooms.ban(&body.room_id, &req.auth.user_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(ban_user::v3::Response::new())
}

async fn unban(
    services: Arc<Services>,
    req: Req<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response, ApiError> {
    let body = req.body;
    services.rooms.unban(&body.room_id, &req.auth.user_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(unban_user::v3::Response::new())
}
