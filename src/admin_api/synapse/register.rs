//! Shared-secret registration (`/_synapse/admin/v1/register`): a nonce, then an account
//! created with a MAC keyed by the configured secret. No access token: the MAC is the proof.

use std::sync::Arc;

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::call::{self, Input};
use crate::{
    accounts::SharedSecretRegistration,
    http::{
        ApiError, Response,
        router::{RateLimitClass, Router},
    },
    services::Services,
};

const PATH: &str = "/_synapse/admin/v1/register";

pub fn routes(router: &mut Router) {
    call::public_route(router, Method::GET, PATH, Some(RateLimitClass::Register), nonce);
    call::public_route(router, Method::POST, PATH, Some(RateLimitClass::Register), register);
}

async fn nonce(services: Arc<Services>, _: Input) -> Result<Response, ApiError> {
    call::ok(&json!({ "nonce": services.accounts.shared_secret_nonce()? }))
}

/// The body, with every field optional so that a missing one gets Synapse's answer
/// (`M_BAD_JSON`, naming it).
#[derive(Deserialize)]
struct Body {
    nonce: Option<String>,
    username: Option<String>,
    password: Option<String>,
    mac: Option<String>,
    #[serde(default)]
    admin: bool,
    user_type: Option<String>,
    displayname: Option<String>,
}

async fn register(services: Arc<Services>, input: Input) -> Result<Response, ApiError> {
    let body: Body = input.json()?;
    let required = |field: Option<String>, name: &str| {
        field.ok_or_else(|| ApiError::bad_json(format!("{name} must be specified")))
    };
    let request = SharedSecretRegistration {
        nonce: required(body.nonce, "nonce")?,
        username: required(body.username, "username")?,
        password: required(body.password, "password")?,
        mac: required(body.mac, "mac")?,
        admin: body.admin,
        user_type: body.user_type,
        displayname: body.displayname,
    };
    let login = services.accounts.register_with_shared_secret(request).await?;
    call::ok(&json!({
        "access_token": login.access_token,
        "user_id": login.user_id,
        "home_server": services.config.server_name,
        "device_id": login.device_id,
    }))
}
