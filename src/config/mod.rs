//! Configuration: TOML file, `MYELIN_*` environment overrides, command-line overrides,
//! defaults for everything, and validation with messages that name the offending key.
//!
//! Every key is documented in `config/myelin.example.toml`; keep the two in step.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ruma::OwnedServerName;
use serde::Deserialize;

mod env;
mod outbound;
mod rate_limits;
mod retention;
mod url_preview;

use env::apply_env;
pub use outbound::{OutboundConfig, PushConfig};
pub use rate_limits::{RateLimit, RateLimitsConfig};
pub use retention::{RetentionConfig, parse_duration};
pub use url_preview::UrlPreviewConfig;

/// The whole configuration. Unknown keys are rejected (`deny_unknown_fields`) so that a
/// typo never silently falls back to a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `MYELIN_*` variables that name no config key, ignored (for a warning once logging
    /// runs).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// The server name: the part after the colon in `@alice:example.org`. Never change it
    /// once users exist.
    pub server_name: OwnedServerName,
    /// Address the client API listens on.
    pub listen: SocketAddr,
    /// Directory holding the database, signing keys and the admin socket.
    pub data_dir: PathBuf,
    /// Public URL clients use to reach this server, served in `/.well-known/matrix/client`.
    /// When unset it is derived from `listen`.
    pub public_baseurl: Option<String>,
    pub registration: RegistrationConfig,
    pub login: LoginConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub storage: StorageConfig,
    pub media: MediaConfig,
    pub presence: PresenceConfig,
    pub sliding_sync: SlidingSyncConfig,
    pub voip: VoipConfig,
    pub metrics: MetricsConfig,
    pub federation: FederationConfig,
    pub outbound: OutboundConfig,
    pub push: PushConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
    /// Registration files of application services (bridges, bots), Synapse's key. A
    /// relative path is taken from the config file's directory.
    pub app_service_config_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub mode: RegistrationMode,
    /// Open registration on a non-loopback address lets anyone on the internet create
    /// accounts; the server refuses to start that way unless this is set.
    pub allow_open_on_public_address: bool,
    /// The secret of Synapse-style shared-secret registration
    /// (`/_synapse/admin/v1/register`, used by `register_new_matrix_user`): whoever knows
    /// it can create accounts, admins included, whatever `mode` says. Unset: that door is
    /// closed.
    pub shared_secret: Option<String>,
    /// The same secret read from a file (its first line), so it need not sit in the config.
    pub shared_secret_path: Option<PathBuf>,
}

impl RegistrationConfig {
    /// The shared-registration secret from `shared_secret` or the file `shared_secret_path`
    /// names, if either is set.
    pub fn shared_secret(&self) -> Result<Option<String>, ConfigError> {
        match (&self.shared_secret, &self.shared_secret_path) {
            (Some(_), Some(_)) => Err(ConfigError(
                "registration.shared_secret, registration.shared_secret_path: give one or neither".to_owned(),
            )),
            (Some(secret), None) if secret.is_empty() => {
                Err(ConfigError("registration.shared_secret: must not be empty".to_owned()))
            }
            (Some(secret), None) => Ok(Some(secret.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "registration.shared_secret_path: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                match text.lines().next().map(str::trim_end).filter(|line| !line.is_empty()) {
                    Some(secret) => Ok(Some(secret.to_owned())),
                    None => Err(ConfigError(format!(
                        "registration.shared_secret_path: {} holds no secret on its first line",
                        path.display()
                    ))),
                }
            }
            (None, None) => Ok(None),
        }
    }
}

