//! The checks made from outside, as another server or a client would: server discovery
//! (`.well-known`, SRV), the certificate and the federation API at the address discovery
//! finds, the signing keys published there, and client discovery.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use ruma::api::{
    IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
    auth_scheme::AuthScheme,
    client::discovery::discover_homeserver::HomeserverInfo,
    federation::discovery::{get_server_keys, get_server_version},
    path_builder::SinglePath,
};
use serde::Deserialize;

use super::{Finding, Options, certificate};
use crate::{
    config::Config,
    federation::{
        client::http_builder,
        discovery::{self, Resolver, Step},
        keys::check_key_list,
    },
    outbound::{OutboundPolicy, error_chain},
    signing_key::SigningKey,
};

/// A certificate that expires sooner than this is probably not being renewed.
const CERTIFICATE_WARN_DAYS: i64 = 14;

pub struct Outside {
    pub findings: Vec<Finding>,
    /// Seconds between our clock and the `Date` of the federation API's answer.
    pub peer_clock_skew: Option<i64>,
}

pub async fn check(config: &Config, options: &Options) -> Outside {
    // The doctor goes where its operator points it, loopback included.
    let resolver = Resolver::new(Arc::new(OutboundPolicy::anywhere()));
    let http = match client(options, &resolver) {
        Ok(http) => http,
        Err(e) => return Outside { findings: vec![Finding::fail("options", e)], peer_clock_skew: None },
    };
    let mut outside = Outside { findings: vec![], peer_clock_skew: None };
    if config.federation.enabled {
        federation(config, &http, &resolver, &mut outside).await;
    } else {
        outside.findings.push(Finding::pass("federation", "off (federation.enabled = false): not checked"));
    }
    outside.findings.push(client_discovery(config, &http).await);
    outside
}

/// The federation client's HTTP set-up, plus the operator's `--resolve` and `--ca-cert`,
/// keeping the peer's certificate for the expiry check.
fn client(options: &Options, resolver: &Arc<Resolver>) -> Result<reqwest::Client, String> {
    let mut builder = http_builder(resolver).tls_info(true);
    for (host, addr) in &options.resolve {
        builder = builder.resolve(host, *addr);
    }
    for path in &options.ca_certs {
        let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| format!("cannot set up HTTPS: {e}"))
}

