//! Routing: paths to handlers, with ruma doing the parsing.
//!
//! [`Router::ruma`] registers a handler for a ruma endpoint type under *every* path the
//! endpoint has had (`r0`, `v3`, unstable), taken from ruma's metadata, so old clients
//! work without a hand-kept list. The handler receives the parsed request and the caller's
//! identity, resolved according to the endpoint's ruma authentication scheme.

use std::{collections::HashMap, future::Future, net::IpAddr, pin::Pin, sync::Arc};

use bytes::Bytes;
use http::{Method, StatusCode};
use ruma::api::federation::authentication::{ServerSignatures, XMatrix};
use ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, AuthScheme,
        NoAccessToken, NoAuthentication,
    },
    error::FromHttpRequestError,
    path_builder::PathBuilder,
};
use ruma::{OwnedServerName, UserId};

use super::error::{ApiError, Response};
use crate::{accounts::Session, appservices::Service, rate_limiter::RateLimiter, services::Services};

/// A request that has been routed and whose body has been read.
pub struct Call {
    pub request: http::Request<Bytes>,
    /// Path parameters, percent-decoded, in path order.
    pub path_args: Vec<String>,
    pub client_ip: IpAddr,
    /// The request's tracing span, so handlers can record the user.
    pub span: tracing::Span,
    /// The route's per-user limiter, checked once the caller is known.
    pub user_limiter: Option<Arc<RateLimiter<String>>>,
    /// The body is a file (see [`RouteOptions::file_body`]), not a JSON object.
    pub file_body: bool,
}

/// Stands for an empty trailing path segment during lookup; see [`Router::lookup`].
const EMPTY: &str = "\0";

pub type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
pub type Handler = Arc<dyn Fn(Arc<Services>, Call) -> HandlerFuture + Send + Sync>;

/// Which rate limiter, if any, guards a route (`[rate_limits]` has a key for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitClass {
    /// Per client IP, before the body is read.
    Login,
    Register,
    /// Per user, once the access token has named them; server admins are exempt.
    Message,
    Join,
    Invite,
    MediaUpload,
    ToDevice,
}

/// How the pipeline treats a route beyond dispatching to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteOptions {
    pub rate_limit: Option<RateLimitClass>,
    /// A body limit other than the configured default (media uploads).
    pub max_body: Option<usize>,
    /// The response is user-uploaded content: send the headers that stop browsers from
    /// running it (DESIGN: media is served with a restrictive CSP and nosniff).
    pub serves_user_content: bool,
    /// The body is a file (an upload), passed on as it is. Every other body is a JSON
    /// object, and a JSON array is refused before parsing (serde reads a struct from an
    /// array too, field by field, so `[]` would pass for `{}`).
    pub file_body: bool,
}

pub struct Route {
    pub handler: Handler,
    pub options: RouteOptions,
    /// The path template, for logs.
    pub pattern: &'static str,
}

#[derive(Default)]
pub struct Router {
    paths: matchit::Router<usize>,
    /// Index by path template, so several methods can share one path.
    index: HashMap<&'static str, usize>,
    tables: Vec<HashMap<Method, Route>>,
}

/// What the router found for a request.
pub enum Lookup<'a> {
    Found(&'a Route, Vec<String>),
    NoSuchPath,
    WrongMethod,
}

impl Router {
    /// Registers a handler that receives the raw call.
    pub fn raw(&mut self, method: Method, pattern: &'static str, options: RouteOptions, handler: Handler) {
        let slot = match self.index.get(pattern) {
            Some(&slot) => slot,
            None => {
                let slot = self.tables.len();
                self.paths.insert(pattern, slot).unwrap_or_else(|e| panic!("route {pattern} conflicts: {e}"));
                self.index.insert(pattern, slot);
                self.tables.push(HashMap::new());
                slot
            }
        };
        let previous = self.tables[slot].insert(method.clone(), Route { handler, options, pattern });
        assert!(previous.is_none(), "{method} {pattern} registered twice");
    }

