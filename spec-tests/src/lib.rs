//! Black-box test harness: starts real `myelin` processes on ephemeral loopback ports in
//! temporary data directories and talks HTTP to them. Nothing here knows Myelin's insides.
//!
//! The binary is `target/<profile>/myelin` next to the test executable (build it first:
//! `cargo build --bin myelin`), or the path in `SPEC_TESTS_MYELIN_BIN`.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

pub use serde_json::{Value, json};

pub mod admin_api;
pub mod appservice;
pub mod federation;
pub mod push_gateway;
pub mod rooms;
pub mod synapse;

/// Config used unless a test gives its own: everything default except the limits per
/// client IP, which would otherwise throttle a test suite that logs in hundreds of times
/// from one address. The per-user abuse limits keep their defaults, so every test that
/// uses this config shows that they leave ordinary clients alone; a test that floods on
/// purpose says so with `[rate_limits] enabled = false`.
pub const TEST_CONFIG: &str = r#"
[rate_limits.login]
per_second = 1000.0
burst = 1000
[rate_limits.register]
per_second = 1000.0
burst = 1000
[log]
level = "info"
"#;

/// [`TEST_CONFIG`] with every rate limit off, for the tests that flood on purpose: a
/// thousand messages in a row, writers sending as fast as they can, more to-device
/// messages than a sync carries.
pub const UNLIMITED_CONFIG: &str = r#"
[rate_limits]
enabled = false
[log]
level = "info"
"#;

/// Path of the `myelin` binary under test.
pub fn myelin_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SPEC_TESTS_MYELIN_BIN") {
        return PathBuf::from(path);
    }
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("myelin");
    assert!(bin.exists(), "{} missing: run `cargo build --bin myelin` first", bin.display());
    bin
}

/// A running (or stopped) Myelin with its own data directory.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The address the client API listens on (fixed after the first start, so a restarted
    /// server keeps its URL).
    pub addr: SocketAddr,
    extra_args: Vec<String>,
    /// The federation listener, for servers started with [`Server::start_federating`].
    federation: Option<federation::FederationListener>,
}

impl Server {
    /// Starts a server with [`TEST_CONFIG`].
    pub async fn start() -> Server {
        Self::start_with_config(TEST_CONFIG).await
    }

    /// Starts a server with the given TOML config (written to the data directory).
    pub async fn start_with_config(config: &str) -> Server {
        Self::start_with(config, &[]).await
    }

    /// Starts a server with a config and extra `serve` arguments such as `--server-name`.
    ///
    /// With a config file, Myelin's registration defaults to disabled. Tests register users
    /// freely, so a config without a `[registration]` table gets open registration added.
    pub async fn start_with(config: &str, extra_args: &[&str]) -> Server {
        let mut server = Self::unstarted(config, extra_args, None);
        server.spawn().await;
        server
    }

    /// A server with its data directory and config written, not yet running.
    fn unstarted(
        config: &str,
        extra_args: &[&str],
        federation: Option<federation::FederationListener>,
    ) -> Server {
        let dir = tempfile::Builder::new().prefix("myelin-spec-").tempdir().expect("temp dir");
        let server = Server {
            child: None,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            federation,
        };
        server.write_config(config);
        server
    }

