//! User-interactive authentication (UIA).
//!
//! Every flow Myelin offers has a single stage, so a flow completes within one request and
//! no per-session state needs to survive between requests: the session id in a challenge
//! is there because the spec requires clients to echo it, and a stage is judged on its own.
//! When a multi-stage flow is added, completed stages must be remembered per session here.

use ruma::api::{
    client::uiaa::{AuthFlow, AuthType, UiaaInfo},
    error::{ErrorKind, StandardErrorBody},
};

use super::secrets;

/// A 401 challenge offering one single-stage flow for each of `stages`, optionally saying
/// why the previous attempt failed.
pub fn challenge(
    stages: &[AuthType],
    session: Option<String>,
    failure: Option<(ErrorKind, &str)>,
) -> UiaaInfo {
    let mut info = UiaaInfo::new(stages.iter().map(|s| AuthFlow::new(vec![s.clone()])).collect());
    info.session = Some(session.unwrap_or_else(secrets::new_session_id));
    info.auth_error =
        failure.map(|(kind, message)| Box::new(StandardErrorBody::new(kind, message.to_owned())));
    // Element reads `params` unconditionally; an empty object says "no parameters".
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    info
}
