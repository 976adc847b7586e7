//! A real Synapse for interoperability tests: installed from PyPI (by `.ci/run`, or
//! `scripts/install-synapse`), run from its virtualenv with SQLite, a plain-HTTP client
//! listener and a TLS federation listener on loopback ports, and the server name
//! `127.0.0.1:PORT`. Its federation client is told to accept self-signed certificates and
//! to talk to loopback addresses, which it refuses by default; nothing else is relaxed.
//!
//! The Python interpreter is `$SYNAPSE_PYTHON`, else `$HOME/.cache/synapse-venv/bin/python`.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Client,
    federation::{free_loopback_port, self_signed_certificate},
};

const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Synapse {
    child: Child,
    dir: tempfile::TempDir,
    client_port: u16,
    federation_port: u16,
}

/// The virtualenv's Python interpreter.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SYNAPSE_PYTHON") {
        return python.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/synapse-venv/bin/python")
}

impl Synapse {
    pub async fn start() -> Synapse {
        let python = python();
        assert!(
            python.exists(),
            "Synapse is not installed at {} (run scripts/install-synapse, or set SYNAPSE_PYTHON)",
            python.display()
        );
        let dir = tempfile::Builder::new().prefix("synapse-spec-").tempdir().expect("temp dir");
        let client_port = free_loopback_port();
        let federation_port = free_loopback_port();
        let (cert, key) = self_signed_certificate();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("cert.pem"), cert).expect("write cert");
        std::fs::write(path("key.pem"), key).expect("write key");
        let secret = |n: u64| format!("{:016x}{:016x}", rand_u64(n), rand_u64(n + 1));
        let config = format!(
            r#"server_name: "127.0.0.1:{federation_port}"
pid_file: "{pid}"
listeners:
  - port: {client_port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
  - port: {federation_port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    resources: [{{names: [federation, keys], compress: false}}]
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
database:
  name: sqlite3
  args:
    database: "{db}"
media_store_path: "{media}"
signing_key_path: "{signing}"
report_stats: false
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "{s1}"
macaroon_secret_key: "{s2}"
form_secret: "{s3}"
federation_verify_certificates: false
ip_range_blacklist: []
ip_range_whitelist: ["127.0.0.0/8"]
trusted_key_servers: []
suppress_key_server_warning: true
use_presence: false
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login: {{address: {{per_second: 1000, burst_count: 1000}}, account: {{per_second: 1000, burst_count: 1000}}, failed_attempts: {{per_second: 1000, burst_count: 1000}}}}
rc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}
rc_invites: {{per_room: {{per_second: 1000, burst_count: 1000}}, per_user: {{per_second: 1000, burst_count: 1000}}}}
rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}}
"#,
            pid = path("homeserver.pid"),
            cert = path("cert.pem"),
            key = path("key.pem"),
            db = path("homeserver.db"),
            media = path("media"),
            signing = path("signing.key"),
            s1 = secret(1),
            s2 = secret(3),
            s3 = secret(5),
        );
        std::fs::write(path("homeserver.yaml"), config).expect("write homeserver.yaml");
        let generated = Command::new(&python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--config-path",
                &path("homeserver.yaml"),
                "--generate-keys",
            ])
            .output()
            .expect("run synapse --generate-keys");
        assert!(
            generated.status.success(),
            "synapse --generate-keys: {}",
            String::from_utf8_lossy(&generated.stderr)
        );

        let log_path = path("synapse.log");
        let mut child = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--config-path", &path("homeserver.yaml")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start synapse");
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).expect("synapse log");
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        let synapse = Synapse { child, dir, client_port, federation_port };
        synapse.wait_until_up().await;
        synapse
    }

    async fn wait_until_up(&self) {
        let client = self.client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if client
                .request_fallible("GET", "/_matrix/client/versions", &serde_json::json!({}))
                .await
                .is_some_and(|r| r.status == 200)
            {
                return;
            }
            assert!(Instant::now() < deadline, "Synapse did not start; log:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `127.0.0.1:PORT` of its federation listener.
    pub fn server_name(&self) -> String {
        format!("127.0.0.1:{}", self.federation_port)
    }

    /// A client of its client API, without an access token.
    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.client_port))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- synapse log {} ---\n{}", self.server_name(), self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Secrets for a throwaway config: unpredictable enough, without another dependency.
fn rand_u64(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}