    /// Registers `handler` for every path of the ruma endpoint `R`.
    pub fn ruma<R, F, Fut, O>(&mut self, handler: F)
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: Authenticate,
        F: Fn(Arc<Services>, Req<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ApiError>> + Send + 'static,
        O: IntoHttpResponse + 'static,
    {
        self.ruma_with(RouteOptions::default(), handler);
    }

    /// Like [`Router::ruma`], behind a rate limiter.
    pub fn ruma_limited<R, F, Fut, O>(&mut self, class: RateLimitClass, handler: F)
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: Authenticate,
        F: Fn(Arc<Services>, Req<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ApiError>> + Send + 'static,
        O: IntoHttpResponse + 'static,
    {
        self.ruma_with(RouteOptions { rate_limit: Some(class), ..RouteOptions::default() }, handler);
    }

    /// Like [`Router::ruma`], with options.
    pub fn ruma_with<R, F, Fut, O>(&mut self, options: RouteOptions, handler: F)
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: Authenticate,
        F: Fn(Arc<Services>, Req<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ApiError>> + Send + 'static,
        O: IntoHttpResponse + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |services, call| {
            Box::pin(dispatch::<R, F, Fut, O>(handler.clone(), services, call))
        });
        for path in R::PATH_BUILDER.all_paths() {
            self.raw(R::METHOD, path, options, erased.clone());
        }
    }

    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let found = match self.paths.at(path) {
            Ok(found) => found,
            // An empty final segment is an empty parameter, as in `/state/m.room.name/`
            // (and `/state/m.room.name`, which other servers accept too). matchit never
            // binds an empty parameter, so retry with a placeholder that no request path
            // can contain (a raw NUL) and turn it back into "" below.
            Err(_) => {
                let retry =
                    if path.ends_with('/') { format!("{path}{EMPTY}") } else { format!("{path}/{EMPTY}") };
                match self.paths.at(&retry) {
                    Ok(found) => return self.found(method, found.value, found.params.iter()),
                    Err(_) => return Lookup::NoSuchPath,
                }
            }
        };
        self.found(method, found.value, found.params.iter())
    }

    fn found<'p>(
        &self,
        method: &Method,
        slot: &usize,
        params: impl Iterator<Item = (&'p str, &'p str)>,
    ) -> Lookup<'_> {
        let table = &self.tables[*slot];
        let route = table.get(method).or_else(|| {
            // HEAD is GET without the body; hyper drops the body for us.
            (*method == Method::HEAD).then(|| table.get(&Method::GET)).flatten()
        });
        let Some(route) = route else { return Lookup::WrongMethod };
        let args = params
            .map(|(_, raw)| {
                if raw == EMPTY {
                    String::new()
                } else {
                    percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned()
                }
            })
            .collect();
        Lookup::Found(route, args)
    }
}

/// Parses `call` as an `R`, runs `handler` on it, and answers with what it returned or the
/// error. Parsing is a future of its own, so that the raw request and its parsed copy are gone
/// while the handler runs: a parked long-poll keeps this state for its whole wait.
async fn dispatch<R, F, Fut, O>(handler: Arc<F>, services: Arc<Services>, call: Call) -> Response
where
    R: IncomingRequest + Send,
    R::Authentication: Authenticate,
    F: Fn(Arc<Services>, Req<R>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, ApiError>> + Send,
    O: IntoHttpResponse,
{
    let req = match parse::<R>(&services, call).await {
        Ok(req) => req,
        Err(error) => return error.into_response(),
    };
    match handler(services, req).await.and_then(IntoHttpResponse::into_http_response) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Authenticates the caller and parses the request as an `R`.
async fn parse<R>(services: &Services, call: Call) -> Result<Req<R>, ApiError>
where
    R: IncomingRequest,
    R::Authentication: Authenticate,
{
    let (parts, body) = call.request.into_parts();
    let request = http::Request::from_parts(parts, &body[..]);
    let auth = <R::Authentication as Authenticate>::authenticate(services, &request).await?;
    if let Some(user) = <R::Authentication as Authenticate>::user_of(&auth) {
        call.span.record("user", user);
        if let Some(limiter) = &call.user_limiter {
            check_user_limit(services, limiter, user)?;
        }
    }
    if !call.file_body && is_json_array(&body) {
        return Err(ApiError::bad_json("The request body must be a JSON object, not an array"));
    }
    let args: Vec<&str> = call.path_args.iter().map(String::as_str).collect();
    let parts = request.into_parts().0;
    let parsed = match parse_request::<R>(&parts, &body, &args) {
        // An empty body stands for `{}` where every field of the body is optional (a
        // `POST /join` from matrix-nio has none).
        Err(failure) if body.is_empty() => match parse_request::<R>(&parts, b"{}", &args) {
            Ok(parsed) => parsed,
            Err(_) => return Err(parse_failure(failure, &body)),
        },
        parsed => parsed.map_err(|failure| parse_failure(failure, &body))?,
    };
    Ok(Req { body: parsed, auth, client_ip: call.client_ip })
}

/// Takes one of `user`'s tokens, or refuses with the wait, unless they are a server admin
/// or an application service's user that is not rate-limited (asked only when the bucket is
/// empty, so neither costs a lookup until then).
fn check_user_limit(services: &Services, limiter: &RateLimiter<String>, user: &str) -> Result<(), ApiError> {
    let Err(wait) = limiter.check(user) else { return Ok(()) };
    let exempt = match <&UserId>::try_from(user) {
        Ok(user_id) => {
            services.appservices.exempt_from_limits(user_id) || services.accounts.is_admin(user_id)?
        }
        Err(_) => false,
    };
    if exempt { Ok(()) } else { Err(ApiError::limit_exceeded(wait)) }
}

/// Whether `body` is a well-formed JSON array (a malformed one is left to the parser, which
/// calls it `M_NOT_JSON`).
pub(crate) fn is_json_array(body: &[u8]) -> bool {
    body.trim_ascii_start().starts_with(b"[") && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The error for a request ruma could not parse.
pub(crate) fn parse_failure(failure: ParseFailure, body: &[u8]) -> ApiError {
    match failure {
        // Without a body to blame, the body is missing.
        ParseFailure::Panicked if body.is_empty() => ApiError::new(
            StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::NotJson,
            "The request needs a JSON body",
        ),
        ParseFailure::Panicked => {
            tracing::warn!("the request parser panicked on this input");
            ApiError::bad_json("The request could not be parsed")
        }
        ParseFailure::Refused(FromHttpRequestError::Deserialization(e)) => {
            ApiError::from_deserialization(&e, body)
        }
        ParseFailure::Refused(_) => ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED),
    }
}

pub(crate) enum ParseFailure {
    Panicked,
    Refused(FromHttpRequestError),
}

/// ruma's parse, with a panic turned into an error: some ruma deserialisers panic on input
/// they did not expect (`/login` without `type` indexes a map with a missing key). Such
/// input is the client's error, not a crash.
pub(crate) fn parse_request<R: IncomingRequest>(
    parts: &http::request::Parts,
    body: &[u8],
    args: &[&str],
) -> Result<R, ParseFailure> {
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| R::try_from_http_request(request, args)))
        .map_err(|_| ParseFailure::Panicked)?
        .map_err(ParseFailure::Refused)
}

