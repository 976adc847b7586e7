//! The rest of what clients call at start-up and in daily use: TURN credentials,
//! third-party protocols, OpenID tokens, the user directory, reports, 3PIDs and presence.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    OwnedUserId, UserId,
    api::client::{
        account::{get_3pids, request_openid_token},
        presence::{get_presence, set_presence},
        room::{report_content, report_room},
        thirdparty::get_protocols,
        user_directory::search_users::{self, v3::User},
        voip::get_turn_server_info,
    },
    authentication::TokenType,
    presence::PresenceState,
};

use crate::{
    http::{
        ApiError,
        router::{JsonObject, Req, Router},
    },
    now_ms,
    services::Services,
    storage::{OpenIdToken, Report},
};

pub fn routes(router: &mut Router) {
    router.ruma(turn_server);
    router.ruma(protocols);
    router.ruma(openid);
    router.ruma(user_directory);
    router.ruma(report_event);
    router.ruma(report_whole_room);
    router.ruma(threepids);
    router.ruma(presence_get);
    router.ruma(presence_set);
}

/// How long an OpenID token proves the user's identity to a third party.
const OPENID_LIFETIME: Duration = Duration::from_secs(3600);

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

async fn protocols(
    _: Arc<Services>,
    _: Req<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response, ApiError> {
    // No application services bridge other networks here yet.
    Ok(get_protocols::v3::Response::new(Default::default()))
}

async fn openid(
    services: Arc<Services>,
    req: Req<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response, ApiError> {
    if req.body.user_id != req.auth.user_id {
        return Err(ApiError::forbidden("You can only request OpenID tokens for yourself"));
    }
    let token: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    let record = OpenIdToken {
        user_id: req.auth.user_id.clone(),
        expires_ts: now_ms() + OPENID_LIFETIME.as_millis() as u64,
    };
    services.store.add_openid_token(&token, &record).await.map_err(crate::error::Error::from)?;
    Ok(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        services.config.server_name.clone(),
        OPENID_LIFETIME,
    ))
}

/// Users the searcher may find: those sharing a room with them, and members of rooms open
/// to everyone (public join rule, world-readable history, or published).
fn visible_users(services: &Services, searcher: &UserId) -> Result<BTreeSet<OwnedUserId>, ApiError> {
    let mut rooms: BTreeSet<_> = services.rooms.joined_rooms(searcher)?.into_iter().collect();
    rooms.extend(services.rooms.rooms_open_to_everyone()?);
    let mut users = BTreeSet::new();
    for room in rooms {
        users.extend(services.rooms.members(&room)?.into_iter().filter(|(_, m)| m == "join").map(|(u, _)| u));
    }
    Ok(users)
}

async fn user_directory(
    services: Arc<Services>,
    req: Req<search_users::v3::Request>,
) -> Result<search_users::v3::Response, ApiError> {
    let term = req.body.search_term.to_lowercase();
    let limit = usize::try_from(req.body.limit).unwrap_or(10).clamp(1, 100);
    let mut results = Vec::new();
    let mut limited = false;
    for user in visible_users(&services, &req.auth.user_id)? {
        let profile = services.accounts.profile(&user).unwrap_or_default();
        let name = profile.get("displayname").and_then(|v| v.as_str()).map(str::to_owned);
        let matches = user.as_str().to_lowercase().contains(&term)
            || name.as_deref().is_some_and(|n| n.to_lowercase().contains(&term));
        if !matches {
            continue;
        }
        if results.len() == limit {
            limited = true;
            break;
        }
        let mut found = User::new(user);
        found.display_name = name;
        found.avatar_url = profile.get("avatar_url").and_then(|v| v.as_str()).map(Into::into);
        results.push(found);
    }
    Ok(search_users::v3::Response::new(results, limited))
}

async fn report_event(
    services: Arc<Services>,
    req: Req<report_content::v3::Request>,
) -> Result<report_content::v3::Response, ApiError> {
    let b = req.body;
    // Only members may report (spec), and 404 rather than 403 hides whether the event exists.
    let not_found = || ApiError::not_found("no such event, or you are not joined to its room");
    if services.rooms.membership(&b.room_id, &req.auth.user_id).ok().flatten().as_deref() != Some("join") {
        return Err(not_found());
    }
    services
        .rooms
        .event(&b.event_id)?
        .filter(|event| event.pdu.room_id == b.room_id)
        .ok_or_else(not_found)?;
    let report = Report {
        reporter: req.auth.user_id.clone(),
        room_id: b.room_id,
        event_id: Some(b.event_id),
        reason: b.reason,
        ts: now_ms(),
    };
    services.store.add_report(&report).await.map_err(crate::error::Error::from)?;
    tracing::warn!(reporter = %report.reporter, room = %report.room_id, "content reported");
    Ok(report_content::v3::Response::new())
}

async fn report_whole_room(
    services: Arc<Services>,
    req: Req<report_room::v3::Request>,
) -> Result<report_room::v3::Response, ApiError> {
    let b = req.body;
    services.rooms.room(&b.room_id)?;
    let report = Report {
        reporter: req.auth.user_id.clone(),
        room_id: b.room_id,
        event_id: None,
        reason: Some(b.reason),
        ts: now_ms(),
    };
    services.store.add_report(&report).await.map_err(crate::error::Error::from)?;
    tracing::warn!(reporter = %report.reporter, room = %report.room_id, "room reported");
    Ok(report_room::v3::Response::new())
}

async fn threepids(_: Arc<Services>, _: Req<get_3pids::v3::Request>) -> Result<JsonObject, ApiError> {
    // Myelin keeps no e-mail addresses or phone numbers. ruma leaves an empty list out, but
    // Element's settings read `threepids` without checking that it is there.
    Ok(JsonObject(serde_json::json!({"threepids": []})))
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
