//! Third-party identifiers (e-mail addresses, phone numbers). Myelin keeps none and sends
//! no e-mail or text messages, and says so (`m.3pid_changes` is off in `/capabilities`):
//! the list is empty, adding or binding one is denied, removing one has nothing to unbind,
//! and asking for a validation token gets the refusal each endpoint's spec names.

use std::sync::Arc;

use http::StatusCode;
use ruma::api::{
    client::account::{
        ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids,
        request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn,
        request_password_change_token_via_email, request_password_change_token_via_msisdn,
        request_registration_token_via_email, request_registration_token_via_msisdn, unbind_3pid,
    },
    error::ErrorKind,
};

use crate::{
    http::{
        ApiError,
        router::{JsonObject, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(list);
    router.ruma(|_, _: Req<add_3pid::v3::Request>| denied());
    router.ruma(|_, _: Req<bind_3pid::v3::Request>| denied());
    router.ruma(delete);
    router.ruma(unbind);
    router.ruma(|_, _: Req<request_3pid_management_token_via_email::v3::Request>| medium_not_supported());
    router.ruma(|_, _: Req<request_3pid_management_token_via_msisdn::v3::Request>| medium_not_supported());
    router.ruma(|_, _: Req<request_registration_token_via_email::v3::Request>| denied());
    router.ruma(|_, _: Req<request_registration_token_via_msisdn::v3::Request>| denied());
    router.ruma(|_, _: Req<request_password_change_token_via_email::v3::Request>| not_found());
    router.ruma(|_, _: Req<request_password_change_token_via_msisdn::v3::Request>| not_found());
}

const NONE_KEPT: &str = "This server keeps no e-mail addresses or phone numbers";

/// Adding or binding one, or registering with one.
fn denied() -> std::future::Ready<Result<JsonObject, ApiError>> {
    std::future::ready(Err(ApiError::new(StatusCode::FORBIDDEN, ErrorKind::ThreepidDenied, NONE_KEPT)))
}

/// A validation token to add one to an account.
fn medium_not_supported() -> std::future::Ready<Result<JsonObject, ApiError>> {
    std::future::ready(Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorKind::ThreepidMediumNotSupported,
        NONE_KEPT,
    )))
}

/// A password reset through one: no account has it.
fn not_found() -> std::future::Ready<Result<JsonObject, ApiError>> {
    std::future::ready(Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::ThreepidNotFound, NONE_KEPT)))
}

async fn list(_: Arc<Services>, _: Req<get_3pids::v3::Request>) -> Result<JsonObject, ApiError> {
    // ruma leaves an empty list out, but Element's settings read `threepids` without
    // checking that it is there.
    Ok(JsonObject(serde_json::json!({"threepids": []})))
}

async fn delete(
    _: Arc<Services>,
    _: Req<delete_3pid::v3::Request>,
) -> Result<delete_3pid::v3::Response, ApiError> {
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}

async fn unbind(
    _: Arc<Services>,
    _: Req<unbind_3pid::v3::Request>,
) -> Result<unbind_3pid::v3::Response, ApiError> {
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}
