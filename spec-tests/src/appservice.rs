//! Application services for the spec-tests: a registration file (the YAML format Synapse and
//! the spec's bridges use) with fresh tokens and a free loopback port, and the bridge-like
//! bot of `spec-tests/appservice/bridge_bot.py`, which runs on mautrix-python (installed
//! from PyPI by `scripts/install-appservice-bot`) and listens on that port.
//!
//! The Python interpreter is `$APPSERVICE_PYTHON`, else `$APPSERVICE_VENV/bin/python`, else
//! `$HOME/.cache/appservice-venv/bin/python`.
//!
//! [`FakeAppservice`] stands in for a service where a test needs to see exactly what the
//! homeserver sends and to choose what it answers.

use std::{
    future::Future,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

use crate::{Client, Server, TEST_CONFIG, federation::free_loopback_port};

/// How long the bot may take to start and check the homeserver.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The line the bot prints once it is up.
const READY_LINE: &str = "bridge bot ready";

/// The virtualenv's Python interpreter.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("APPSERVICE_PYTHON") {
        return python.into();
    }
    let venv = match std::env::var_os("APPSERVICE_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/appservice-venv"),
    };
    venv.join("bin/python")
}

/// The bot's script, in this crate's source tree.
pub fn bridge_bot_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("appservice/bridge_bot.py")
}

/// What a homeserver is told about an application service.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    /// `http://127.0.0.1:PORT`, where the bot listens.
    pub url: String,
    pub port: u16,
    /// The token the application service sends to the homeserver.
    pub as_token: String,
    /// The token the homeserver sends to the application service.
    pub hs_token: String,
    pub sender_localpart: String,
    /// Regexes of the exclusive user namespace.
    pub exclusive_users: Vec<String>,
    /// Regexes of the exclusive alias namespace.
    pub exclusive_aliases: Vec<String>,
    /// Regexes of the (shared) room namespace.
    pub rooms: Vec<String>,
    /// Third-party protocols the service bridges.
    pub protocols: Vec<String>,
    /// `rate_limited`; `None` leaves the key out (the spec's default, limited).
    pub rate_limited: Option<bool>,
    /// Whether the file has `url` (a service without one only acts, it never receives).
    pub with_url: bool,
}

impl Registration {
    /// A registration on a free loopback port with fresh random tokens.
    pub fn new(id: &str, sender_localpart: &str, exclusive_users: &[&str]) -> Registration {
        let port = free_loopback_port();
        Registration {
            id: id.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            port,
            as_token: random_token(1),
            hs_token: random_token(2),
            sender_localpart: sender_localpart.to_owned(),
            exclusive_users: exclusive_users.iter().map(|s| s.to_string()).collect(),
            exclusive_aliases: Vec::new(),
            rooms: Vec::new(),
            protocols: Vec::new(),
            rate_limited: Some(false),
            with_url: true,
        }
    }

    /// The registration file. Regexes are single-quoted, so backslashes stay as they are.
    pub fn yaml(&self) -> String {
        let list = |regexes: &[String], exclusive: bool| -> String {
            if regexes.is_empty() {
                return " []\n".to_owned();
            }
            let items: String = regexes
                .iter()
                .map(|regex| {
                    format!("    - exclusive: {exclusive}\n      regex: '{}'\n", regex.replace('\'', "''"))
                })
                .collect();
            format!("\n{items}")
        };
        let url = if self.with_url { format!("\"{}\"", self.url) } else { "null".to_owned() };
        let rate_limited = self.rate_limited.map(|r| format!("rate_limited: {r}\n")).unwrap_or_default();
        let protocols = if self.protocols.is_empty() {
            String::new()
        } else {
            format!(
                "protocols: [{}]\n",
                self.protocols.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
            )
        };
        format!(
            "id: \"{id}\"\n\
             url: {url}\n\
             as_token: \"{as_token}\"\n\
             hs_token: \"{hs_token}\"\n\
             sender_localpart: \"{sender}\"\n\
             {rate_limited}\
             {protocols}\
             receive_ephemeral: false\n\
             namespaces:\n  users:{users}  aliases:{aliases}  rooms:{rooms}",
            id = self.id,
            as_token = self.as_token,
            hs_token = self.hs_token,
            sender = self.sender_localpart,
            users = list(&self.exclusive_users, true),
            aliases = list(&self.exclusive_aliases, true),
            rooms = list(&self.rooms, false),
        )
    }
}