/// What a handler may return: any ruma response, [`EmptyObject`] or [`JsonObject`].
pub trait IntoHttpResponse {
    fn into_http_response(self) -> Result<Response, ApiError>;
}

impl<T: OutgoingResponse> IntoHttpResponse for T {
    fn into_http_response(self) -> Result<Response, ApiError> {
        let response = self.try_into_http_response::<Vec<u8>>().map_err(|e| {
            tracing::error!(error = %e, "could not serialise a response");
            ApiError::internal()
        })?;
        Ok(response.map(|b| http_body_util::Full::new(Bytes::from(b))))
    }
}

/// `{}`, for the few ruma responses that have no public constructor.
pub struct EmptyObject;

impl IntoHttpResponse for EmptyObject {
    fn into_http_response(self) -> Result<Response, ApiError> {
        Ok(super::error::json_response(StatusCode::OK, &serde_json::json!({})))
    }
}

/// A JSON body as given, for the few responses whose ruma serialisation clients cannot read
/// (such as an empty list ruma leaves out where clients expect it).
pub struct JsonObject(pub serde_json::Value);

impl IntoHttpResponse for JsonObject {
    fn into_http_response(self) -> Result<Response, ApiError> {
        Ok(super::error::json_response(StatusCode::OK, &self.0))
    }
}

/// A parsed request with its caller.
pub struct Req<R: ruma::api::Metadata>
where
    R::Authentication: Authenticate,
{
    pub body: R,
    pub auth: <R::Authentication as Authenticate>::Identity,
    pub client_ip: IpAddr,
}

/// Resolves the caller for a ruma authentication scheme.
pub trait Authenticate: AuthScheme {
    type Identity: Send + 'static;

    fn authenticate(
        services: &Services,
        request: &http::Request<&[u8]>,
    ) -> impl Future<Output = Result<Self::Identity, ApiError>> + Send;

    /// The user to record in the request's log line.
    fn user_of(identity: &Self::Identity) -> Option<&str>;
}

fn unknown_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ruma::api::error::ErrorKind::UnknownToken(Default::default()),
        "Unknown or expired access token",
    )
}

/// The session behind `token`: a user's device, or an application service acting as one
/// of its users (`?user_id=`, and `?device_id=` for one of that user's devices).
fn session_for_token(
    services: &Services,
    token: &str,
    request: &http::Request<&[u8]>,
) -> Result<Session, ApiError> {
    if let Some(session) = services.accounts.authenticate(token)? {
        return Ok(session);
    }
    let Some(service) = services.appservices.by_as_token(token) else { return Err(unknown_token()) };
    #[derive(serde::Deserialize)]
    struct Masquerade {
        user_id: Option<String>,
        device_id: Option<String>,
        #[serde(rename = "org.matrix.msc3202.device_id")]
        msc3202_device_id: Option<String>,
    }
    let query = request.uri().query().unwrap_or_default();
    let masquerade: Masquerade = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::invalid_param(format!("Bad query string: {e}")))?;
    let device_id = masquerade.device_id.or(masquerade.msc3202_device_id);
    Ok(services.accounts.appservice_session(
        &service.registered,
        masquerade.user_id.as_deref(),
        device_id.as_deref(),
    )?)
}

