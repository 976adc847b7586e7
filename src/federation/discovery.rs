//! Server discovery: from a server name to where its federation API answers, in the
//! spec's order.
//!
//! 1. An IP literal, or any name with a port, is used as given (port 8448 by default).
//! 2. `https://<name>/.well-known/matrix/server` may delegate to another name, which is
//!    then resolved by these same rules without the `.well-known` step.
//! 3. An SRV record `_matrix-fed._tcp.<name>` (or the older `_matrix._tcp.<name>`) gives
//!    the host and port to connect to, while TLS and `Host` stay those of `<name>`.
//! 4. Otherwise `<name>:8448`.
//!
//! Requests always go to `https://<name>:<port>`: an SRV target is put in place by the
//! [`Resolver`] the HTTP client uses, so certificates are checked against the name, as the
//! spec asks.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_resolver::TokioResolver;
use ruma::ServerName;
use serde::Deserialize;

use crate::outbound::{self, OutboundPolicy};

const DEFAULT_PORT: u16 = 8448;

/// DNS for the federation client: A/AAAA records, with SRV targets standing in for the
/// names whose SRV records pointed elsewhere, and only the addresses the outbound policy
/// permits (a user can make the server contact any server name, `10.0.0.1` included).
pub struct Resolver {
    /// `None` without a system DNS configuration: then names are looked up with the
    /// system's resolver and SRV records are not.
    dns: Option<TokioResolver>,
    policy: Arc<OutboundPolicy>,
    /// Name → SRV target host.
    targets: Mutex<HashMap<String, String>>,
}

impl Resolver {
    /// The system's resolver configuration (`/etc/resolv.conf`), filtered by `policy`.
    pub fn new(policy: Arc<OutboundPolicy>) -> Arc<Self> {
        Arc::new(Self { dns: outbound::system_dns(), policy, targets: Mutex::default() })
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// The target and port of `name`'s Matrix SRV record, preferring `_matrix-fed._tcp`; the
    /// target is remembered so connections to `name` go there.
    async fn srv(&self, name: &str) -> Result<(String, u16), String> {
        let Some(dns) = &self.dns else {
            return Err("no DNS configuration to look up SRV records with".to_owned());
        };
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Ok(records) = dns.srv_lookup(format!("{service}.{name}.")).await else { continue };
            // Lowest priority first, then highest weight (no weighted random choice: one
            // server at a time is contacted anyway).
            let Some(best) = records.iter().min_by_key(|r| (r.priority(), std::cmp::Reverse(r.weight())))
            else {
                continue;
            };
            let target = best.target().to_utf8().trim_end_matches('.').to_owned();
            if target.is_empty() {
                continue;
            }
            self.targets.lock().expect("never poisoned").insert(name.to_owned(), target.clone());
            return Ok((target, best.port()));
        }
        Err(format!("no _matrix-fed._tcp.{name} or _matrix._tcp.{name} record"))
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = self.targets.lock().expect("never poisoned").get(name.as_str()).cloned();
        let host = host.unwrap_or_else(|| name.as_str().to_owned());
        let dns = self.dns.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            // Federation is HTTPS only.
            let permitted = outbound::permitted_addresses(dns.as_ref(), &host, &policy, true).await?;
            let addrs: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[derive(Deserialize)]
struct WellKnown {
    #[serde(rename = "m.server")]
    server: String,
}

/// One step of discovery: not needed for this name, or what it found, or why it found
/// nothing (for `myelin doctor`).
#[derive(Debug, Clone)]
pub enum Step<T> {
    Skipped,
    Found(T),
    Missing(String),
}

/// Where a server's federation API answers, and how that was found.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `https://host:port`, where requests go (with TLS and `Host` for `host`).
    pub base_url: String,
    /// The `m.server` of `https://<name>/.well-known/matrix/server`.
    pub well_known: Step<String>,
    /// The SRV record used: target host and port.
    pub srv: Step<(String, u16)>,
}

/// `https://host:port` for `destination`, by the rules above.
pub async fn base_url(http: &reqwest::Client, resolver: &Resolver, destination: &ServerName) -> String {
    discover(http, resolver, destination).await.base_url
}

/// Discovery by the rules above, with what each step found.
pub async fn discover(http: &reqwest::Client, resolver: &Resolver, destination: &ServerName) -> Discovery {
    if let Some(base_url) = explicit(destination.as_str()) {
        return Discovery { base_url, well_known: Step::Skipped, srv: Step::Skipped };
    }
    let well_known = well_known(http, destination).await;
    let name = match &well_known {
        Ok(delegated) => match explicit(delegated) {
            Some(base_url) => {
                return Discovery {
                    base_url,
                    well_known: Step::Found(delegated.clone()),
                    srv: Step::Skipped,
                };
            }
            None => delegated.clone(),
        },
        Err(_) => destination.to_string(),
    };
    let srv = resolver.srv(&name).await;
    let port = srv.as_ref().map_or(DEFAULT_PORT, |(_, port)| *port);
    Discovery {
        base_url: format!("https://{name}:{port}"),
        well_known: match well_known {
            Ok(delegated) => Step::Found(delegated),
            Err(why) => Step::Missing(why),
        },
        srv: match srv {
            Ok(found) => Step::Found(found),
            Err(why) => Step::Missing(why),
        },
    }
}

/// The URL for a name that needs no lookup: an IP literal, or any name with a port.
fn explicit(name: &str) -> Option<String> {
    let (host, port) = match name.rsplit_once(':') {
        // `[::1]` has colons inside the brackets but no port.
        Some((host, port)) if !port.ends_with(']') && port.parse::<u16>().is_ok() => (host, Some(port)),
        _ => (name, None),
    };
    let is_ip = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
    match (is_ip, port) {
        (_, Some(port)) => Some(format!("https://{host}:{port}")),
        (true, None) => Some(format!("https://{host}:{DEFAULT_PORT}")),
        (false, None) => None,
    }
}

/// The delegated name, or why there is none.
async fn well_known(http: &reqwest::Client, destination: &ServerName) -> Result<String, String> {
    let url = format!("https://{destination}/.well-known/matrix/server");
    let response = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::outbound::error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let body: WellKnown = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    match ServerName::parse(&body.server) {
        Ok(_) => Ok(body.server),
        Err(_) => Err(format!("{url}: m.server {:?} is not a server name", body.server)),
    }
}

#[cfg(test)]
mod tests {
    use super::explicit;

    #[test]
    fn ip_literals_and_explicit_ports_need_no_lookup() {
        assert_eq!(explicit("127.0.0.1:8449").as_deref(), Some("https://127.0.0.1:8449"));
        assert_eq!(explicit("10.0.0.1").as_deref(), Some("https://10.0.0.1:8448"));
        assert_eq!(explicit("[::1]").as_deref(), Some("https://[::1]:8448"));
        assert_eq!(explicit("[::1]:443").as_deref(), Some("https://[::1]:443"));
        assert_eq!(explicit("example.org:443").as_deref(), Some("https://example.org:443"));
        assert_eq!(explicit("example.org"), None);
    }
}
