//! Registration tokens: list, show, create, update, delete, with the same `Accounts`
//! functions as `myelin token ...`.

use std::sync::Arc;

use http::Method;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    accounts::RegistrationTokenInfo,
    http::{ApiError, Response, router::Router},
    services::Services,
};

const ALL: &str = "/_synapse/admin/v1/registration_tokens";
const ONE: &str = "/_synapse/admin/v1/registration_tokens/{token}";

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, ALL, list);
    call::route(router, Method::POST, "/_synapse/admin/v1/registration_tokens/new", create);
    call::route(router, Method::GET, ONE, show);
    call::route(router, Method::PUT, ONE, update);
    call::route(router, Method::DELETE, ONE, delete);
}

/// A token as Synapse shows one. Myelin does not reserve a token while a registration is
/// under way, so nothing is ever `pending`.
#[derive(Serialize)]
struct TokenJson {
    token: String,
    uses_allowed: Option<u32>,
    pending: u32,
    completed: u32,
    expiry_time: Option<u64>,
}

impl From<RegistrationTokenInfo> for TokenJson {
    fn from(info: RegistrationTokenInfo) -> Self {
        Self {
            token: info.token,
            uses_allowed: info.uses_allowed,
            pending: 0,
            completed: info.completed,
            expiry_time: info.expiry_time,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    valid: Option<bool>,
}

async fn list(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let query: ListQuery = call.input.query()?;
    let tokens: Vec<TokenJson> = services
        .accounts
        .registration_tokens()?
        .into_iter()
        .filter(|token| query.valid.is_none_or(|valid| token.valid == valid))
        .map(TokenJson::from)
        .collect();
    call::ok(&json!({ "registration_tokens": tokens }))
}

async fn show(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    call::ok(&TokenJson::from(services.accounts.registration_token(call.input.arg(0))?))
}

/// Numbers arrive as JSON numbers of any sign; Synapse answers `M_INVALID_PARAM` for a
/// negative one, which a `u32` field would make `M_BAD_JSON`.
fn non_negative<T: TryFrom<i64>>(value: Option<i64>, name: &str) -> Result<Option<T>, ApiError> {
    value
        .map(|n| {
            T::try_from(n)
                .map_err(|_| ApiError::invalid_param(format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

#[derive(Deserialize)]
struct NewBody {
    token: Option<String>,
    length: Option<i64>,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
}

async fn create(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let body: NewBody = call.input.json()?;
    let info = services
        .accounts
        .create_registration_token(
            body.token,
            non_negative(body.length, "length")?,
            non_negative(body.uses_allowed, "uses_allowed")?,
            non_negative(body.expiry_time, "expiry_time")?,
        )
        .await?;
    call::ok(&TokenJson::from(info))
}

/// A field that may be absent (leave it), `null` (lift the limit) or a value.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    uses_allowed: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    expiry_time: Option<Option<i64>>,
}

async fn update(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let body: UpdateBody = call.input.json()?;
    let uses_allowed = body.uses_allowed.map(|n| non_negative(n, "uses_allowed")).transpose()?;
    let expiry_time = body.expiry_time.map(|n| non_negative(n, "expiry_time")).transpose()?;
    let info =
        services.accounts.update_registration_token(call.input.arg(0), uses_allowed, expiry_time).await?;
    call::ok(&TokenJson::from(info))
}

async fn delete(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    services.accounts.revoke_registration_token(call.input.arg(0)).await?;
    call::empty()
}