impl Authenticate for AccessToken {
    type Identity = Session;

    async fn authenticate(services: &Services, request: &http::Request<&[u8]>) -> Result<Session, ApiError> {
        let token = AccessToken::extract_authentication(request).map_err(|_| ApiError::missing_token())?;
        session_for_token(services, &token, request)
    }

    fn user_of(identity: &Session) -> Option<&str> {
        Some(identity.user_id.as_str())
    }
}

impl Authenticate for AccessTokenOptional {
    type Identity = Option<Session>;

    async fn authenticate(
        services: &Services,
        request: &http::Request<&[u8]>,
    ) -> Result<Option<Session>, ApiError> {
        match AccessTokenOptional::extract_authentication(request) {
            Ok(Some(token)) => session_for_token(services, &token, request).map(Some),
            _ => Ok(None),
        }
    }

    fn user_of(identity: &Option<Session>) -> Option<&str> {
        identity.as_ref().map(|s| s.user_id.as_str())
    }
}

/// An application service, by its `as_token`.
impl Authenticate for AppserviceToken {
    type Identity = Arc<Service>;

    async fn authenticate(
        services: &Services,
        request: &http::Request<&[u8]>,
    ) -> Result<Arc<Service>, ApiError> {
        let token =
            AppserviceToken::extract_authentication(request).map_err(|_| ApiError::missing_token())?;
        if let Some(service) = services.appservices.by_as_token(&token) {
            return Ok(service);
        }
        // A user's token is known, it just does not open this door (the spec's 403 on
        // `/appservice/{id}/ping`): answering 401 would tell the client it was logged out.
        if services.accounts.authenticate(&token)?.is_some() {
            return Err(ApiError::forbidden("Only an application service's as_token may call this endpoint"));
        }
        Err(unknown_token())
    }

    fn user_of(identity: &Arc<Service>) -> Option<&str> {
        Some(identity.registered.sender.as_str())
    }
}

/// `/register` and `/login` take an application service's token where a service registers
/// or logs in its users; any other token there means nothing, as before services existed.
impl Authenticate for AppserviceTokenOptional {
    type Identity = Option<Arc<Service>>;

    async fn authenticate(
        services: &Services,
        request: &http::Request<&[u8]>,
    ) -> Result<Option<Arc<Service>>, ApiError> {
        match AppserviceTokenOptional::extract_authentication(request) {
            Ok(Some(token)) => Ok(services.appservices.by_as_token(&token)),
            _ => Ok(None),
        }
    }

    fn user_of(_: &Option<Arc<Service>>) -> Option<&str> {
        None
    }
}

/// Endpoints without authentication ignore any token sent.
macro_rules! unauthenticated {
    ($($scheme:ty),*) => {$(
        impl Authenticate for $scheme {
            type Identity = ();

            async fn authenticate(_: &Services, _: &http::Request<&[u8]>) -> Result<(), ApiError> {
                Ok(())
            }

            fn user_of(_: &()) -> Option<&str> {
                None
            }
        }
    )*};
}

unauthenticated!(NoAuthentication, NoAccessToken);

/// Another server, identified by the X-Matrix signature on its request: the signature must
/// verify with the origin's published key and name this server as the destination.
impl Authenticate for ServerSignatures {
    type Identity = OwnedServerName;

    async fn authenticate(
        services: &Services,
        request: &http::Request<&[u8]>,
    ) -> Result<OwnedServerName, ApiError> {
        let unauthorized = |why: String| {
            ApiError::new(StatusCode::UNAUTHORIZED, ruma::api::error::ErrorKind::Unauthorized, why)
        };
        let header = XMatrix::extract_from_http_headers(request.headers())
            .map_err(|e| unauthorized(format!("This endpoint needs an X-Matrix signature: {e}")))?;
        let federation = &services.federation;
        if !federation.accepts(&header.origin) {
            return Err(ApiError::forbidden(format!(
                "Federation with {} is not allowed here",
                header.origin
            )));
        }
        let keys =
            federation.keys.keys_of(&federation.client, &header.origin).await.map_err(|e| {
                unauthorized(format!("Cannot get the signing keys of {}: {e}", header.origin))
            })?;
        let map = ruma::signatures::PublicKeyMap::from([(header.origin.to_string(), keys)]);
        header
            .verify_http_request(request, &services.config.server_name, &map)
            .map_err(|e| unauthorized(format!("The request's X-Matrix signature does not verify: {e}")))?;
        federation.sender.heard_from(&header.origin);
        Ok(header.origin)
    }

    fn user_of(origin: &OwnedServerName) -> Option<&str> {
        Some(origin.as_str())
    }
}
