//! hyper listeners and the request pipeline every request goes through:
//! span and request id → CORS preflight → route → rate limit per client IP → body (with a
//! size limit) → handler (authentication, rate limit per user, parsing) → CORS headers →
//! one log line.
//!
//! Two listeners share this pipeline with different routers: the client API on TCP, and
//! the admin API on a Unix socket in the data directory (mode 0600: whoever can open it is
//! an administrator).

pub mod error;
mod parse_errors;
pub mod router;

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::{Body as _, Incoming},
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};
use tracing::Instrument;

use crate::rate_limiter::RateLimiter;
use crate::{
    config::RateLimitsConfig,
    metrics::{RequestLabels, RouteLabels, metrics},
};
pub use error::{ApiError, Response};
use router::{Call, Lookup, RateLimitClass, Router};

use crate::services::Services;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The HTTP/2 header list a client may send (announced in the connection's SETTINGS):
/// room for the longest URI a request can carry (65,534 bytes, as over HTTP/1) and
/// ordinary headers. hyper's default of 16 KiB had the `h2` crate answer a request with a
/// longer list, such as a 20 KB query that HTTP/1 serves, with an empty 431.
const H2_MAX_HEADER_LIST_BYTES: u32 = 128 * 1024;

/// One listener's routes and policies.
pub struct Pipeline {
    services: Arc<Services>,
    router: Router,
    /// Browsers need CORS on the client API; the admin socket has no browsers.
    cors: bool,
    max_body: usize,
    /// See `limits.header_timeout_secs`.
    header_timeout: Duration,
    limiters: Option<Limiters>,
    next_request_id: AtomicU64,
}

/// One limiter per [`RateLimitClass`], when `rate_limits.enabled`.
struct Limiters {
    login: RateLimiter<IpAddr>,
    register: RateLimiter<IpAddr>,
    message: Arc<RateLimiter<String>>,
    join: Arc<RateLimiter<String>>,
    invite: Arc<RateLimiter<String>>,
    media_upload: Arc<RateLimiter<String>>,
    to_device: Arc<RateLimiter<String>>,
}

impl Limiters {
    fn new(config: &RateLimitsConfig) -> Self {
        let per_user = |limit| Arc::new(RateLimiter::new(limit));
        Self {
            login: RateLimiter::new(config.login),
            register: RateLimiter::new(config.register),
            message: per_user(config.message),
            join: per_user(config.join),
            invite: per_user(config.invite),
            media_upload: per_user(config.media_upload),
            to_device: per_user(config.to_device),
        }
    }

    /// The per-IP limiter for `class`, if it has one.
    fn per_ip(&self, class: RateLimitClass) -> Option<&RateLimiter<IpAddr>> {
        match class {
            RateLimitClass::Login => Some(&self.login),
            RateLimitClass::Register => Some(&self.register),
            _ => None,
        }
    }

    /// The per-user limiter for `class`, if it has one.
    fn per_user(&self, class: RateLimitClass) -> Option<&Arc<RateLimiter<String>>> {
        match class {
            RateLimitClass::Message => Some(&self.message),
            RateLimitClass::Join => Some(&self.join),
            RateLimitClass::Invite => Some(&self.invite),
            RateLimitClass::MediaUpload => Some(&self.media_upload),
            RateLimitClass::ToDevice => Some(&self.to_device),
            RateLimitClass::Login | RateLimitClass::Register => None,
        }
    }
}

impl Pipeline {
    pub fn new(services: Arc<Services>, router: Router, cors: bool) -> Self {
        let config = &services.config;
        let limits = &config.rate_limits;
        Self {
            max_body: config.limits.max_request_bytes,
            header_timeout: Duration::from_secs(config.limits.header_timeout_secs),
            limiters: limits.enabled.then(|| Limiters::new(limits)),
            services,
            router,
            cors,
            next_request_id: AtomicU64::new(1),
        }
    }

    async fn handle(&self, request: http::Request<Incoming>, client_ip: IpAddr) -> Response {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "request",
            id,
            method = %request.method(),
            path = request.uri().path(),
            route = tracing::field::Empty,
            user = tracing::field::Empty,
        );
        let started = Instant::now();
        let method = request.method().to_string();
        let (route, mut response) = match self.route(&request) {
            Routed::To(route, path_args) => {
                span.record("route", route.pattern);
                let call = self.call(route, path_args, request, client_ip, span.clone());
                (Some(route.pattern), call.instrument(span.clone()).await)
            }
            Routed::Answered(answer) => (None, answer),
        };
        if self.cors {
            add_cors_headers(response.headers_mut());
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        let ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if status >= 500 {
                tracing::error!(status, ms, "request failed");
            } else {
                tracing::info!(status, ms, "request");
            }
        });
        let route = route.unwrap_or("unrouted").to_owned();
        let metrics = metrics();
        metrics.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
        metrics.request_seconds.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
        response
    }

    /// Where a request goes: to a route's handler, or straight to its answer.
    fn route(&self, request: &http::Request<Incoming>) -> Routed<'_> {
        if self.cors && request.method() == Method::OPTIONS {
            let preflight = http::Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .expect("static response parts are valid");
            return Routed::Answered(preflight);
        }
        match self.router.lookup(request.method(), request.uri().path()) {
            Lookup::Found(route, args) => Routed::To(route, args),
            Lookup::NoSuchPath => {
                Routed::Answered(ApiError::unrecognized(StatusCode::NOT_FOUND).into_response())
            }
            Lookup::WrongMethod => {
                Routed::Answered(ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED).into_response())
            }
        }
    }

    /// Rate limit, body, handler, and the headers the route asks for.
    async fn call(
        &self,
        route: &router::Route,
        path_args: Vec<String>,
        request: http::Request<Incoming>,
        client_ip: IpAddr,
        span: tracing::Span,
    ) -> Response {
        let limited = self.limiters.as_ref().zip(route.options.rate_limit);
        if let Some(limiter) = limited.and_then(|(limiters, class)| limiters.per_ip(class))
            && let Err(wait) = limiter.check(&client_ip)
        {
            return ApiError::limit_exceeded(wait).into_response();
        }
        let user_limiter = limited.and_then(|(limiters, class)| limiters.per_user(class)).cloned();
        let max_body = route.options.max_body.unwrap_or(self.max_body);
        // The body reader is boxed and skipped when there is no body (every GET): this future
        // lives as long as the request, a parked `/sync` included, and would otherwise be
        // sized for the reader's state all that time.
        let request = if request.body().is_end_stream() {
            http::Request::from_parts(request.into_parts().0, Bytes::new())
        } else {
            match Box::pin(read_body(request, max_body)).await {
                Ok(request) => request,
                Err(error) => return error.into_response(),
            }
        };
        let file_body = route.options.file_body;
        let call = Call { request, path_args, client_ip, span, user_limiter, file_body };
        let mut response = (route.handler)(self.services.clone(), call).await;
        if route.options.serves_user_content {
            add_user_content_headers(response.headers_mut());
        }
        response
    }
}