async fn federation(config: &Config, http: &reqwest::Client, resolver: &Resolver, out: &mut Outside) {
    let name = &config.server_name;
    let found = discovery::discover(http, resolver, name).await;
    out.findings.push(well_known(config, &found.well_known));
    out.findings.push(match &found.srv {
        Step::Skipped => Finding::pass("srv", "not looked up: the name other servers connect to has a port"),
        Step::Found((target, port)) => Finding::pass("srv", format!("points to {target}:{port}")),
        Step::Missing(why) => Finding::pass("srv", format!("{why}: other servers use port 8448")),
    });
    let base = &found.base_url;
    let version = match get(http, base, get_server_version::v1::Request::new()).await {
        Ok(answer) => answer,
        Err(Failure::Connect(e)) => {
            out.findings.push(match tls_problem(&e) {
                Some(problem) => Finding::fail("federation tls", format!("{base}: {problem}")),
                None => Finding::fail("federation api", format!("cannot reach {base}: {}", error_chain(&e))),
            });
            return;
        }
        Err(Failure::Answer(why)) => {
            out.findings.push(Finding::fail("federation api", why));
            return;
        }
    };
    out.findings.push(certificate_finding(base, version.certificate.as_deref()));
    let server = version.response.server.unwrap_or_default();
    out.findings.push(Finding::pass(
        "federation api",
        format!(
            "{base} answers as {} {}",
            server.name.as_deref().unwrap_or("an unnamed server"),
            server.version.as_deref().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
    ));
    out.peer_clock_skew = version.date.map(|date| seconds_between(date, SystemTime::now()));
    out.findings.push(keys(config, http, base).await);
}

/// What `https://<name>/.well-known/matrix/server` says, against what the config says it should.
fn well_known(config: &Config, step: &Step<String>) -> Finding {
    let configured = config.federation.well_known_server.as_deref();
    let url = format!("https://{}/.well-known/matrix/server", config.server_name);
    match (step, configured) {
        (Step::Skipped, None) => {
            Finding::pass("well-known", format!("not needed: {} names its port", config.server_name))
        }
        (Step::Skipped, Some(delegated)) => Finding::warn(
            "well-known",
            format!(
                "federation.well_known_server is {delegated}, but other servers never ask: {} names its port",
                config.server_name
            ),
        ),
        (Step::Found(found), Some(delegated)) if found != delegated => Finding::fail(
            "well-known",
            format!("{url} delegates to {found}, but federation.well_known_server is {delegated}"),
        ),
        (Step::Found(found), _) => Finding::pass("well-known", format!("{url} delegates to {found}")),
        (Step::Missing(why), Some(delegated)) => Finding::fail(
            "well-known",
            format!("federation.well_known_server is {delegated}, but other servers cannot read it: {why}"),
        ),
        (Step::Missing(why), None) => Finding::pass("well-known", format!("no delegation ({why})")),
    }
}

fn certificate_finding(base: &str, der: Option<&[u8]>) -> Finding {
    let Some(expiry) = der.and_then(certificate::not_after) else {
        return Finding::pass("federation tls", format!("{base}: certificate verified"));
    };
    let days = (expiry - unix_now()) / 86_400;
    let message = format!("{base}: certificate valid until {} ({days} days)", certificate::date(expiry));
    if days < CERTIFICATE_WARN_DAYS {
        Finding::warn("federation tls", format!("{message}: is its renewal working?"))
    } else {
        Finding::pass("federation tls", message)
    }
}

/// The key list at `base`: for this server, signed by itself, still valid, and holding the
/// key in this server's data directory (else another server answers for this one).
async fn keys(config: &Config, http: &reqwest::Client, base: &str) -> Finding {
    let name = &config.server_name;
    let response = match get(http, base, get_server_keys::v2::Request::new()).await {
        Ok(answer) => answer.response,
        Err(Failure::Connect(e)) => {
            return Finding::fail("federation keys", format!("{base}: {}", error_chain(&e)));
        }
        Err(Failure::Answer(why)) => return Finding::fail("federation keys", why),
    };
    let published = match check_key_list(name, &response.server_key) {
        Ok((keys, _)) => keys,
        Err(why) => return Finding::fail("federation keys", why),
    };
    let valid_until = i64::from(published.valid_until_ts.as_secs());
    if valid_until <= unix_now() {
        return Finding::fail(
            "federation keys",
            format!("{base} publishes keys that expired on {}", certificate::date(valid_until)),
        );
    }
    let own = match SigningKey::load(&config.data_dir) {
        Ok(Some(own)) => own,
        Ok(None) => {
            return Finding::warn(
                "federation keys",
                format!("{} has no signing key to compare with", config.data_dir.display()),
            );
        }
        Err(e) => return Finding::warn("federation keys", e),
    };
    let matches = published
        .verify_keys
        .iter()
        .any(|(id, key)| id.as_str() == own.key_id() && key.key.encode() == own.public_key_base64());
    if matches {
        Finding::pass("federation keys", format!("{base} publishes this server's key {}", own.key_id()))
    } else {
        let ids: Vec<&str> = published.verify_keys.keys().map(|id| id.as_str()).collect();
        Finding::fail(
            "federation keys",
            format!(
                "{base} publishes {}, not this server's key {} from {}: another server answers for {name}",
                ids.join(", "),
                own.key_id(),
                config.data_dir.display()
            ),
        )
    }
}

#[derive(Deserialize)]
struct ClientWellKnown {
    #[serde(rename = "m.homeserver")]
    homeserver: HomeserverInfo,
}

/// What a client given the server name finds: `https://<host>/.well-known/matrix/client`,
/// then `/_matrix/client/versions` at the base URL it names.
async fn client_discovery(config: &Config, http: &reqwest::Client) -> Finding {
    let host = config.server_name.host();
    let url = format!("https://{host}/.well-known/matrix/client");
    let homeserver = match fetch_json::<ClientWellKnown>(http, &url).await {
        Ok(found) => found.homeserver,
        Err(why) => {
            return Finding::warn(
                "client discovery",
                format!(
                    "{why}: users must type {} in their client instead of {host}",
                    config.client_base_url()
                ),
            );
        }
    };
    let base = homeserver.base_url.trim_end_matches('/');
    if config.public_baseurl.is_some() && base != config.client_base_url() {
        return Finding::warn(
            "client discovery",
            format!("{url} names {base}, but public_baseurl is {}", config.client_base_url()),
        );
    }
    match fetch_json::<serde_json::Value>(http, &format!("{base}/_matrix/client/versions")).await {
        Ok(_) => Finding::pass("client discovery", format!("clients given {host} find {base}")),
        Err(why) => Finding::fail("client discovery", format!("{url} names {base}, but {why}")),
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T, String> {
    let response = http.get(url).send().await.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response.json().await.map_err(|e| format!("{url}: {}", error_chain(&e)))
}

/// A parsed answer, with the certificate it came over and its `Date`.
struct Answer<T> {
    response: T,
    certificate: Option<Vec<u8>>,
    date: Option<SystemTime>,
}

enum Failure {
    /// No answer: the connection or the TLS handshake failed.
    Connect(reqwest::Error),
    /// An answer that is an error or does not parse.
    Answer(String),
}

/// An unauthenticated federation request (ruma builds it and parses the answer).
async fn get<R>(
    http: &reqwest::Client,
    base: &str,
    request: R,
) -> Result<Answer<R::IncomingResponse>, Failure>
where
    R: OutgoingRequest<PathBuilder = SinglePath>,
    for<'a> R::Authentication: AuthScheme<Input<'a> = ()>,
{
    let request = request
        .try_into_http_request::<Vec<u8>>(base, (), ())
        .map_err(|e| Failure::Answer(format!("cannot build the request: {e}")))?;
    let url = request.uri().to_string();
    let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
        .map_err(|e| Failure::Answer(format!("{url}: {e}")))?;
    let response = http.execute(request).await.map_err(Failure::Connect)?;
    let certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec);
    let date = response
        .headers()
        .get(http::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok());
    let (status, headers) = (response.status(), response.headers().clone());
    let body: Bytes = response.bytes().await.map_err(Failure::Connect)?;
    let mut parts = http::Response::new(&body[..]);
    *parts.status_mut() = status;
    *parts.headers_mut() = headers;
    let response = R::IncomingResponse::try_from_http_response(parts).map_err(|e| {
        let body = String::from_utf8_lossy(&body).chars().take(200).collect::<String>();
        Failure::Answer(format!("{url} answered {status}: {e}: {body}"))
    })?;
    Ok(Answer { response, certificate, date })
}

/// The TLS error under a failed request, in rustls' words ("invalid peer certificate:
/// UnknownIssuer"). It sits inside `io::Error`s, whose `source()` skips what they wrap.
fn tls_problem(error: &reqwest::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        current = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `later - earlier` in whole seconds, negative when `later` is earlier.
fn seconds_between(earlier: SystemTime, later: SystemTime) -> i64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}
