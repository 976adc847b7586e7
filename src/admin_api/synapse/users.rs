//! Users: list, query, create or modify, deactivate, reset password, whois, joined rooms,
//! admin flag and shadow ban.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    accounts::{Logout, UserInfo},
    admin::users::{self as admin_users, UserChanges, UserOrder, UserQuery},
    http::{ApiError, Response, error::json_response, router::Router},
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, "/_synapse/admin/v2/users", list);
    call::route(router, Method::GET, "/_synapse/admin/v2/users/{user_id}", query);
    call::route(router, Method::PUT, "/_synapse/admin/v2/users/{user_id}", put);
    call::route(router, Method::POST, "/_synapse/admin/v1/deactivate/{user_id}", deactivate);
    call::route(router, Method::POST, "/_synapse/admin/v1/reset_password/{user_id}", reset_password);
    call::route(router, Method::GET, "/_synapse/admin/v1/whois/{user_id}", whois);
    call::route(router, Method::GET, "/_synapse/admin/v1/users/{user_id}/joined_rooms", joined_rooms);
    call::route(router, Method::GET, "/_synapse/admin/v1/users/{user_id}/memberships", memberships);
    call::route(router, Method::GET, "/_synapse/admin/v1/users/{user_id}/pushers", pushers);
    call::route(router, Method::GET, "/_synapse/admin/v1/username_available", username_available);
    call::route(router, Method::GET, "/_synapse/admin/v1/users/{user_id}/admin", get_admin);
    call::route(router, Method::PUT, "/_synapse/admin/v1/users/{user_id}/admin", put_admin);
    call::route(router, Method::POST, "/_synapse/admin/v1/users/{user_id}/shadow_ban", |s, c| {
        shadow_ban(s, c, true)
    });
    call::route(router, Method::DELETE, "/_synapse/admin/v1/users/{user_id}/shadow_ban", |s, c| {
        shadow_ban(s, c, false)
    });
}

/// A user as Synapse describes one, in lists and alone.
#[derive(Serialize)]
struct UserJson {
    name: String,
    displayname: Option<String>,
    avatar_url: Option<String>,
    is_guest: bool,
    admin: bool,
    user_type: Option<String>,
    deactivated: bool,
    erased: bool,
    shadow_banned: bool,
    locked: bool,
    suspended: bool,
    creation_ts: u64,
    last_seen_ts: Option<u64>,
    /// Only in the answer about one user.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
}

/// What Synapse adds about one user: things Myelin does not have, as empty as Synapse
/// shows them for a user without any.
#[derive(Serialize)]
struct Details {
    threepids: [(); 0],
    external_ids: [(); 0],
    appservice_id: Option<String>,
    consent_server_notice_sent: Option<String>,
    consent_version: Option<String>,
    consent_ts: Option<u64>,
}

impl UserJson {
    fn new(user: UserInfo) -> Self {
        Self {
            name: user.user_id.to_string(),
            displayname: user.displayname,
            avatar_url: user.avatar_url,
            is_guest: false,
            admin: user.admin,
            user_type: None,
            deactivated: user.deactivated,
            erased: user.erased,
            shadow_banned: user.shadow_banned,
            locked: false,
            suspended: false,
            creation_ts: user.created_ts,
            last_seen_ts: user.last_seen_ts,
            details: None,
        }
    }

