//! Requests to a service other than transactions: ping, "does this alias exist?",
//! and third-party lookups. Each is authorised with the service's `hs_token`.

use std::time::{Duration, Instant};

use ruma::{
    RoomAliasId,
    api::{
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
        appservice::{ping::send_ping, query::query_room_alias},
    },
};
use serde_json::Value as JsonValue;

use super::Registered;
use crate::outbound::error_chain;

/// A query the user is waiting on: a service slower than this is treated as down.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from a lookup.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a ping failed, as the client API reports it.
#[derive(Debug)]
pub enum PingError {
    UrlNotSet,
    Timeout,
    ConnectionFailed(String),
    BadStatus { status: u16, body: String },
}

/// Why a lookup failed.
#[derive(Debug)]
pub enum QueryError {
    /// No service handles the protocol.
    NoService,
    /// Every service asked failed; the text says how.
    Failed(String),
}

pub struct Queries {
    http: reqwest::Client,
}

/// What went wrong sending one request.
enum SendError {
    NoUrl,
    Timeout,
    Connection(String),
    Status(u16, String),
    Answer(String),
}

impl Queries {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(QUERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self { http }
    }

    /// The HTTP client, shared with delivery.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn ping(&self, service: &Registered, transaction_id: Option<&str>) -> Result<u64, PingError> {
        let mut request = send_ping::v1::Request::new();
        request.transaction_id = transaction_id.map(Into::into);
        let started = Instant::now();
        match self.send(service, request, QUERY_TIMEOUT).await {
            Ok(_) => Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            Err(SendError::NoUrl) => Err(PingError::UrlNotSet),
            Err(SendError::Timeout) => Err(PingError::Timeout),
            Err(SendError::Connection(e)) => Err(PingError::ConnectionFailed(e)),
            Err(SendError::Status(status, body)) => Err(PingError::BadStatus { status, body }),
            Err(SendError::Answer(body)) => Err(PingError::BadStatus { status: 200, body }),
        }
    }

    /// `GET /_matrix/app/v1/rooms/{alias}`: whether the service created the alias.
    pub async fn room_alias(&self, service: &Registered, alias: &RoomAliasId) -> bool {
        let request = query_room_alias::v1::Request::new(alias.to_owned());
        self.answered(service, "alias", self.send(service, request, QUERY_TIMEOUT).await)
    }

    fn answered<T>(&self, service: &Registered, what: &str, result: Result<T, SendError>) -> bool {
        match result {
            Ok(_) => true,
            // 404 is the service's "no such thing".
            Err(SendError::Status(404, _)) | Err(SendError::NoUrl) => false,
            Err(e) => {
                tracing::warn!(appservice = service.id(), "{what} query failed: {}", e.describe());
                false
            }
        }
    }

    /// A GET of `path_and_query` (under `/_matrix/app/v1`) answered with JSON.
    pub async fn get_json(&self, service: &Registered, path_and_query: &str) -> Result<JsonValue, String> {
        let Some(base) = service.url() else { return Err("the service has no URL".to_owned()) };
        let url = format!("{}/_matrix/app/v1{path_and_query}", base.trim_end_matches('/'));
        let response = self
            .http
            .get(url)
            .bearer_auth(&service.registration.hs_token)
            .timeout(QUERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = read_limited(response).await.map_err(|e| e.describe())?;
        if !status.is_success() {
            return Err(format!("{status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    }

    /// Sends a ruma request to the service and parses its answer.
    async fn send<R>(
        &self,
        service: &Registered,
        request: R,
        timeout: Duration,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<Authentication = ruma::api::appservice::HomeserverToken>,
        R::PathBuilder: ruma::api::path_builder::PathBuilder<Input<'static> = ()>,
    {
        let Some(base) = service.url() else { return Err(SendError::NoUrl) };
        let request = request
            .try_into_http_request::<Vec<u8>>(base.trim_end_matches('/'), &service.registration.hs_token, ())
            .map_err(|e| SendError::Connection(format!("cannot build the request: {e}")))?;
        let mut request = reqwest::Request::try_from(request.map(reqwest::Body::from))
            .map_err(|e| SendError::Connection(format!("cannot build the request: {e}")))?;
        *request.timeout_mut() = Some(timeout);
        let response = self.http.execute(request).await.map_err(|e| {
            if e.is_timeout() { SendError::Timeout } else { SendError::Connection(error_chain(&e)) }
        })?;
        let status = response.status();
        let body = read_limited(response).await?;
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(SendError::Status(status.as_u16(), excerpt));
        }
        let mut answer = http::Response::new(&body[..]);
        *answer.status_mut() = status;
        R::IncomingResponse::try_from_http_response(answer)
            .map_err(|e| SendError::Answer(format!("not the API's answer: {e}")))
    }
}

/// Sends a transaction; the body is built by delivery.
pub async fn put_transaction(
    http: &reqwest::Client,
    service: &Registered,
    request: ruma::api::appservice::event::push_events::v1::Request,
    timeout: Duration,
) -> Result<(), String> {
    let Some(base) = service.url() else { return Err("the service has no URL".to_owned()) };
    let request = request
        .try_into_http_request::<Vec<u8>>(base.trim_end_matches('/'), &service.registration.hs_token, ())
        .map_err(|e| format!("cannot build the transaction: {e}"))?;
    let mut request = reqwest::Request::try_from(request.map(reqwest::Body::from))
        .map_err(|e| format!("cannot build the transaction: {e}"))?;
    *request.timeout_mut() = Some(timeout);
    let response = http.execute(request).await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = read_limited(response).await.map_err(|e| e.describe())?;
    Err(format!("{status}: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>()))
}

/// The answer's body, refusing one larger than [`MAX_ANSWER_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, SendError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| SendError::Connection(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(SendError::Answer(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl SendError {
    fn describe(&self) -> String {
        match self {
            Self::NoUrl => "the service has no URL".to_owned(),
            Self::Timeout => "timed out".to_owned(),
            Self::Connection(e) | Self::Answer(e) => e.clone(),
            Self::Status(status, body) => format!("{status}: {body}"),
        }
    }
}

/// Third-party lookups asked of several services: their lists joined, or the first
/// failure when none answered.
pub fn join_answers(answers: Vec<Result<JsonValue, String>>) -> Result<Vec<JsonValue>, QueryError> {
    let mut joined = Vec::new();
    let mut failure = None;
    let mut answered = false;
    for answer in answers {
        match answer {
            Ok(JsonValue::Array(items)) => {
                answered = true;
                joined.extend(items);
            }
            Ok(other) => {
                answered = true;
                joined.push(other);
            }
            Err(e) => failure = Some(e),
        }
    }
    match (answered, failure) {
        (false, Some(e)) => Err(QueryError::Failed(e)),
        _ => Ok(joined),
    }
}