/// The bridge-like bot with its registration file, both in a temporary directory. Write the
/// registration first (the homeserver's config names it), start the homeserver, then the
/// bot; dropping it kills the bot.
pub struct BridgeBot {
    pub registration: Registration,
    pub server_name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl BridgeBot {
    /// Writes the registration of the echo bridge for `server_name`: the bot `@echobot` and
    /// the exclusive ghost namespace `@echo_.*`.
    pub fn new(server_name: &str) -> BridgeBot {
        let server = regex_escape(server_name);
        let registration = Registration::new(
            "echo-bridge",
            "echobot",
            &[&format!("@echo_.*:{server}"), &format!("@echobot:{server}")],
        );
        let dir = tempfile::Builder::new().prefix("appservice-spec-").tempdir().expect("temp dir");
        let bot = BridgeBot { registration, server_name: server_name.to_owned(), dir, child: None };
        std::fs::write(bot.registration_path(), bot.registration.yaml()).expect("write registration");
        bot
    }

    pub fn registration_path(&self) -> PathBuf {
        self.dir.path().join("registration.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("bridge_bot.log")
    }

    /// The top-level config line that loads this registration (put it before any table).
    pub fn config_line(&self) -> String {
        format!("app_service_config_files = [{:?}]\n", self.registration_path().display().to_string())
    }

    /// `@echobot:SERVER`.
    pub fn bot_user_id(&self) -> String {
        format!("@{}:{}", self.registration.sender_localpart, self.server_name)
    }

    /// The ghost that echoes the local user `localpart`.
    pub fn ghost_of(&self, localpart: &str) -> String {
        format!("@echo_{localpart}:{}", self.server_name)
    }

    /// Starts the bot against the client API at `homeserver` and waits until it has checked
    /// the homeserver (versions, registration, whoami, ping) and says it is ready.
    pub async fn start(&mut self, homeserver: &str) {
        assert!(self.child.is_none(), "the bot is running");
        let python = python();
        assert!(
            python.exists(),
            "mautrix is not installed at {} (run scripts/install-appservice-bot, or set APPSERVICE_PYTHON)",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(bridge_bot_script())
            .args(["--homeserver", homeserver, "--server-name", &self.server_name])
            .arg("--registration")
            .arg(self.registration_path())
            .args(["--port", &self.registration.port.to_string()])
            .current_dir(self.dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the bridge bot");
        let (ready_tx, ready_rx) = mpsc::channel();
        copy_log(child.stdout.take().expect("piped stdout"), self.log_path(), Some(ready_tx));
        copy_log(child.stderr.take().expect("piped stderr"), self.log_path(), None);
        self.child = Some(child);
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(START_TIMEOUT)).await.unwrap();
        if let Err(why) = ready {
            let what = match why {
                mpsc::RecvTimeoutError::Timeout => "did not get ready in time",
                mpsc::RecvTimeoutError::Disconnected => "exited before it was ready",
            };
            panic!("the bridge bot {what}; its log:\n{}", self.log_tail());
        }
    }

    /// The last lines of the bot's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

impl Drop for BridgeBot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- bridge bot log ({}) ---\n{}", self.log_path().display(), self.log_tail());
        }
    }
}

/// Appends the lines of `from` to the log file on a thread; with `ready`, reports the ready
/// line there. The sender drops at end of output, so a bot that dies is noticed at once.
fn copy_log(from: impl std::io::Read + Send + 'static, log_path: PathBuf, ready: Option<mpsc::Sender<()>>) {
    std::thread::spawn(move || {
        let mut ready = ready;
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("bot log");
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.contains(READY_LINE)
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
}

/// `text` as a regex that matches it literally.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// 32 hex digits, unpredictable enough for a throwaway token, without another dependency.
fn random_token(salt: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = |n: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(n);
        hasher.finish()
    };
    format!("{:016x}{:016x}", word(salt), word(salt + 100))
}

/// One request an application service received from the homeserver.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` without one).
    pub body: Value,
    /// The status the service answered with.
    pub status: u16,
}

/// How a fake service answers a request: status and JSON body.
pub type Handler = Arc<dyn Fn(Received) -> Pin<Box<dyn Future<Output = (u16, Value)> + Send>> + Send + Sync>;

#[derive(Default)]
struct FakeShared {
    received: Vec<Received>,
    /// Status for requests no route answers; 200 unless told.
    status: Option<u16>,
    /// Answers by path prefix, first match wins.
    routes: Vec<(String, u16, Value)>,
    handler: Option<Handler>,
}

/// An application service for tests: an HTTP/1.1 server on loopback that records every
/// request the homeserver makes and answers as told (by default 200 `{}`). It can be down
/// (nothing listens on its port, so connections are refused) and come up on the same port.
pub struct FakeAppservice {
    port: u16,
    shared: Arc<Mutex<FakeShared>>,
    arrived: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl FakeAppservice {
    /// A service that is down: its port is free, [`FakeAppservice::up`] listens there.
    pub fn down_on(port: u16) -> FakeAppservice {
        FakeAppservice { port, shared: Arc::default(), arrived: Arc::default(), task: None }
    }

    /// A service listening on `port` (a registration's port).
    pub async fn up_on(port: u16) -> FakeAppservice {
        let mut service = Self::down_on(port);
        service.up().await;
        service
    }

    /// Starts listening on the service's port.
    pub async fn up(&mut self) {
        assert!(self.task.is_none(), "already up");
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("appservice port {} busy ({e}); retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot listen on port {}: {e}", self.port),
            }
        };
        let (shared, arrived) = (self.shared.clone(), self.arrived.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(serve_fake(stream, shared.clone(), arrived.clone()));
            }
        }));
    }

    /// Stops listening: new connections are refused.
    pub fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The status of answers no route or handler gives (200 by default).
    pub fn answer_status(&self, status: u16) {
        self.shared.lock().unwrap().status = Some(status);
    }

    /// Answers requests whose path starts with `prefix` with `status` and `body`.
    pub fn route(&self, prefix: &str, status: u16, body: Value) {
        self.shared.lock().unwrap().routes.push((prefix.to_owned(), status, body));
    }

    /// Answers every request with `handler` (which may call the homeserver first).
    pub fn handle<F, Fut>(&self, handler: F)
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (u16, Value)> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |received| Box::pin(handler(received)));
        self.shared.lock().unwrap().handler = Some(handler);
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The transactions received (`PUT /_matrix/app/v1/transactions/…`), oldest first.
    pub fn transactions(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/app/v1/transactions/"))
            .collect()
    }

    /// Every event of every transaction accepted (answered 200), in the order received.
    pub fn events(&self) -> Vec<Value> {
        self.transactions()
            .iter()
            .filter(|t| t.status == 200)
            .flat_map(|t| t.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until `done` holds for what was received; panics after `timeout` with it.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                panic!("not received within {timeout:?}; received: {:#?}", self.received());
            }
        }
    }
}