    fn detailed(user: UserInfo) -> Self {
        let details = Details {
            threepids: [],
            external_ids: [],
            appservice_id: None,
            consent_server_notice_sent: None,
            consent_version: None,
            consent_ts: None,
        };
        Self { details: Some(details), ..Self::new(user) }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    from: usize,
    #[serde(default = "call::default_limit")]
    limit: usize,
    user_id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    deactivated: bool,
    admins: Option<bool>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    dir: Option<String>,
}

async fn list(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let q: ListQuery = call.input.query()?;
    let order = match q.order_by.as_deref().unwrap_or("name") {
        // Guests, user types and locks do not exist here: every user ties, in name order.
        "name" | "is_guest" | "user_type" | "locked" => UserOrder::Name,
        "displayname" => UserOrder::Displayname,
        "admin" => UserOrder::Admin,
        "deactivated" => UserOrder::Deactivated,
        "shadow_banned" => UserOrder::ShadowBanned,
        "avatar_url" => UserOrder::AvatarUrl,
        "creation_ts" => UserOrder::CreationTs,
        "last_seen_ts" => UserOrder::LastSeenTs,
        other => return Err(ApiError::invalid_param(format!("unknown order_by {other:?}"))),
    };
    let query = UserQuery {
        // Synapse ignores `user_id` when `name` is given.
        user_id: q.user_id.filter(|_| q.name.is_none()),
        name: q.name,
        include_deactivated: q.deactivated,
        admins: q.admins,
        order,
        descending: call::backwards(q.dir.as_deref())?,
        from: q.from,
        limit: q.limit,
    };
    let page = admin_users::list_users(&services, &query)?;
    call::ok(&json!({
        "users": page.items.into_iter().map(UserJson::new).collect::<Vec<_>>(),
        "total": page.total,
        "next_token": page.next.map(|n| n.to_string()),
    }))
}

async fn query(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    call::ok(&UserJson::detailed(services.accounts.user_info(&user_id)?))
}

#[derive(Deserialize)]
struct PutBody {
    password: Option<String>,
    #[serde(default = "call::yes")]
    logout_devices: bool,
    displayname: Option<String>,
    avatar_url: Option<String>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

async fn put(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    let body: PutBody = call.input.json()?;
    if body.admin == Some(false) && user_id == call.admin {
        return Err(ApiError::invalid_param("You may not demote yourself"));
    }
    let changes = UserChanges {
        password: body.password,
        logout_devices: body.logout_devices,
        displayname: body.displayname,
        avatar_url: body.avatar_url,
        admin: body.admin,
        deactivated: body.deactivated,
    };
    let created = admin_users::put_user(&services, &user_id, changes).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(status, &UserJson::detailed(services.accounts.user_info(&user_id)?)))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    erase: bool,
}

async fn deactivate(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    let body: DeactivateBody = call.input.json()?;
    services.accounts.user_info(&user_id)?;
    services.rooms.deactivate_account(&user_id, body.erase).await?;
    // Myelin binds no third-party ids, so there is nothing to unbind.
    call::ok(&json!({ "id_server_unbind_result": "success" }))
}

#[derive(Deserialize)]
struct ResetPasswordBody {
    new_password: String,
    #[serde(default = "call::yes")]
    logout_devices: bool,
}

async fn reset_password(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    let body: ResetPasswordBody = call.input.json()?;
    let logout = if body.logout_devices { Logout::All } else { Logout::None };
    services.accounts.set_password(&user_id, body.new_password, logout).await?;
    call::empty()
}

/// The client-server API's whois shape.
async fn whois(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    let devices = services.accounts.whois(&user_id)?;
    call::ok(&json!({ "user_id": user_id, "devices": devices }))
}

async fn joined_rooms(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.any_user(0)?;
    if user_id.server_name() == services.config.server_name {
        services.accounts.user_info(&user_id)?;
    }
    let rooms = services.rooms.joined_rooms(&user_id)?;
    call::ok(&json!({ "total": rooms.len(), "joined_rooms": rooms }))
}

async fn memberships(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.any_user(0)?;
    if user_id.server_name() == services.config.server_name {
        services.accounts.user_info(&user_id)?;
    }
    let memberships: serde_json::Map<String, serde_json::Value> = services
        .rooms
        .memberships_of(&user_id)?
        .into_iter()
        .map(|(room_id, membership)| (room_id.to_string(), json!(membership)))
        .collect();
    call::ok(&json!({ "memberships": memberships }))
}

/// The pushers as their clients set them, as `myelin pushers list` shows them.
async fn pushers(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    services.accounts.user_info(&user_id)?;
    let pushers: Vec<serde_json::Value> = crate::admin::pushers(&services, &user_id)?
        .into_iter()
        .map(|summary| {
            let mut pusher = summary.pusher;
            // Set by the client with `append`, which describes the request, not the pusher.
            pusher.as_object_mut().map(|p| p.remove("append"));
            pusher["app_id"] = json!(summary.app_id);
            pusher["pushkey"] = json!(summary.pushkey);
            pusher
        })
        .collect();
    call::ok(&json!({ "total": pushers.len(), "pushers": pushers }))
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: String,
}

/// As the client API's `/register/available`: taken is `M_USER_IN_USE`, a bad name
/// `M_INVALID_USERNAME`.
async fn username_available(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let query: AvailableQuery = call.input.query()?;
    services.accounts.check_username_available(&query.username)?;
    call::ok(&json!({ "available": true }))
}

async fn get_admin(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    call::ok(&json!({ "admin": services.accounts.user_info(&user_id)?.admin }))
}

#[derive(Deserialize)]
struct AdminBody {
    admin: bool,
}

async fn put_admin(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    let body: AdminBody = call.input.json()?;
    if !body.admin && user_id == call.admin {
        return Err(ApiError::invalid_param("You may not demote yourself"));
    }
    services.accounts.set_admin(&user_id, body.admin).await?;
    call::empty()
}

async fn shadow_ban(services: Arc<Services>, call: AdminCall, banned: bool) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    services.accounts.set_shadow_banned(&user_id, banned).await?;
    call::empty()
}
