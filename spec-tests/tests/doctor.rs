//! `myelin doctor` against real deployments on loopback: a Myelin named `localhost` behind a
//! TLS-terminating proxy (Caddy's part, played by a byte pipe here), delegated with
//! `.well-known/matrix/server`, exactly as docs/self-hosting.md sets one up. `--resolve
//! localhost=127.0.0.1:PORT` stands in for DNS, `--ca-cert` for a public CA.
//!
//! Pass: every check of a well set-up server. Warn: open registration, no administrator, a
//! certificate about to expire.
//! Fail: an invalid config, an unreachable federation endpoint, an untrusted and an expired
//! certificate, another server's keys behind the proxy. Exit status 1 on any failure.

use std::{net::SocketAddr, path::PathBuf, process::Output, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use spec_tests::{federation::free_loopback_port, *};

/// A TLS-terminating reverse proxy for `localhost`: it accepts TLS with its certificate and
/// pipes the bytes to the server's listener, as Caddy in front of Myelin does.
struct TlsProxy {
    addr: SocketAddr,
    cert_path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Binds the proxy's port now (the server's config names it) and forwards once
    /// [`TlsProxy::forward_to`] knows where.
    async fn bind(params: rcgen::CertificateParams) -> (tokio::net::TcpListener, TlsProxyCert) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        (listener, TlsProxyCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    fn forward_to(listener: tokio::net::TcpListener, cert: TlsProxyCert, upstream: SocketAddr) -> TlsProxy {
        let addr = listener.local_addr().expect("proxy address");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_path = dir.path().join("ca.pem");
        std::fs::write(&cert_path, &cert.cert_pem).expect("write the certificate");
        let certs = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("certificate")];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        TlsProxy { addr, cert_path, task, _dir: dir }
    }
}

struct TlsProxyCert {
    cert_pem: String,
    key_pem: String,
}

fn localhost_certificate() -> rcgen::CertificateParams {
    rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate parameters")
}

/// A Myelin named `server_name` behind a TLS proxy; `server_name` and `extra` may use
/// `{proxy}`, the proxy's port.
async fn deployment(
    server_name: &str,
    extra: &str,
    certificate: rcgen::CertificateParams,
) -> (Server, TlsProxy) {
    let (listener, cert) = TlsProxy::bind(certificate).await;
    let port = listener.local_addr().unwrap().port().to_string();
    let config = format!("server_name = \"{server_name}\"\n{extra}\n[rate_limits]\nenabled = false\n")
        .replace("{proxy}", &port);
    let server = Server::start_with_config(&config).await;
    let proxy = TlsProxy::forward_to(listener, cert, server.addr);
    (server, proxy)
}

/// `localhost` delegated to `localhost:PROXY`, where clients find it too.
const DELEGATED: &str = r#"public_baseurl = "https://localhost:{proxy}"
[federation]
well_known_server = "localhost:{proxy}"
[registration]
mode = "token""#;

fn doctor(server: &Server, proxy: &TlsProxy, trust: bool) -> Output {
    let resolve = format!("localhost={}", proxy.addr);
    let mut args = vec!["--json", "doctor", "--resolve", &resolve];
    let cert = proxy.cert_path.to_str().unwrap().to_owned();
    if trust {
        args.extend(["--ca-cert", &cert]);
    }
    server.cli(&args, None)
}

/// The findings, as `(check, level, message)`.
fn findings(output: &Output) -> Vec<(String, String, String)> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let list: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("doctor prints JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    list.as_array()
        .expect("a list")
        .iter()
        .map(|f| {
            let text = |key: &str| f[key].as_str().expect("string").to_owned();
            (text("check"), text("level"), text("message"))
        })
        .collect()
}

