//! Outbound federation requests: the X-Matrix signature on every request, ruma doing the
//! (de)serialisation, reqwest on rustls the transport, and [`super::discovery`] where to
//! send them (cached for an hour).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt, auth_scheme::AuthScheme,
        federation::authentication::XMatrixSigningInput,
    },
};

use super::discovery;
use crate::config::FederationConfig;
use crate::outbound::{self, OutboundPolicy};
use crate::signing_key::SigningKey;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of another server's JSON answer read into memory. The largest real answers are
/// `send_join`'s for big rooms (all their state and its auth chain: tens of megabytes);
/// past this, the answer is dropped rather than buffered. Media have their own limit.
pub const MAX_JSON_RESPONSE_BYTES: usize = 128 * 1024 * 1024;
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// Why a request to another server failed.
#[derive(Debug)]
pub enum FederationError {
    /// Federation with this server is off or denied by the config.
    NotAllowed(OwnedServerName),
    /// The server could not be reached, or did not answer in time.
    Unreachable(String),
    /// The server answered with an error or something that does not parse.
    Refused(String),
    /// The server answered 403 (it does not allow what was asked) or 404 (it does not know
    /// what was asked for), with its explanation. Domains pass this on as their own answer:
    /// a join another server refuses is refused.
    Denied { status: http::StatusCode, message: String },
    /// The server does not know the endpoint (404 or 405 `M_UNRECOGNIZED`): it predates it.
    Unrecognized(String),
}

/// A file as another server's deprecated unauthenticated media endpoint serves it.
pub struct LegacyMedia {
    pub bytes: Bytes,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

impl std::fmt::Display for FederationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed(server) => write!(f, "federation with {server} is not allowed here"),
            Self::Unreachable(why) => write!(f, "unreachable: {why}"),
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::Denied { message, .. } => f.write_str(message),
            Self::Unrecognized(what) => write!(f, "the server does not know {what}"),
        }
    }
}

impl std::error::Error for FederationError {}

impl From<FederationError> for crate::error::Error {
    fn from(e: FederationError) -> Self {
        match e {
            FederationError::Denied { status: http::StatusCode::NOT_FOUND, message } => {
                Self::NotFound(message)
            }
            FederationError::Denied { message, .. } => Self::Forbidden(message),
            FederationError::Unrecognized(what) => Self::NotFound(format!("the server does not know {what}")),
            e => Self::Federation(e.to_string()),
        }
    }
}

pub struct FederationClient {
    http: reqwest::Client,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    config: FederationConfig,
    /// Server name → base URL, with when it was found.
    resolved: Mutex<HashMap<OwnedServerName, (String, Instant)>>,
    /// DNS with SRV targets, and only to the addresses the outbound policy permits.
    resolver: Arc<discovery::Resolver>,
}