    /// Writes the config file, adding open registration unless it has a `[registration]`.
    fn write_config(&self, config: &str) {
        let config = if config.contains("[registration]") {
            config.to_owned()
        } else {
            format!("{config}\n[registration]\nmode = \"open\"\n")
        };
        std::fs::write(self.config_path(), config).expect("write config");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("myelin.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Whether a line of the server's log satisfies `matches` within five seconds: the
    /// server writes its log on a thread of its own, so a line may land after the answer.
    pub async fn log_has_line(&self, matches: impl Fn(&str) -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.lines().any(&matches) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR` of the metrics listener, as the server logged it (a config with
    /// `[metrics] enabled = true` and `listen = "127.0.0.1:0"`).
    pub fn metrics_url(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).expect("server log");
        let rest = log.split("metrics on http://").nth(1).expect("the server logs its metrics address");
        let address = rest.split_whitespace().next().unwrap().trim_end_matches("/metrics");
        format!("http://{address}")
    }

    /// A client without an access token.
    pub fn client(&self) -> Client {
        Client::new(&self.base_url())
    }

    async fn spawn(&mut self) {
        if let Err(why) = self.try_spawn().await {
            panic!("{why}; log:\n{}", self.log_tail());
        }
    }

    /// Starts the process and waits until the client listener (and the federation
    /// listener, if any) accepts connections. On failure the process is left to `Drop`.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new(myelin_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        scrub_env(&mut command);
        let mut child = command.spawn().expect("start myelin");
        let stderr = child.stderr.take().expect("piped stderr");
        let log_path = self.log_path();
        // The federation listener may announce itself the same way; it is not the client API.
        let federation_addr = self.federation.as_ref().map(|f| f.addr.to_string());
        let (ready_tx, ready_rx) = mpsc::channel();
        // Copies the log to a file and reports the listening address once it appears.
        std::thread::spawn(move || {
            let mut log =
                std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    if Some(&addr) != federation_addr.as_ref()
                        && let Some(tx) = ready_tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        self.child = Some(child);
        let addr = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap();
        match addr {
            Ok(addr) => self.addr = addr.parse().expect("listening address"),
            Err(_) => return Err("myelin did not start".to_owned()),
        }
        if let Some(listener) = &self.federation {
            let addr = listener.addr;
            federation::wait_for_listener(addr, self.child.as_mut().expect("spawned")).await?;
        }
        Ok(())
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("send SIGTERM");
        tokio::task::spawn_blocking(move || child.wait().expect("wait")).await.unwrap()
    }

    /// Starts the server again on the same address and data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn().await;
    }

    /// Runs `myelin ARGS` with this server's config and data directory, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(myelin_bin());
        command
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        scrub_env(&mut command);
        let mut child = command.spawn().expect("start myelin cli");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().expect("cli output")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let name = self.federation.as_ref().map(|f| format!("{} ", f.server_name())).unwrap_or_default();
            eprintln!("--- myelin log {name}({}) ---\n{}", self.log_path().display(), self.log_tail());
        }
        self.kill9();
    }
}

/// `myelin` as a plain command (no server, no config), without the developer's `MYELIN_*`
/// variables: for commands such as `config check` on a file of the test's choosing.
pub fn myelin_command() -> Command {
    let mut command = Command::new(myelin_bin());
    scrub_env(&mut command);
    command
}

/// Keeps the developer's `MYELIN_*` variables (which override config keys) out of tests.
fn scrub_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("MYELIN_") {
            command.env_remove(name);
        }
    }
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn errcode(&self) -> &str {
        self.body["errcode"].as_str().unwrap_or("")
    }

    /// Asserts a status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts a Matrix error.
    #[track_caller]
    pub fn expect_error(&self, status: u16, errcode: &str) {
        assert_eq!((self.status, self.errcode()), (status, errcode), "body: {}", self.body);
        assert!(self.body["error"].is_string(), "errors carry a message: {}", self.body);
    }
}

/// A small Matrix client for raw HTTP: every call returns status and body, never panics on
/// an error status, so tests can check refusals.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub access_token: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            base: base.to_owned(),
            access_token: None,
            user_id: None,
            device_id: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client { access_token: Some(token.to_owned()), ..self.clone() }
    }

    /// Sends `method path` with an optional JSON body. `path` starts with `/`.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let builder = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        let builder = match body {
            Some(body) => builder.json(body),
            None => builder,
        };
        self.send(builder).await
    }

    /// Sends a raw body (for malformed-JSON tests).
    pub async fn request_raw(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        let builder = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(builder).await
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Resp {
        self.try_send(builder).await.expect("HTTP request")
    }

    /// Like [`Client::request`] with a JSON body, but `None` when the connection fails
    /// (for tests that kill the server mid-request).
    pub async fn request_fallible(&self, method: &str, path: &str, body: &Value) -> Option<Resp> {
        let builder = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).json(body);
        self.try_send(builder).await.ok()
    }

    async fn try_send(&self, builder: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        let builder = match &self.access_token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp { status, body, headers })
    }

    /// Sends `method path` with extra headers (such as a CORS preflight's `Origin`).
    pub async fn request_with_headers(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request_with(method, path, headers, None).await
    }

    /// Sends `method path` with extra headers (such as a federation `Authorization`) and
    /// an optional JSON body.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let mut builder = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        self.send(builder).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.request("PUT", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<&Value>) -> Resp {
        self.request("DELETE", path, body).await
    }

    /// Registers `username` (open registration, m.login.dummy) and returns a logged-in client.
    pub async fn register(&self, username: &str, password: &str) -> Client {
        let body = json!({
            "username": username,
            "password": password,
            "auth": {"type": "m.login.dummy"},
        });
        let reply = self.post("/_matrix/client/v3/register", &body).await.expect(200);
        self.logged_in(&reply)
    }

    /// Logs in with a password and returns a logged-in client.
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let reply = self.post("/_matrix/client/v3/login", &login_body(user, password)).await.expect(200);
        self.logged_in(&reply)
    }

    fn logged_in(&self, reply: &Value) -> Client {
        let mut client = self.with_token(reply["access_token"].as_str().expect("access_token"));
        client.user_id = reply["user_id"].as_str().map(str::to_owned);
        client.device_id = reply["device_id"].as_str().map(str::to_owned);
        client
    }

    pub fn user_id(&self) -> &str {
        self.user_id.as_deref().expect("logged in")
    }
}

/// The body of an `m.login.password` login with an `m.id.user` identifier.
pub fn login_body(user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    })
}

/// The `auth` object for a UIA `m.login.password` stage.
pub fn password_auth(user: &str, password: &str, session: Option<&str>) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    });
    if let Some(session) = session {
        auth["session"] = json!(session);
    }
    auth
}

/// The session id of a user-interactive auth challenge, after checking that it is one:
/// status 401 with `flows` offering `stage`.
#[track_caller]
pub fn uia_session(resp: &Resp, stage: &str) -> String {
    assert_eq!(resp.status, 401, "expected a UIA challenge; body: {}", resp.body);
    let flows = resp.body["flows"].as_array().unwrap_or_else(|| panic!("no flows: {}", resp.body));
    assert!(
        flows.iter().any(|f| f["stages"].as_array().is_some_and(|s| s.iter().any(|s| s == stage))),
        "{stage} is not offered: {}",
        resp.body
    );
    resp.body["session"].as_str().unwrap_or_else(|| panic!("no session: {}", resp.body)).to_owned()
}

/// Standard output of a CLI run, after checking that it succeeded.
#[track_caller]
pub fn cli_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "myelin exited with {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Sends `request` as raw bytes on a new TCP connection (for what an HTTP library will not
/// send, such as a chunked body of known bytes) and reads one response. The body is parsed
/// as JSON when the response has a `Content-Length`.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> Resp {
    raw_http_in_pieces(addr, &[request]).await
}

/// As [`raw_http`], writing the request in `pieces` 100 ms apart, as a slow client would.
pub async fn raw_http_in_pieces(addr: SocketAddr, pieces: &[&[u8]]) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The server may answer and close before it has read everything; what matters is
        // the answer.
        let _ = stream.write_all(piece).await;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(resp) = parse_response(&buf) {
            return resp;
        }
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no complete response within 30 s; got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    parse_response(&buf).unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&buf)))
}

/// Parses a complete HTTP/1.1 response with a `Content-Length` body; `None` while incomplete.
fn parse_response(buf: &[u8]) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().expect("status code");
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            value.trim().parse().expect("header value"),
        );
    }
    let length: usize = headers.get("content-length").map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let body = buf.get(end + 4..end + 4 + length)?;
    Some(Resp { status, body: serde_json::from_slice(body).unwrap_or(Value::Null), headers })
}

/// Percent-encodes a path segment (user ids contain `@` and `:`).
pub fn enc(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
