//! Membership endpoints: join, knock, invite, leave, forget, kick, ban, unban.

use std::sync::Arc;

use ruma::api::client::{
    knock::knock_room,
    membership::{
        ban_user, forget_room,
        invite_user::{self, v3::InvitationRecipient},
        join_room_by_id, join_room_by_id_or_alias, kick_user, leave_room, unban_user,
    },
};

use crate::{
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma_limited(RateLimitClass::Join, join_by_id);
    router.ruma_limited(RateLimitClass::Join, join_by_id_or_alias);
    router.ruma_limited(RateLimitClass::Join, knock);
    router.ruma_limited(RateLimitClass::Invite, invite);
    // Leaving and moderation are never slowed down: a moderator cleaning up after a
    // flood must not be throttled, and leaving is always allowed.
    router.ruma(leave);
    router.ruma(forget);
    router.ruma(kick);
    router.ruma(ban);
    router.ruma(unban);
}

async fn join_by_id(
    services: Arc<Services>,
    req: Req<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response, ApiError> {
    services.rooms.join(&req.body.room_id, &req.auth.user_id, req.body.reason.as_deref(), vec![]).await?;
    Ok(join_room_by_id::v3::Response::new(req.body.room_id))
}

async fn join_by_id_or_alias(
    services: Arc<Services>,
    req: Req<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response, ApiError> {
    let (room_id, mut via) = services.rooms.resolve_room(&req.body.room_id_or_alias).await?;
    via.extend(req.body.via.iter().cloned());
    services.rooms.join(&room_id, &req.auth.user_id, req.body.reason.as_deref(), via).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

async fn knock(
    services: Arc<Services>,
    req: Req<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response, ApiError> {
    let (room_id, mut via) = services.rooms.resolve_room(&req.body.room_id_or_alias).await?;
    via.extend(req.body.via.iter().cloned());
    services.rooms.knock(&room_id, &req.auth.user_id, req.body.reason.as_deref(), via).await?;
    Ok(knock_room::v3::Response::new(room_id))
}

async fn invite(
    services: Arc<Services>,
    req: Req<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response, ApiError> {
    let InvitationRecipient::UserId(recipient) = req.body.recipient else {
        return Err(ApiError::forbidden("third-party invites are not supported"));
    };
    services
        .rooms
        .invite(&req.body.room_id, &req.auth.user_id, &recipient.user_id, recipient.reason.as_deref(), false)
        .await?;
    Ok(invite_user::v3::Response::new())
}

async fn leave(
    services: Arc<Services>,
    req: Req<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response, ApiError> {
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