impl FederationClient {
    pub fn new(
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        config: FederationConfig,
        outbound: Arc<OutboundPolicy>,
    ) -> Self {
        let resolver = discovery::Resolver::new(outbound);
        let http = http_builder(&resolver)
            .danger_accept_invalid_certs(config.trust_self_signed)
            .build()
            .expect("the TLS stack initialises");
        Self { http, server_name, key, config, resolved: Mutex::default(), resolver }
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Sends a request signed with our key (X-Matrix) and parses the answer.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = ruma::api::path_builder::SinglePath>,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
    {
        self.send_limited(destination, request, MAX_JSON_RESPONSE_BYTES).await
    }

    /// [`Self::send`], reading at most `limit` bytes of the answer.
    pub async fn send_limited<R>(
        &self,
        destination: &ServerName,
        request: R,
        limit: usize,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = ruma::api::path_builder::SinglePath>,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
    {
        let base = self.base_url(destination).await?;
        let input =
            XMatrixSigningInput::new(self.server_name.clone(), destination.to_owned(), self.key.pair());
        let request = request
            .try_into_http_request::<Vec<u8>>(&base, input, ())
            .map_err(|e| FederationError::Refused(format!("cannot build the request: {e}")))?;
        self.execute::<R>(request, limit).await
    }

    /// Sends a request that needs no signature (fetching a server's keys).
    pub async fn send_unsigned<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = ruma::api::path_builder::SinglePath>,
        for<'a> R::Authentication: AuthScheme<Input<'a> = ()>,
    {
        let base = self.base_url(destination).await?;
        let request = request
            .try_into_http_request::<Vec<u8>>(&base, (), ())
            .map_err(|e| FederationError::Refused(format!("cannot build the request: {e}")))?;
        self.execute::<R>(request, MAX_JSON_RESPONSE_BYTES).await
    }

    async fn execute<R: OutgoingRequest>(
        &self,
        request: http::Request<Vec<u8>>,
        limit: usize,
    ) -> Result<R::IncomingResponse, FederationError> {
        let what = format!("{} {}", request.method(), request.uri());
        let host = request.uri().authority().map(ToString::to_string).unwrap_or_default();
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
            .map_err(|e| FederationError::Refused(format!("{what}: {e}")))?;
        let response = self.http.execute(request).await.map_err(|e| {
            FederationError::Unreachable(format!("{what}: {}", crate::outbound::error_chain(&e)))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, limit, &what).await?;
        let mut http_response = http::Response::new(&body[..]);
        *http_response.status_mut() = status;
        *http_response.headers_mut() = headers;
        R::IncomingResponse::try_from_http_response(http_response).map_err(|e| {
            if let Some(error) = unrecognized(status, &body) {
                return FederationError::Unrecognized(format!("{what} ({error})"));
            }
            if matches!(status, http::StatusCode::FORBIDDEN | http::StatusCode::NOT_FOUND) {
                let explanation = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|error| error["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| status.to_string());
                return FederationError::Denied { status, message: format!("{host} says: {explanation}") };
            }
            let body = String::from_utf8_lossy(&body);
            FederationError::Refused(format!(
                "{what}: {status}: {e}: {}",
                body.chars().take(300).collect::<String>()
            ))
        })
    }

    /// A file from another server's deprecated `/_matrix/media/v3/download`, for servers that
    /// predate authenticated media (v1.11): unsigned, and with `allow_remote=false` so the
    /// server does not in turn fetch it elsewhere.
    pub async fn legacy_media(
        &self,
        destination: &ServerName,
        media_id: &str,
        limit: usize,
    ) -> Result<LegacyMedia, FederationError> {
        // Media ids are URL-safe by the spec; anything else is not asked for.
        if media_id.is_empty()
            || !media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(FederationError::Refused(format!("{media_id:?} is not a media id")));
        }
        let base = self.base_url(destination).await?;
        let url = format!("{base}/_matrix/media/v3/download/{destination}/{media_id}?allow_remote=false");
        let what = format!("GET {url}");
        let response = self.http.get(&url).send().await.map_err(|e| {
            FederationError::Unreachable(format!("{what}: {}", crate::outbound::error_chain(&e)))
        })?;
        let status = response.status();
        let header = |name: http::header::HeaderName| {
            response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let filename = header(http::header::CONTENT_DISPOSITION)
            .and_then(|value| value.parse::<ruma::http_headers::ContentDisposition>().ok())
            .and_then(|disposition| disposition.filename);
        let bytes = read_limited(response, limit, &what).await?;
        if !status.is_success() {
            return Err(FederationError::Denied { status, message: format!("{what}: {status}") });
        }
        Ok(LegacyMedia { bytes, content_type, filename })
    }

    /// `https://host:port` for a server name (see [`super::discovery`]).
    async fn base_url(&self, destination: &ServerName) -> Result<String, FederationError> {
        if !self.config.allows(destination) {
            return Err(FederationError::NotAllowed(destination.to_owned()));
        }
        if let Some((url, found)) = self.resolved.lock().expect("never poisoned").get(destination)
            && found.elapsed() < DISCOVERY_TTL
        {
            return Ok(url.clone());
        }
        let url = discovery::base_url(&self.http, &self.resolver, destination).await;
        // An IP literal (the server name's or a delegation's) is never resolved, so the
        // resolver's check does not see it.
        let host = reqwest::Url::parse(&url).ok().and_then(|url| url.host_str().map(str::to_owned));
        if let Err(refused) =
            outbound::check_ip_literal(&host.unwrap_or_default(), self.resolver.policy(), true)
        {
            return Err(FederationError::Unreachable(format!("{destination}: {refused}")));
        }
        self.resolved
            .lock()
            .expect("never poisoned")
            .insert(destination.to_owned(), (url.clone(), Instant::now()));
        Ok(url)
    }
}

/// An HTTP client set up as the federation client's: SRV targets from `resolver`, timeouts,
/// no redirects. `myelin doctor` starts from the same, so it sees what other servers see.
pub fn http_builder(resolver: &Arc<discovery::Resolver>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(resolver.clone())
        // A proxy would be resolved instead of the destination, out of the resolver's sight.
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        // Redirects would move a signed request to a destination it was not signed for.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
}

/// The body of `response`, refused as soon as it is longer than `limit` bytes (by its
/// `Content-Length`, or while it streams in), so an answer never takes more memory than that.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Bytes, FederationError> {
    let too_big = || FederationError::Refused(format!("{what}: the answer is larger than {limit} bytes"));
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FederationError::Unreachable(format!("{what}: {}", crate::outbound::error_chain(&e))))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The errcode of a 404 or 405 `M_UNRECOGNIZED` answer: the server lacks the endpoint.
fn unrecognized(status: http::StatusCode, body: &[u8]) -> Option<String> {
    if !matches!(status, http::StatusCode::NOT_FOUND | http::StatusCode::METHOD_NOT_ALLOWED) {
        return None;
    }
    let error: serde_json::Value = serde_json::from_slice(body).ok()?;
    (error["errcode"] == "M_UNRECOGNIZED").then(|| format!("{status} M_UNRECOGNIZED"))
}