/// The level and message of `check`.
#[track_caller]
fn finding(findings: &[(String, String, String)], check: &str) -> (String, String) {
    findings
        .iter()
        .find(|(name, ..)| name == check)
        .map(|(_, level, message)| (level.clone(), message.clone()))
        .unwrap_or_else(|| panic!("no {check} line in {findings:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_server_behind_tls_passes_every_check() {
    let (server, proxy) = deployment("localhost", DELEGATED, localhost_certificate()).await;
    cli_ok(&server.cli(&["user", "create", "root", "--admin", "--password-stdin"], Some("pw-root\n")));
    let key = cli_ok(&server.cli(&["keys", "show"], None));
    let key_id = key.split_whitespace().next().unwrap().to_owned();

    let output = doctor(&server, &proxy, true);
    let found = findings(&output);
    assert!(output.status.success(), "no check fails: {found:#?}");
    let port = proxy.addr.port();
    for (check, expected) in [
        ("config", "is valid".to_owned()),
        ("registration", "token".to_owned()),
        ("administrators", "@root:localhost".to_owned()),
        ("well-known", format!("delegates to localhost:{port}")),
        ("srv", "not looked up".to_owned()),
        ("federation tls", format!("https://localhost:{port}: certificate valid until 4096-01-01")),
        ("federation api", "answers as Myelin".to_owned()),
        ("federation keys", format!("publishes this server's key {key_id}")),
        ("client discovery", format!("clients given localhost find https://localhost:{port}")),
    ] {
        let (level, message) = finding(&found, check);
        assert_eq!(level, "pass", "{check}: {message}");
        assert!(message.contains(&expected), "{check}: {message:?} lacks {expected:?}");
    }
    for check in ["disk", "clock"] {
        assert_ne!(finding(&found, check).0, "fail", "{check}");
    }

    // The same as text: one `level  check  message` line each.
    let text = cli_ok(&server.cli(
        &[
            "doctor",
            "--resolve",
            &format!("localhost={}", proxy.addr),
            "--ca-cert",
            proxy.cert_path.to_str().unwrap(),
        ],
        None,
    ));
    assert!(text.lines().any(|l| l.starts_with("pass  federation keys")), "{text}");
    assert_eq!(text.lines().count(), found.len(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registration_and_no_administrator_are_warnings() {
    let config = "[federation]\nenabled = false\n[registration]\nmode = \"open\"";
    let (server, proxy) = deployment("localhost", config, localhost_certificate()).await;
    server.client().register("alice", "pw-alice").await;

    let output = doctor(&server, &proxy, true);
    let found = findings(&output);
    assert_eq!(finding(&found, "registration").0, "warn");
    let (level, message) = finding(&found, "administrators");
    assert_eq!(level, "warn");
    assert!(message.contains("--admin"), "{message}");
    let (level, message) = finding(&found, "federation");
    assert_eq!((level.as_str(), message.contains("off")), ("pass", true), "{message}");
    assert!(!found.iter().any(|(check, ..)| check.starts_with("federation ")), "{found:#?}");
    // Warnings alone do not fail the run.
    assert!(output.status.success(), "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_federation_endpoint_fails() {
    let (server, _proxy) = deployment("localhost", DELEGATED, localhost_certificate()).await;
    // DNS sends `localhost` to a port nobody listens on: no .well-known, nothing on 8448.
    let nowhere = format!("localhost=127.0.0.1:{}", free_loopback_port());
    let output = server.cli(&["--json", "doctor", "--resolve", &nowhere], None);
    let found = findings(&output);
    assert_eq!(output.status.code(), Some(1), "{found:#?}");
    let (level, message) = finding(&found, "well-known");
    assert_eq!(level, "fail", "configured but not served: {message}");
    assert!(message.contains("federation.well_known_server"), "{message}");
    let (level, message) = finding(&found, "federation api");
    assert_eq!(level, "fail");
    assert!(message.contains("cannot reach https://localhost:8448"), "{message}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("failed"));

    // A broken config is the first failure, and the only line.
    std::fs::write(server.config_path(), "server_name = \"localhost\"\nlisten = \"nowhere\"\n").unwrap();
    let output = server.cli(&["--json", "doctor"], None);
    let found = findings(&output);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(finding(&found, "config").0, "fail");

    let wrong = server.cli(&["doctor", "--resolve", "localhost"], None);
    assert_eq!(wrong.status.code(), Some(2), "a malformed --resolve is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_expired_certificate_fails_the_tls_check() {
    // The server names the proxy's port, so discovery goes there directly.
    let (server, proxy) = deployment("localhost:{proxy}", "", localhost_certificate()).await;
    let output = doctor(&server, &proxy, false);
    let found = findings(&output);
    let (level, message) = finding(&found, "federation tls");
    assert_eq!(level, "fail");
    assert!(message.contains("UnknownIssuer"), "a self-signed certificate nobody trusts: {message}");
    assert!(!found.iter().any(|(check, ..)| check == "federation api"), "nothing to ask: {found:#?}");
    assert_eq!(output.status.code(), Some(1));
    let (level, message) = finding(&found, "well-known");
    assert_eq!(level, "pass", "a name with a port needs no delegation");
    assert!(message.contains("names its port"), "{message}");
    let found = findings(&doctor(&server, &proxy, true));
    assert_eq!(finding(&found, "federation tls").0, "pass", "trusted with --ca-cert: {found:#?}");

    // Trusted, but about to expire: renewal is not working.
    let mut expiring = localhost_certificate();
    expiring.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    let (server, proxy) = deployment("localhost:{proxy}", "", expiring).await;
    let output = doctor(&server, &proxy, true);
    let (level, message) = finding(&findings(&output), "federation tls");
    assert_eq!(level, "warn");
    assert!(message.contains("(4 days)") || message.contains("(5 days)"), "{message}");
    assert!(output.status.success(), "a warning is not a failure");

    let mut expired = localhost_certificate();
    expired.not_before = rcgen::date_time_ymd(2019, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let (server, proxy) = deployment("localhost:{proxy}", "", expired).await;
    let output = doctor(&server, &proxy, true);
    let found = findings(&output);
    let (level, message) = finding(&found, "federation tls");
    assert_eq!(level, "fail");
    assert!(message.contains("expired"), "{message}");
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_keys_behind_the_proxy_fail_the_key_check() {
    // Two servers named localhost; the proxy forwards to the other one, as a proxy left
    // pointing at an old machine would.
    let (other, proxy) = deployment("localhost", DELEGATED, localhost_certificate()).await;
    let config = std::fs::read_to_string(other.config_path()).unwrap();
    let this = Server::start_with_config(&config).await;
    cli_ok(&this.cli(&["keys", "show"], None));

    let output = doctor(&this, &proxy, true);
    let found = findings(&output);
    let (level, message) = finding(&found, "federation keys");
    assert_eq!(level, "fail");
    assert!(message.contains("another server answers for localhost"), "{message}");
    assert_eq!(finding(&found, "federation api").0, "pass");
    assert_eq!(output.status.code(), Some(1));
}