/// How users log in, beyond passwords.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Logged-in users may ask for a single-use, short-lived login token
    /// (`POST /login/get_token`) with which another client logs in as them (`m.login.token`),
    /// as when a phone signs in by scanning a QR code shown by a desktop client.
    pub token_login: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Nobody can register through the API; accounts are made with `myelin user create`.
    Disabled,
    /// Registration needs a token made with `myelin token create`.
    Token,
    /// Anyone who can reach the server can register.
    Open,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted on the client API, in bytes.
    pub max_request_bytes: usize,
    /// Seconds an HTTP/1 connection may take to send a request's headers, counted from
    /// when it is ready for a request (so also the longest idle keep-alive).
    pub header_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// sled's page cache, in MiB of pages as sled stores them on disk; about twice that in
    /// memory. sled's memory use follows this, and grows slowly with the database.
    pub cache_capacity_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Largest file a user may upload, in bytes.
    pub max_upload_bytes: usize,
    /// Bytes all of a user's uploads may take together (unset: no limit).
    pub user_quota_bytes: Option<u64>,
    /// Serve files stored from now on through the deprecated unauthenticated endpoints
    /// (`/_matrix/media/v3/download` and `thumbnail`) too. Off, those endpoints serve only
    /// files stored before authenticated media (spec v1.11), as the spec's "freeze" asks;
    /// files stored while this is on stay reachable there after it is turned off.
    pub allow_legacy_unauthenticated: bool,
    /// `[media.url_preview]`: link previews (`/media/preview_url`).
    pub url_preview: UrlPreviewConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Track and share online/offline status. Off saves a little work on busy servers.
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Sliding sync (what Element X uses): how much per-connection state the server keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlidingSyncConfig {
    /// Connections kept at most; past it, the least recently used one is forgotten.
    pub max_connections: usize,
    /// A connection unused for this long is forgotten.
    pub idle_expiry_secs: u64,
}

impl Default for SlidingSyncConfig {
    fn default() -> Self {
        Self { max_connections: 4096, idle_expiry_secs: 7 * 24 * 3600 }
    }
}

/// The TURN server clients use for calls; without `turn_uris`, calls use direct connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoipConfig {
    pub turn_uris: Vec<String>,
    pub turn_username: String,
    pub turn_password: String,
    pub turn_ttl_seconds: u64,
}

impl Default for VoipConfig {
    fn default() -> Self {
        Self {
            turn_uris: vec![],
            turn_username: String::new(),
            turn_password: String::new(),
            turn_ttl_seconds: 86_400,
        }
    }
}

/// Prometheus metrics on a listener of their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: false, listen: SocketAddr::from(([127, 0, 0, 1], 9108)) }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            user_quota_bytes: None,
            allow_legacy_unauthenticated: false,
            url_preview: UrlPreviewConfig::default(),
        }
    }
}

/// Talking to other homeservers (the server-server API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    pub enabled: bool,
    /// A listener of its own for the federation API (usually port 8448). Without it the
    /// federation API is served on the client listener, behind the reverse proxy.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key: the federation listener then speaks TLS itself.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Accept any certificate from other servers. Only for testing on one machine.
    pub trust_self_signed: bool,
    /// Served as `/.well-known/matrix/server` (`m.server`), e.g. `matrix.example.org:443`,
    /// when other servers should reach this one somewhere other than `server_name:8448`.
    pub well_known_server: Option<String>,
    /// When not empty, the only servers this one talks to.
    pub allow: Vec<OwnedServerName>,
    /// Servers this one never talks to, in either direction.
    pub deny: Vec<OwnedServerName>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            tls_cert: None,
            tls_key: None,
            trust_self_signed: false,
            well_known_server: None,
            allow: vec![],
            deny: vec![],
        }
    }
}

