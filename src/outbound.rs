//! HTTP requests a user can make the server send go only where they may (docs/architecture.md,
//! decision 13): public addresses over HTTPS, plus the networks the operator lists in
//! `outbound.allowed_networks`, the only places plain `http://` may go.
//!
//! The check is made on the addresses the connection will use, not on a name looked up
//! separately: the clients resolve names through [`GuardedResolver`], which drops refused
//! addresses, and the HTTP stack connects only to what its resolver returned. So a name that
//! resolves to a public address when checked and to `127.0.0.1` when connected (DNS
//! rebinding) cannot slip through. What the resolver never sees is checked before sending:
//! IP-literal hosts ([`check_ip_literal`]), redirects (never followed) and proxies (never
//! used).
//!
//! Push and URL previews use [`OutboundHttp`]; the federation client has its own resolver (for SRV targets)
//! built on [`permitted_addresses`], and so has everything that goes through it (remote
//! media, keys).

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{Arc, LazyLock},
    time::Duration,
};

use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use reqwest::Url;

/// Addresses that are not on the public internet: private, loopback, link-local,
/// carrier-grade NAT, documentation, benchmarking, multicast, reserved, and the IPv6
/// translation prefixes that could lead back to any of them.
const NOT_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

static NOT_PUBLIC_NETS: LazyLock<Vec<IpNet>> =
    LazyLock::new(|| NOT_PUBLIC.iter().map(|net| net.parse().expect("a valid CIDR")).collect());

/// Where outbound requests may go.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    pub fn new(allowed_networks: Vec<IpNet>) -> Self {
        Self { allowed: allowed_networks }
    }

    /// Every address, over TLS or not: for `myelin doctor`, which goes where its operator
    /// points it.
    pub fn anywhere() -> Self {
        Self::new(["0.0.0.0/0", "::/0"].iter().map(|net| net.parse().expect("a valid CIDR")).collect())
    }

    /// Whether a request may connect to `ip`; `secure`: over TLS. Plain HTTP goes only to
    /// the listed networks, which may also be non-public ones.
    pub fn permits(&self, ip: IpAddr, secure: bool) -> bool {
        // `::ffff:127.0.0.1` is 127.0.0.1.
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        secure && !NOT_PUBLIC_NETS.iter().any(|net| net.contains(&ip))
    }
}

/// Why a URL may not be requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The system's DNS configuration (`/etc/resolv.conf`), or `None` without one: then names
/// are looked up with the system's own resolver, which cannot answer SRV queries.
pub fn system_dns() -> Option<TokioResolver> {
    match TokioResolver::builder_tokio() {
        Ok(builder) => Some(builder.build()),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS configuration: outbound requests use the system lookup");
            None
        }
    }
}

/// The addresses of `host` that `policy` lets a request (over TLS if `secure`) connect to;
/// an error naming what was refused when there are none.
pub async fn permitted_addresses(
    dns: Option<&TokioResolver>,
    host: &str,
    policy: &OutboundPolicy,
    secure: bool,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let ips: Vec<IpAddr> = match dns {
        Some(dns) => dns.lookup_ip(host).await?.iter().collect(),
        None => tokio::net::lookup_host((host, 0)).await?.map(|addr| addr.ip()).collect(),
    };
    let permitted: Vec<SocketAddr> =
        ips.iter().filter(|ip| policy.permits(**ip, secure)).map(|ip| SocketAddr::new(*ip, 0)).collect();
    if permitted.is_empty() {
        return Err(Box::new(Refused(format!(
            "{host} resolves to {ips:?}, which outbound.allowed_networks does not open{}",
            if secure { "" } else { " (plain http goes only to those networks)" }
        ))));
    }
    Ok(permitted)
}

/// Whether a URL host may be requested, when it is an IP literal (which no resolver sees);
/// names pass here and are checked when resolved.
pub fn check_ip_literal(host: &str, policy: &OutboundPolicy, secure: bool) -> Result<(), Refused> {
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) if !policy.permits(ip, secure) => Err(Refused(format!(
            "{ip} is not a public address{} and outbound.allowed_networks does not open it",
            if secure { "" } else { " reached over https" }
        ))),
        _ => Ok(()),
    }
}