/// Where routing sent a request.
enum Routed<'a> {
    /// To a route's handler, with the path arguments.
    To(&'a router::Route, Vec<String>),
    /// Nowhere: the answer needs no handler (a CORS preflight, an unknown path or method).
    Answered(Response),
}

/// Reads the whole body, refusing more than `max_body` bytes whether or not the
/// client announced the length.
async fn read_body(
    request: http::Request<Incoming>,
    max_body: usize,
) -> Result<http::Request<Bytes>, ApiError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body as u64) {
        return Err(ApiError::too_large(max_body));
    }
    let (parts, body) = request.into_parts();
    let bytes = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::too_large(max_body)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::Unknown,
                "Could not read the request body",
            )
        }
    })?;
    Ok(http::Request::from_parts(parts, bytes.to_bytes()))
}

/// Uploaded files are served as inert data: no scripts, no plugins, no type sniffing.
fn add_user_content_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
             style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
}

/// What browsers need to let a web client read the client API's answers.
const CORS_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (header::ACCESS_CONTROL_ALLOW_HEADERS, "X-Requested-With, Content-Type, Authorization, Date"),
];

fn add_cors_headers(headers: &mut http::HeaderMap) {
    for (name, value) in CORS_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Something that accepts connections: a TCP or a Unix listener.
pub trait Acceptor: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, IpAddr)>> + Send;
    /// The HTTP version a plain (not TLS) connection speaks.
    fn protocol(stream: &Self::Stream) -> impl Future<Output = Protocol> + Send;
}