impl Drop for FakeAppservice {
    fn drop(&mut self) {
        self.down();
    }
}

/// Reads one request, records it, answers and closes.
async fn serve_fake(mut stream: TcpStream, shared: Arc<Mutex<FakeShared>>, arrived: Arc<Notify>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            break (end + 4, length);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
    });
    let body = serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or(Value::Null);
    let mut received = Received { method, path, authorization, body, status: 0 };
    let (handler, routed, status) = {
        let shared = shared.lock().unwrap();
        let routed = shared
            .routes
            .iter()
            .find(|(prefix, _, _)| received.path.starts_with(prefix.as_str()))
            .map(|(_, status, body)| (*status, body.clone()));
        (shared.handler.clone(), routed, shared.status.unwrap_or(200))
    };
    let (status, reply) = match (routed, handler) {
        (Some(answer), _) => answer,
        (None, Some(handler)) => handler(received.clone()).await,
        (None, None) => (status, json!({})),
    };
    // Recorded once answered, so a waiter sees what the service has done by then.
    received.status = status;
    shared.lock().unwrap().received.push(received);
    arrived.notify_waiters();
    let reply = reply.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// Fixtures of the API tests (`appservice_api`, `appservice_cli`): services registered by
// file on a server named `localhost`.

pub const SERVER_NAME: &str = "localhost";

/// A service whose users are `@{prefix}_.*` (and its own `@{prefix}bot`), exclusive.
pub fn registration(id: &str, prefix: &str) -> Registration {
    let server = regex_escape(SERVER_NAME);
    let mut registration =
        Registration::new(id, &format!("{prefix}bot"), &[&format!("@{prefix}_.*:{server}")]);
    registration.rate_limited = None;
    registration
}

/// Registration files in a temporary directory, and the config line that loads them.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Default for Files {
    fn default() -> Files {
        Files { dir: tempfile::Builder::new().prefix("appservice-api-").tempdir().expect("temp dir") }
    }
}

impl Files {
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write registration");
        path
    }

    /// `app_service_config_files = [...]` for these files (a top-level key).
    pub fn config_line(paths: &[&Path]) -> String {
        let list: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
        format!("app_service_config_files = [{}]\n", list.join(", "))
    }
}

/// Myelin with these services registered by file, and `extra` config after TEST_CONFIG.
pub async fn server_with(registrations: &[&Registration], extra: &str) -> (Server, Files) {
    let files = Files::default();
    let paths: Vec<PathBuf> =
        registrations.iter().map(|r| files.write(&format!("{}.yaml", r.id), &r.yaml())).collect();
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let config =
        format!("server_name = \"{SERVER_NAME}\"\n{}{TEST_CONFIG}{extra}", Files::config_line(&paths));
    (Server::start_with_config(&config).await, files)
}

/// A client acting with the service's `as_token`.
pub fn service_client(server: &Server, registration: &Registration) -> Client {
    server.client().with_token(&registration.as_token)
}

pub fn user_id(localpart: &str) -> String {
    format!("@{localpart}:{SERVER_NAME}")
}