/// Name resolution that returns only the addresses the policy permits.
struct GuardedResolver {
    dns: Option<TokioResolver>,
    policy: Arc<OutboundPolicy>,
    secure: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.dns.clone();
        let policy = self.policy.clone();
        let secure = self.secure;
        Box::pin(async move {
            let permitted = permitted_addresses(dns.as_ref(), name.as_str(), &policy, secure).await?;
            let addrs: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

/// HTTP clients for user-triggered requests: one for `https://` URLs, one for `http://`.
pub struct OutboundHttp {
    policy: Arc<OutboundPolicy>,
    secure: reqwest::Client,
    plain: reqwest::Client,
    /// Plain `http://` may reach public addresses too (web pages), not only listed networks.
    plain_reaches_public: bool,
}

impl OutboundHttp {
    /// `timeout` bounds a whole request, connecting included.
    pub fn new(policy: Arc<OutboundPolicy>, timeout: Duration) -> Self {
        Self::build(policy, timeout, concat!("Myelin/", env!("CARGO_PKG_VERSION")), false)
    }

    /// Clients for fetching web pages a user names (URL previews): plain `http://` reaches
    /// public addresses as well, as a browser's would, since much of the web still answers
    /// there. Private, loopback and link-local addresses stay closed unless listed, over
    /// either scheme.
    pub fn for_web_pages(policy: Arc<OutboundPolicy>, timeout: Duration, user_agent: &str) -> Self {
        Self::build(policy, timeout, user_agent, true)
    }

    fn build(
        policy: Arc<OutboundPolicy>,
        timeout: Duration,
        user_agent: &str,
        plain_reaches_public: bool,
    ) -> Self {
        let dns = system_dns();
        let client = |secure: bool| {
            // `secure` in the policy's sense: whether public addresses may be reached.
            let resolver = GuardedResolver {
                dns: dns.clone(),
                policy: policy.clone(),
                secure: secure || plain_reaches_public,
            };
            reqwest::Client::builder()
                .dns_resolver(Arc::new(resolver))
                // A redirect's target was never checked, and a proxy would be resolved
                // instead of the target: neither is used.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .pool_max_idle_per_host(64)
                .user_agent(user_agent)
                .build()
                .expect("the TLS stack initialises")
        };
        Self { secure: client(true), plain: client(false), policy, plain_reaches_public }
    }

    /// The client to request `url` with, or why it may not be requested. Names are checked
    /// when the client resolves them; an IP-literal host is checked here.
    pub fn client_for(&self, url: &Url) -> Result<&reqwest::Client, Refused> {
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(Refused(format!("{other}:// is not http or https"))),
        };
        let host = url.host_str().ok_or_else(|| Refused("the URL has no host".to_owned()))?;
        check_ip_literal(host, &self.policy, secure || self.plain_reaches_public)?;
        Ok(if secure { &self.secure } else { &self.plain })
    }
}

/// A failed request's reason with its causes ("client error (Connect): tcp connect error:
/// Connection refused"), without reqwest's own "error sending request for url (...)" when
/// there is more to say: callers name the URL.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut source = error.source();
    let mut text = match source {
        Some(_) => String::new(),
        None => error.to_string(),
    };
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = if text.is_empty() { line } else { format!("{text}: {line}") };
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn by_default_only_public_addresses_over_tls() {
        let policy = OutboundPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!policy.permits(ip(refused), true), "{refused}");
        }
        assert!(policy.permits(ip("93.184.216.34"), true));
        assert!(policy.permits(ip("2a00:1450::1"), true));
        assert!(!policy.permits(ip("93.184.216.34"), false), "plain http needs a listed network");
    }

    #[test]
    fn listed_networks_open_private_addresses_and_plain_http() {
        let policy = OutboundPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.permits(ip("127.0.0.1"), false));
        assert!(policy.permits(ip("::ffff:127.0.0.2"), true));
        assert!(!policy.permits(ip("10.0.0.1"), true));
    }

    #[test]
    fn ip_literals_are_checked_before_sending() {
        let http = OutboundHttp::new(Arc::default(), Duration::from_secs(1));
        let refused = |url: &str| http.client_for(&Url::parse(url).unwrap()).is_err();
        assert!(refused("https://127.0.0.1/x"));
        // The URL parser normalises other spellings of loopback.
        assert!(refused("https://0x7f.1/x"));
        assert!(refused("https://[::1]:8448/x"));
        assert!(refused("https://[::ffff:7f00:1]/x"));
        assert!(refused("ftp://example.org/x"));
        assert!(!refused("https://push.example.org/x"));
        assert!(!refused("https://93.184.216.34/x"));
    }

    #[test]
    fn web_pages_may_be_plain_http_but_still_not_private() {
        let http = OutboundHttp::for_web_pages(Arc::default(), Duration::from_secs(1), "test");
        let refused = |url: &str| http.client_for(&Url::parse(url).unwrap()).is_err();
        assert!(!refused("http://93.184.216.34/x"));
        assert!(refused("http://127.0.0.1/x"));
        assert!(refused("http://[fd00::1]/x"));
        assert!(refused("http://169.254.169.254/latest/meta-data"));
    }
}
