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
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_resolver::TokioResolver;
use ruma::ServerName;
use serde::Deserialize;

const DEFAULT_PORT: u16 = 8448;

/// DNS for the federation client: A/AAAA records, with SRV targets standing in for the
/// names whose SRV records pointed elsewhere.
pub struct Resolver {
    dns: TokioResolver,
    /// Name → SRV target host.
    targets: Mutex<HashMap<String, String>>,
}

impl Resolver {
    /// The system's resolver configuration (`/etc/resolv.conf`), or `None` without one.
    pub fn from_system() -> Option<Arc<Self>> {
        match TokioResolver::builder_tokio() {
            Ok(builder) => Some(Arc::new(Self { dns: builder.build(), targets: Mutex::default() })),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS configuration: SRV records will not be looked up");
                None
            }
        }
    }

    /// The target and port of `name`'s Matrix SRV record, preferring `_matrix-fed._tcp`; the
    /// target is remembered so connections to `name` go there.
    async fn srv(&self, name: &str) -> Option<u16> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Ok(records) = self.dns.srv_lookup(format!("{service}.{name}.")).await else { continue };
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
            self.targets.lock().expect("never poisoned").insert(name.to_owned(), target);
            return Some(best.port());
        }
        None
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = self.targets.lock().expect("never poisoned").get(name.as_str()).cloned();
        let host = host.unwrap_or_else(|| name.as_str().to_owned());
        let dns = self.dns.clone();
        Box::pin(async move {
            let ips = dns.lookup_ip(host).await?;
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[derive(Deserialize)]
struct WellKnown {
    #[serde(rename = "m.server")]
    server: String,
}

/// `https://host:port` for `destination`, by the rules above.
pub async fn base_url(
    http: &reqwest::Client,
    resolver: Option<&Resolver>,
    destination: &ServerName,
) -> String {
    if let Some(url) = explicit(destination.as_str()) {
        return url;
    }
    let name = match well_known(http, destination).await {
        Some(delegated) => match explicit(&delegated) {
            Some(url) => return url,
            None => delegated,
        },
        None => destination.to_string(),
    };
    let port = match resolver {
        Some(resolver) => resolver.srv(&name).await.unwrap_or(DEFAULT_PORT),
        None => DEFAULT_PORT,
    };
    format!("https://{name}:{port}")
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

async fn well_known(http: &reqwest::Client, destination: &ServerName) -> Option<String> {
    let url = format!("https://{destination}/.well-known/matrix/server");
    let response = http.get(&url).timeout(Duration::from_secs(10)).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: WellKnown = response.json().await.ok()?;
    ServerName::parse(&body.server).is_ok().then_some(body.server)
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
