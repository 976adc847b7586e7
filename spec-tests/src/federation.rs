//! Federating servers for the federation spec-tests: each Myelin gets its own federation
//! listener on a free loopback port, speaking TLS with a self-signed certificate made for
//! `127.0.0.1`, and the server name `127.0.0.1:PORT` so that other servers find it there.
//!
//! Everything stays on 127.0.0.1. Outbound requests accept any certificate
//! (`federation.trust_self_signed`), which is only acceptable because of that.
//!
//! ```ignore
//! let a = Server::start_federating().await;
//! let b = Server::start_federating().await;
//! let bob = b.client().register("bob", PASSWORD).await; // @bob:127.0.0.1:PORT_B
//! a.federation_client().get("/_matrix/federation/v1/version").await;
//! ```
//!
//! [`Server::stop`] or [`Server::kill9`] then [`Server::restart`] keeps both ports, the
//! data and the certificate.

use std::{
    net::{SocketAddr, TcpListener},
    process::Child,
    time::{Duration, Instant},
};

use crate::{Client, Server, TEST_CONFIG};

/// How often a start is retried when the port picked for the federation listener was taken
/// by someone else before the server could bind it.
const START_ATTEMPTS: usize = 3;

/// A server's federation listener: its address (also its server name) and its certificate.
pub struct FederationListener {
    pub addr: SocketAddr,
    /// The self-signed certificate the listener serves, PEM.
    pub cert_pem: String,
}

impl FederationListener {
    /// `127.0.0.1:PORT`: the server name is the listener's address, so no discovery is needed.
    pub fn server_name(&self) -> String {
        self.addr.to_string()
    }
}

/// A loopback port nobody listens on right now. Another process may take it before the
/// caller binds it; [`Server::start_federating_with`] retries when that happens.
pub fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A self-signed certificate for IP 127.0.0.1: (certificate PEM, PKCS#8 private key PEM).
pub fn self_signed_certificate() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("self-signed certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

impl Server {
    /// Starts a federating server with [`TEST_CONFIG`].
    pub async fn start_federating() -> Server {
        Self::start_federating_with("", TEST_CONFIG).await
    }

    /// Starts a federating server. `federation_keys` are extra lines for the `[federation]`
    /// table (such as `deny = ["127.0.0.1:1234"]`); `config` is the rest of the config and
    /// must start with a table header (as [`TEST_CONFIG`] does), since it follows that table.
    /// Outbound requests may go to loopback, where the other servers of a test are.
    pub async fn start_federating_with(federation_keys: &str, config: &str) -> Server {
        Self::start_federating_reaching(&["127.0.0.0/8"], federation_keys, config).await
    }

    /// [`Server::start_federating_with`], with `outbound.allowed_networks` set to
    /// `networks`: with none, the server may contact only public addresses (and so none of
    /// a test's servers); `config` must not have an `[outbound]` table.
    pub async fn start_federating_reaching(networks: &[&str], federation_keys: &str, config: &str) -> Server {
        for attempt in 1..=START_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
            let (cert_pem, key_pem) = self_signed_certificate();
            let listener = FederationListener { addr, cert_pem };
            let mut server = Server::unstarted("", &[], Some(listener));
            let (cert_path, key_path) =
                (server.dir.path().join("federation-cert.pem"), server.dir.path().join("federation-key.pem"));
            std::fs::write(&cert_path, &server.federation().cert_pem).expect("write certificate");
            std::fs::write(&key_path, key_pem).expect("write key");
            server.write_config(&format!(
                "server_name = \"{name}\"\n\
                 \n\
                 [federation]\n\
                 enabled = true\n\
                 listen = \"{addr}\"\n\
                 tls_cert = {cert}\n\
                 tls_key = {key}\n\
                 trust_self_signed = true\n\
                 {federation_keys}\n\
                 [outbound]\n\
                 allowed_networks = {networks:?}\n\
                 {config}\n",
                name = server.server_name(),
                cert = toml_string(&cert_path),
                key = toml_string(&key_path),
            ));
            match server.try_spawn().await {
                Ok(()) => return server,
                Err(_) if attempt < START_ATTEMPTS && port_was_taken(&server).await => server.kill9(),
                Err(why) => panic!("{why}; log:\n{}", server.log_tail()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The federation listener of a server started with [`Server::start_federating`].
    pub fn federation(&self) -> &FederationListener {
        self.federation.as_ref().expect("started with Server::start_federating")
    }

    /// The server name, `127.0.0.1:PORT` of the federation listener.
    pub fn server_name(&self) -> String {
        self.federation().server_name()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn federation_url(&self) -> String {
        format!("https://{}", self.federation().addr)
    }

    /// A client for the federation listener that trusts this server's certificate and no
    /// other, for 127.0.0.1: a request that succeeds shows the configured certificate is
    /// what the listener serves. It sends no `Authorization` unless told to.
    pub fn federation_client(&self) -> Client {
        let cert = reqwest::Certificate::from_pem(self.federation().cert_pem.as_bytes()).expect("PEM");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .https_only(true)
            .build()
            .expect("HTTPS client");
        Client { http, ..Client::new(&self.federation_url()) }
    }
}

/// Whether a failed start failed because the federation port was taken ("Address in use").
async fn port_was_taken(server: &Server) -> bool {
    // The log is copied by a thread that may still be writing the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.log_tail().to_lowercase().contains("in use")
}

/// A path as a TOML basic string (JSON string escapes are valid TOML ones).
fn toml_string(path: &std::path::Path) -> String {
    serde_json::to_string(path.to_str().expect("UTF-8 temp path")).expect("JSON string")
}

/// Waits until `addr` accepts TCP connections, or fails when the server exits or 30 s pass.
pub(crate) async fn wait_for_listener(addr: SocketAddr, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("myelin exited ({status}) before the federation listener {addr} opened"));
        }
        if Instant::now() > deadline {
            return Err(format!("the federation listener {addr} did not open within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
