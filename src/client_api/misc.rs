//! The rest of what clients call at start-up and in daily use: TURN credentials,
//! OpenID tokens, the user directory, reports and presence.

use std::{sync::Arc, time::Duration};

use ruma::{
    api::client::{
        account::request_openid_token,
        admin::get_user_info,
        presence::{get_presence, set_presence},
        reporting::report_user,
        room::{report_content, report_room},
        user_directory::search_users::{self, v3::User},
        voip::get_turn_server_info,
    },
    authentication::TokenType,
    presence::PresenceState,
};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(turn_server);
    router.ruma(openid);
    router.ruma(user_directory);
    router.ruma(report_event);
    router.ruma(report_whole_room);
    router.ruma(report_a_user);
    router.ruma(presence_get);
    router.ruma(presence_set);
    router.ruma(whois);
}

/// Users may look themselves up; server admins anyone of this server.
async fn whois(
    services: Arc<Services>,
    req: Req<get_user_info::v3::Request>,
) -> Result<get_user_info::v3::Response, ApiError> {
    let target = req.body.user_id;
    let caller = &req.auth.user_id;
    if target != *caller && !services.accounts.is_admin(caller)? {
        return Err(ApiError::forbidden("Only server admins may look up other users"));
    }
    if target.server_name() != services.accounts.server_name() {
        return Err(ApiError::invalid_param("Only users of this server can be looked up"));
    }
    let mut response = get_user_info::v3::Response::new();
    response.devices = services.accounts.whois(&target)?;
    response.user_id = Some(target);
    Ok(response)
}

async fn turn_server(
    services: Arc<Services>,
    _: Req<get_turn_server_info::v3::Request>,
) -> Result<get_turn_server_info::v3::Response, ApiError> {
    let voip = &services.config.voip;
    Ok(get_turn_server_info::v3::Response::new(
        voip.turn_username.clone(),
        voip.turn_password.clone(),
        voip.turn_uris.clone(),
        Duration::from_secs(voip.turn_ttl_seconds),
    ))
}

async fn openid(
    services: Arc<Services>,
    req: Req<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response, ApiError> {
    if req.body.user_id != req.auth.user_id {
        return Err(ApiError::forbidden("You can only request OpenID tokens for yourself"));
    }
    let (token, lifetime) = services.accounts.issue_openid_token(&req.auth.user_id).await?;
    Ok(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        services.config.server_name.clone(),
        lifetime,
    ))
}

async fn user_directory(
    services: Arc<Services>,
    req: Req<search_users::v3::Request>,
) -> Result<search_users::v3::Response, ApiError> {
    let limit = usize::try_from(req.body.limit).unwrap_or(10).clamp(1, 100);
    let (found, limited) = services.rooms.search_users(&req.auth.user_id, &req.body.search_term, limit)?;
    let results = found
        .into_iter()
        .map(|found| {
            let mut user = User::new(found.user_id);
            user.display_name = found.display_name;
            user.avatar_url = found.avatar_url.map(Into::into);
            user
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited))
}

async fn report_event(
    services: Arc<Services>,
    req: Req<report_content::v3::Request>,
) -> Result<report_content::v3::Response, ApiError> {
    let b = req.body;
    services.rooms.report_event(&req.auth.user_id, &b.room_id, &b.event_id, b.reason).await?;
    Ok(report_content::v3::Response::new())
}

async fn report_whole_room(
    services: Arc<Services>,
    req: Req<report_room::v3::Request>,
) -> Result<report_room::v3::Response, ApiError> {
    let b = req.body;
    services.rooms.report_room(&req.auth.user_id, &b.room_id, b.reason).await?;
    Ok(report_room::v3::Response::new())
}

async fn report_a_user(
    services: Arc<Services>,
    req: Req<report_user::v3::Request>,
) -> Result<report_user::v3::Response, ApiError> {
    let b = req.body;
    services.rooms.report_user(&req.auth.user_id, &b.user_id, b.reason).await?;
    Ok(report_user::v3::Response::new())
}

async fn presence_get(
    services: Arc<Services>,
    req: Req<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response, ApiError> {
    let view = services.presence.get(&req.auth.user_id, &req.body.user_id)?;
    let mut response = get_presence::v3::Response::new(view.state);
    response.status_msg = view.status_msg;
    response.currently_active = Some(view.currently_active);
    response.last_active_ago = Some(Duration::from_millis(view.last_active_ago_ms));
    Ok(response)
}

async fn presence_set(
    services: Arc<Services>,
    req: Req<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response, ApiError> {
    if req.body.user_id != req.auth.user_id {
        return Err(ApiError::forbidden("You can only set your own presence"));
    }
    if !matches!(
        req.body.presence,
        PresenceState::Online | PresenceState::Unavailable | PresenceState::Offline
    ) {
        return Err(ApiError::invalid_param("presence must be online, unavailable or offline"));
    }
    services.presence.set(&req.auth.user_id, req.body.presence, req.body.status_msg)?;
    Ok(set_presence::v3::Response::new())
}