/// The HTTP version of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Acceptor for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, IpAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Chat traffic is many small writes; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.ip()))
    }

    async fn protocol(stream: &Self::Stream) -> Protocol {
        match tokio::time::timeout(PREFACE_TIMEOUT, sniff_h2c(stream)).await {
            Ok(true) => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, IpAddr)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, IpAddr::V4(Ipv4Addr::LOCALHOST)))
    }

    /// The admin socket's only client, the CLI, speaks HTTP/1.1.
    async fn protocol(_: &Self::Stream) -> Protocol {
        Protocol::Http1
    }
}

/// What an HTTP/2 client with prior knowledge (h2c) sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a client that has sent part of the HTTP/2 preface may take to send the rest.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a plain connection opens with the HTTP/2 preface, decided by peeking, so that the
/// bytes stay in the socket for whichever protocol reads them.
///
/// hyper-util's `auto` connection reads the first 24 bytes itself and hands them to HTTP/1
/// as a separate first read, which made hyper grow every connection's read buffer from 8 to
/// 16 KiB. With 10 000 parked long-polls that was 80 MB.
async fn sniff_h2c(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(5);
    loop {
        let Ok(n) = stream.peek(&mut first).await else { return false };
        // n == 0 is end of stream: HTTP/1 reports that as it does for any request.
        if n == 0 || first[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // Only part of the preface has arrived; a real HTTP/1 request differs from it by
        // the second byte, so this is a slow HTTP/2 client. The socket is readable already,
        // so readiness cannot say when more arrives: peek again, less and less often, so
        // that a client stalling here costs a few dozen wake-ups, not thousands.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Serves connections from `listener` until `shutdown` turns true, then lets in-flight
/// requests finish (up to [`SHUTDOWN_GRACE`]). With `tls`, each connection first completes
/// a TLS handshake (in its own task, so a slow client holds up nobody else).
pub async fn serve<A: Acceptor>(
    listener: A,
    pipeline: Arc<Pipeline>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, client_ip) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually running out of file descriptors: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let pipeline = pipeline.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let protocol = A::protocol(&stream).await;
                    serve_connection(stream, protocol, pipeline, client_ip, watcher).await
                }
                // Boxed: TLS state is large, and plain connections' tasks need not be sized for it.
                Some(tls) => Box::pin(serve_tls(stream, tls, pipeline, client_ip, watcher)).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some requests were still running after the shutdown grace period");
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes the TLS handshake, then serves the protocol ALPN settled on.
async fn serve_tls<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    tls: tokio_rustls::TlsAcceptor,
    pipeline: Arc<Pipeline>,
    client_ip: IpAddr,
    watcher: Watcher,
) {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            serve_connection(stream, protocol, pipeline, client_ip, watcher).await
        }
        Ok(Err(e)) => tracing::debug!(error = %e, %client_ip, "TLS handshake failed"),
        Err(_) => tracing::debug!(%client_ip, "TLS handshake timed out"),
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    protocol: Protocol,
    pipeline: Arc<Pipeline>,
    client_ip: IpAddr,
    watcher: Watcher,
) {
    let (header_timeout, cors) = (pipeline.header_timeout, pipeline.cors);
    let service = service_fn(move |request| {
        let pipeline = pipeline.clone();
        async move { Ok::<_, Infallible>(pipeline.handle(request, client_ip).await) }
    });
    let ended = match protocol {
        // Without a timer hyper has no header timeout, and a client that never finishes its
        // headers would hold the connection for ever.
        Protocol::Http1 => {
            let io = TokioIo::new(parse_errors::MatrixParseErrors::new(stream, cors));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, service);
            watcher.watch(connection).await
        }
        // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and every
        // connection task would otherwise be sized for it.
        Protocol::Http2 => {
            let connection = http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            Box::pin(watcher.watch(connection)).await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The address a TCP listener actually bound (port 0 picks a free one).
pub fn local_addr(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound listener has an address")
}
