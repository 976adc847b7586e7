//! What every admin API route shares: the caller must be a server admin (else `403
//! M_FORBIDDEN`; no token is `401 M_MISSING_TOKEN`), each call is logged with who made it,
//! and path arguments, query strings and JSON bodies are read with Synapse's error codes.
//! There are no ruma types for this API, so its shapes are this module's serde types.

use std::{future::Future, sync::Arc};

use bytes::Bytes;
use http::{Method, StatusCode};
use ruma::{
    OwnedRoomId, OwnedUserId,
    api::{auth_scheme::AccessToken, error::ErrorKind},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    http::{
        ApiError, Response,
        error::json_response,
        router::{Authenticate, Call, RateLimitClass, RouteOptions, Router, is_json_array},
    },
    services::Services,
};

/// A request's inputs, read on demand.
pub struct Input {
    args: Vec<String>,
    query: String,
    body: Bytes,
}

/// A call by a server administrator.
pub struct AdminCall {
    /// Who is calling: a server admin.
    pub admin: OwnedUserId,
    pub input: Input,
}

impl Input {
    /// The `i`th path argument, percent-decoded.
    pub fn arg(&self, i: usize) -> &str {
        &self.args[i]
    }

    /// The `i`th path argument as a user id of any server.
    pub fn any_user(&self, i: usize) -> Result<OwnedUserId, ApiError> {
        ruma::UserId::parse(self.arg(i)).map_err(|e| ApiError::invalid_param(format!("invalid user id: {e}")))
    }

    /// The `i`th path argument as a room id.
    pub fn room(&self, i: usize) -> Result<OwnedRoomId, ApiError> {
        OwnedRoomId::try_from(self.arg(i))
            .map_err(|e| ApiError::invalid_param(format!("invalid room id: {e}")))
    }

    /// The `i`th path argument as a user id of this server (which need not exist).
    pub fn local_user(&self, services: &Services, i: usize) -> Result<OwnedUserId, ApiError> {
        Ok(services.accounts.own_user_id(self.arg(i))?)
    }

    /// The query string as `T`: a required parameter missing is `400 M_MISSING_PARAM`,
    /// anything else it cannot be `400 M_INVALID_PARAM`.
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_urlencoded::from_str(&self.query).map_err(|e| match e.to_string() {
            missing if missing.starts_with("missing field") => ApiError::missing_param(missing),
            other => ApiError::invalid_param(format!("bad query parameter: {other}")),
        })
    }

    /// The body as `T`, an empty body as `{}`: text that is not JSON is `M_NOT_JSON`, a
    /// missing field `M_MISSING_PARAM`, anything else the wrong shape `M_BAD_JSON` (a JSON
    /// array too, which serde would read as the struct's fields in order).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.body };
        if is_json_array(body) {
            return Err(ApiError::bad_json("The body must be a JSON object, not an array"));
        }
        serde_json::from_slice(body).map_err(|e| {
            // serde stops at the first thing it did not expect, which may come before a
            // syntax error: whether the body is JSON at all is asked separately.
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, format!("Content not JSON: {e}"))
            } else if e.to_string().starts_with("missing field") {
                ApiError::missing_param(e.to_string())
            } else {
                ApiError::bad_json(e.to_string())
            }
        })
    }
}

/// The default page size of every list (Synapse's).
pub fn default_limit() -> usize {
    100
}

/// For boolean fields that default to true.
pub fn yes() -> bool {
    true
}

/// A list's `dir`: `f` (forwards, the default) or `b`; `true` for backwards.
pub fn backwards(dir: Option<&str>) -> Result<bool, ApiError> {
    match dir {
        None | Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(other) => Err(ApiError::invalid_param(format!("dir must be f or b, not {other:?}"))),
    }
}

/// `200` with a JSON body.
pub fn ok(body: &impl Serialize) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, body))
}

/// `200 {}`.
pub fn empty() -> Result<Response, ApiError> {
    ok(&serde_json::json!({}))
}

fn input(call: &Call) -> Input {
    Input {
        args: call.path_args.clone(),
        query: call.request.uri().query().unwrap_or_default().to_owned(),
        // Cheap: `Bytes` shares the buffer.
        body: call.request.body().clone(),
    }
}

/// Registers an admin-only handler.
pub fn route<F, Fut>(router: &mut Router, method: Method, pattern: &'static str, handler: F)
where
    F: Fn(Arc<Services>, AdminCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    router.raw(
        method,
        pattern,
        RouteOptions::default(),
        Arc::new(move |services, call| {
            let handler = handler.clone();
            Box::pin(async move {
                let answer = async {
                    let admin = authorize(&services, &call).await?;
                    tracing::info!(
                        %admin,
                        method = %call.request.method(),
                        target = call.request.uri().path(),
                        "admin API call"
                    );
                    let input = input(&call);
                    handler(services.clone(), AdminCall { admin, input }).await
                };
                answer.await.unwrap_or_else(ApiError::into_response)
            })
        }),
    );
}

/// Registers a handler anyone may call (shared-secret registration proves itself
/// otherwise), behind `rate_limit` if any.
pub fn public_route<F, Fut>(
    router: &mut Router,
    method: Method,
    pattern: &'static str,
    rate_limit: Option<RateLimitClass>,
    handler: F,
) where
    F: Fn(Arc<Services>, Input) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let options = RouteOptions { rate_limit, ..RouteOptions::default() };
    router.raw(
        method,
        pattern,
        options,
        Arc::new(move |services, call| {
            let handler = handler.clone();
            Box::pin(async move {
                tracing::info!(method = %call.request.method(), target = call.request.uri().path(), "admin API call");
                let input = input(&call);
                handler(services, input).await.unwrap_or_else(ApiError::into_response)
            })
        }),
    );
}

/// The caller, if it is a server admin.
async fn authorize(services: &Services, call: &Call) -> Result<OwnedUserId, ApiError> {
    // The token is in the headers or the query string; the body is not read.
    let mut request = http::Request::new(&[][..]);
    *request.method_mut() = call.request.method().clone();
    *request.uri_mut() = call.request.uri().clone();
    *request.headers_mut() = call.request.headers().clone();
    let session = <AccessToken as Authenticate>::authenticate(services, &request).await?;
    call.span.record("user", session.user_id.as_str());
    if !services.accounts.is_admin(&session.user_id)? {
        tracing::warn!(user = %session.user_id, target = call.request.uri().path(), "admin API refused");
        return Err(ApiError::forbidden("You are not a server admin"));
    }
    Ok(session.user_id)
}
