//! One request to a push gateway: `POST /_matrix/push/v1/notify` (the push gateway API),
//! through the outbound guard.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::Url;
use ruma::api::{
    IncomingResponseExt, OutgoingRequestExt,
    push_gateway::send_event_notification::v1::{Notification, Request, Response},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::outbound::{OutboundHttp, OutboundPolicy, Refused, error_chain};

/// The only path a pusher's URL may have (the spec's rule for `data.url`).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// A gateway slower than this is treated as down, and retried.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Requests in flight to one gateway. Most users of a server share a handful of gateways
/// (their apps' push services), so one message in a big room sends hundreds of requests to
/// the same one at once: without a limit each would open its own connection, and most of
/// those would be closed again, since the HTTP client keeps only so many idle. Within the
/// limit, the same connections are reused message after message.
const IN_FLIGHT_PER_GATEWAY: usize = 32;

/// Origins remembered with their limits before unused ones are forgotten.
const REMEMBERED_GATEWAYS: usize = 1024;

/// Why a notification did not reach the gateway.
#[derive(Debug)]
pub enum GatewayError {
    /// The URL points where outbound requests may not go.
    Refused(Refused),
    /// No answer: connection refused, timed out, TLS failure.
    Unreachable(String),
    /// An answer that is not success (an HTTP error status, or a body that is not the API's).
    Failed(String),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(refused) => write!(f, "refused: {refused}"),
            Self::Unreachable(e) => write!(f, "unreachable: {e}"),
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

pub struct Gateway {
    http: OutboundHttp,
    /// Each gateway origin's limit on requests in flight.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Gateway {
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { http: OutboundHttp::new(policy, TIMEOUT), in_flight: Mutex::default() }
    }

    /// Waits for a turn to send to `origin`.
    async fn turn(&self, origin: &str) -> OwnedSemaphorePermit {
        let limit = {
            let mut limits = self.in_flight.lock().expect("never poisoned");
            if limits.len() >= REMEMBERED_GATEWAYS {
                // Forget the origins nobody is sending to (only the map holds them).
                limits.retain(|_, limit| Arc::strong_count(limit) > 1);
            }
            limits
                .entry(origin.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(IN_FLIGHT_PER_GATEWAY)))
                .clone()
        };
        limit.acquire_owned().await.expect("the semaphore is never closed")
    }

    /// Whether requests to `url` are refused outright (an IP-literal host outside what the
    /// policy permits, or another scheme); names are checked when they are resolved.
    pub fn check(&self, url: &Url) -> Result<(), Refused> {
        self.http.client_for(url).map(|_| ())
    }

    /// Sends `notification` to the gateway at `url` and returns the push keys it rejected.
    /// `unread` goes into `counts` even when zero: ruma leaves zero counts out, as the spec
    /// suggests, but a badge update must say zero for the app to clear its badge.
    pub async fn notify(
        &self,
        url: &Url,
        notification: Notification,
        unread: Option<u64>,
    ) -> Result<Vec<String>, GatewayError> {
        let client = self.http.client_for(url).map_err(GatewayError::Refused)?;
        let base = url.origin().ascii_serialization();
        let request = Request::new(notification)
            .try_into_http_request::<Vec<u8>>(&base, (), ())
            .map_err(|e| GatewayError::Failed(format!("cannot build the request: {e}")))?;
        let request = match unread {
            Some(unread) => request.map(|body| with_unread(body, unread)),
            None => request,
        };
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
            .map_err(|e| GatewayError::Failed(format!("cannot build the request: {e}")))?;
        let turn = self.turn(&base).await;
        let response = client.execute(request).await.map_err(|e| match refusal(&e) {
            Some(refused) => GatewayError::Refused(refused.clone()),
            None => GatewayError::Unreachable(error_chain(&e)),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| GatewayError::Unreachable(error_chain(&e)))?;
        drop(turn);
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(GatewayError::Failed(format!("{status}: {excerpt}")));
        }
        let mut answer = http::Response::new(&body[..]);
        *answer.status_mut() = status;
        let answer = Response::try_from_http_response(answer)
            .map_err(|e| GatewayError::Failed(format!("not a push gateway answer: {e}")))?;
        Ok(answer.rejected)
    }
}

/// The request body with `notification.counts.unread` set.
fn with_unread(body: Vec<u8>, unread: u64) -> Vec<u8> {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body) else { return body };
    let notification = &mut json["notification"];
    if !notification["counts"].is_object() {
        notification["counts"] = serde_json::json!({});
    }
    notification["counts"]["unread"] = unread.into();
    serde_json::to_vec(&json).unwrap_or(body)
}

/// The outbound guard's refusal, when that is what stopped a request (the resolver's error
/// arrives wrapped in the HTTP client's).
fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}
