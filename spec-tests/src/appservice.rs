//! Application services for the spec-tests: a registration file (the YAML format Synapse and
//! the spec's bridges use) with fresh tokens and a free loopback port, and the bridge-like
//! bot of `spec-tests/appservice/bridge_bot.py`, which runs on mautrix-python (installed
//! from PyPI by `scripts/install-appservice-bot`) and listens on that port.
//!
//! The Python interpreter is `$APPSERVICE_PYTHON`, else `$APPSERVICE_VENV/bin/python`, else
//! `$HOME/.cache/appservice-venv/bin/python`.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::federation::free_loopback_port;

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
        }
    }

    /// The registration file. Regexes are single-quoted, so backslashes stay as they are.
    pub fn yaml(&self) -> String {
        let users: String = self
            .exclusive_users
            .iter()
            .map(|regex| format!("    - exclusive: true\n      regex: '{}'\n", regex.replace('\'', "''")))
            .collect();
        format!(
            "id: \"{id}\"\n\
             url: \"{url}\"\n\
             as_token: \"{as_token}\"\n\
             hs_token: \"{hs_token}\"\n\
             sender_localpart: \"{sender}\"\n\
             rate_limited: false\n\
             receive_ephemeral: false\n\
             namespaces:\n  users:\n{users}  aliases: []\n  rooms: []\n",
            id = self.id,
            url = self.url,
            as_token = self.as_token,
            hs_token = self.hs_token,
            sender = self.sender_localpart,
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
fn regex_escape(text: &str) -> String {
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