impl FederationConfig {
    /// Whether this server may exchange anything with `server`.
    pub fn allows(&self, server: &ruma::ServerName) -> bool {
        self.enabled
            && !self.deny.iter().any(|s| s == server)
            && (self.allow.is_empty() || self.allow.iter().any(|s| s == server))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, such as `info` or `myelin=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".try_into().expect("valid server name"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: PathBuf::from("./myelin-data"),
            public_baseurl: None,
            registration: RegistrationConfig::default(),
            login: LoginConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            storage: StorageConfig::default(),
            media: MediaConfig::default(),
            presence: PresenceConfig::default(),
            sliding_sync: SlidingSyncConfig::default(),
            voip: VoipConfig::default(),
            metrics: MetricsConfig::default(),
            federation: FederationConfig::default(),
            outbound: OutboundConfig::default(),
            push: PushConfig::default(),
            retention: RetentionConfig::default(),
            log: LogConfig::default(),
            app_service_config_files: Vec::new(),
            ignored_env: Vec::new(),
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        // The built-in defaults (no config file) are for trying Myelin out on this machine:
        // open, and `validate` refuses that on anything but loopback. A config file means a
        // deployment, perhaps behind a reverse proxy on loopback, so there the default is
        // `disabled` (see `Config::load`).
        Self {
            mode: RegistrationMode::Open,
            allow_open_on_public_address: false,
            shared_secret: None,
            shared_secret_path: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // Longer than nginx's default upstream keep-alive (60 s): the proxy closes an idle
        // connection first, instead of sending a request into one this side is closing.
        Self { max_request_bytes: 1024 * 1024, header_timeout_secs: 75 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        // Recent events are cached above sled, parsed, so sled's cache mostly serves index
        // pages. sled counts a page by its size on disk, and a page in memory takes about
        // twice that, so 6 MiB is about 12 MB of memory. In the benchmark, 8 instead of 16
        // lowered peak memory by about 14 MB, and 6 instead of 8 by about 7 MB, with send
        // throughput and history paging unchanged within the noise.
        Self { cache_capacity_mb: 6 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

/// Command-line flags that take precedence over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub server_name: Option<OwnedServerName>,
}

/// A configuration problem, worded for the person who wrote the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the file (if any), applies environment and command-line overrides, and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(path, overrides, std::env::vars())
    }

    fn load_with_env(
        path: Option<&Path>,
        overrides: &Overrides,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
                text.parse::<toml::Table>().map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        if path.is_some() {
            // Registration stays closed in a deployment unless its config opens it.
            let registration =
                table.entry("registration").or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(registration) = registration.as_table_mut() {
                registration.entry("mode").or_insert_with(|| toml::Value::String("disabled".to_owned()));
            }
        }
        let ignored_env = apply_env(&mut table, env)?;

        let origin = path.map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        let mut config: Config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{origin}: {}", e.message().trim_end())))?;
        config.ignored_env = ignored_env;
        if let Some(dir) = path.and_then(Path::parent) {
            for file in &mut config.app_service_config_files {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }

        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(name) = &overrides.server_name {
            config.server_name = name.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.registration.mode == RegistrationMode::Open
            && !self.listen.ip().is_loopback()
            && !self.registration.allow_open_on_public_address
        {
            return Err(ConfigError(format!(
                "registration.mode: \"open\" while listening on {} would let anyone create \
                 accounts; use \"token\" or \"disabled\", or set \
                 registration.allow_open_on_public_address = true if you mean it",
                self.listen
            )));
        }
        self.registration.shared_secret()?;
        if self.limits.max_request_bytes < 1024 {
            return Err(ConfigError("limits.max_request_bytes: must be at least 1024 bytes".to_owned()));
        }
        if self.limits.header_timeout_secs == 0 {
            return Err(ConfigError("limits.header_timeout_secs: must be at least 1".to_owned()));
        }
        if self.sliding_sync.max_connections == 0 {
            return Err(ConfigError("sliding_sync.max_connections: must be at least 1".to_owned()));
        }
        self.rate_limits.validate()?;
        self.retention.validate()?;
        if self.federation.tls_cert.is_some() != self.federation.tls_key.is_some() {
            return Err(ConfigError(
                "federation.tls_cert, federation.tls_key: give both or neither".to_owned(),
            ));
        }
        if let Some(delegated) = &self.federation.well_known_server
            && ruma::ServerName::parse(delegated).is_err()
        {
            return Err(ConfigError(format!(
                "federation.well_known_server: {delegated:?} is not a host name with an optional port"
            )));
        }
        if self.federation.tls_cert.is_some() && self.federation.listen.is_none() {
            return Err(ConfigError(
                "federation.tls_cert: TLS is for the federation listener; set federation.listen too"
                    .to_owned(),
            ));
        }
        if let Some(url) = &self.public_baseurl
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError(format!("public_baseurl: {url:?} must start with https:// or http://")));
        }
        if self.media.max_upload_bytes == 0 {
            return Err(ConfigError("media.max_upload_bytes: must be at least 1".to_owned()));
        }
        self.media.url_preview.validate()?;
        if self.storage.cache_capacity_mb == 0 {
            return Err(ConfigError("storage.cache_capacity_mb: must be at least 1".to_owned()));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError(format!("log.level: {e}")))?;
        Ok(())
    }

    /// The URL clients should use, for `/.well-known/matrix/client`.
    pub fn client_base_url(&self) -> String {
        match &self.public_baseurl {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("myelin-config-test-{}", rand::random::<u64>()));
        std::fs::write(&dir, toml_text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let result = Config::load_with_env(Some(&dir), &Overrides::default(), env);
        std::fs::remove_file(&dir).unwrap();
        result
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.server_name.as_str(), "localhost");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8008");
        assert_eq!(config.registration.mode, RegistrationMode::Disabled, "a config file closes registration");
        let builtin = Config::load_with_env(None, &Overrides::default(), std::iter::empty()).unwrap();
        assert_eq!(builtin.registration.mode, RegistrationMode::Open, "trying it out needs no config");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("sever_name = \"x\"\n", &[]).unwrap_err();
        assert!(err.0.contains("sever_name"), "{err}");
        let err = load("[registration]\nmod = \"open\"\n", &[]).unwrap_err();
        assert!(err.0.contains("mod"), "{err}");
    }

    #[test]
    fn limits_below_their_minimum_are_refused() {
        assert_eq!(load("", &[]).unwrap().limits.header_timeout_secs, 75);
        let err = load("[limits]\nheader_timeout_secs = 0\n", &[]).unwrap_err();
        assert!(err.0.contains("limits.header_timeout_secs"), "{err}");
        let err = load("[limits]\nmax_request_bytes = 10\n", &[]).unwrap_err();
        assert!(err.0.contains("limits.max_request_bytes"), "{err}");
    }

    #[test]
    fn open_registration_on_public_address_needs_consent() {
        let err = load("listen = \"0.0.0.0:8008\"\n[registration]\nmode = \"open\"\n", &[]).unwrap_err();
        assert!(err.0.contains("registration.mode"), "{err}");
        load("listen = \"0.0.0.0:8008\"\n[registration]\nmode = \"token\"\n", &[]).unwrap();
        load("listen = \"0.0.0.0:8008\"\n", &[]).unwrap();
        load(
            "listen = \"0.0.0.0:8008\"\n[registration]\nmode = \"open\"\nallow_open_on_public_address = true\n",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn the_shared_registration_secret_comes_from_the_config_or_a_file() {
        let secret = |text: &str| load(text, &[]).map(|c| c.registration.shared_secret().unwrap());
        assert_eq!(secret("").unwrap(), None);
        assert_eq!(
            secret("[registration]\nshared_secret = \"s3cret\"\n").unwrap().as_deref(),
            Some("s3cret")
        );
        let file = std::env::temp_dir().join(format!("myelin-secret-test-{}", rand::random::<u64>()));
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let path = format!("[registration]\nshared_secret_path = {:?}\n", file.display().to_string());
        assert_eq!(secret(&path).unwrap().as_deref(), Some("from-file"));
        let both = format!("{path}shared_secret = \"x\"\n");
        assert!(secret(&both).unwrap_err().0.contains("give one or neither"));
        std::fs::write(&file, "\n").unwrap();
        assert!(secret(&path).unwrap_err().0.contains("no secret"));
        std::fs::remove_file(&file).unwrap();
        assert!(secret(&path).unwrap_err().0.contains("cannot read"));
        assert!(secret("[registration]\nshared_secret = \"\"\n").unwrap_err().0.contains("empty"));
    }

    #[test]
    fn bad_values_are_explained() {
        let err = load("server_name = \"not a name!\"\n", &[]).unwrap_err();
        assert!(err.0.contains("server name") || err.0.contains("server_name"), "{err}");
        let err = load("[log]\nformat = \"xml\"\n", &[]).unwrap_err();
        assert!(err.0.contains("xml"), "{err}");
    }
}
