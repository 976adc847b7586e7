//! The `myelin` command: `serve`, `config check`, `doctor`, and the admin commands (`user`,
//! `token`, `room`, `report`, `pushers`, `appservice`, `db`), which talk to a running server over its admin socket
//! or open the store when it is stopped.

mod admin_client;
mod doctor;
mod output;

use std::{
    io::{BufRead, IsTerminal},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::{Args, Parser, Subcommand};
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId};

use crate::{
    admin::{self, Command},
    config::{Config, LogFormat, Overrides, parse_duration},
    rooms::PurgePoint,
    server,
    services::Services,
    signing_key::SigningKey,
    storage::{StorageError, Store},
};

#[derive(Parser)]
#[command(name = "myelin", version, about = "A Matrix homeserver in one binary")]
struct Cli {
    /// Configuration file (TOML). Without one, built-in defaults apply.
    #[arg(long, global = true, env = "MYELIN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory, overriding the config's `data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text (admin commands).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the homeserver.
    Serve {
        /// Address for the client API, e.g. 127.0.0.1:8008.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The server name (only on first start: it cannot change afterwards).
        #[arg(long)]
        server_name: Option<OwnedServerName>,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The server's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// What users reported to the administrators.
    #[command(subcommand, visible_alias = "reports")]
    Report(ReportCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Users' pushers: where their phones' notifications go.
    #[command(subcommand, visible_alias = "pusher")]
    Pushers(PushersCommand),
    /// Application services (bridges and bots) added while the server runs; those in
    /// `app_service_config_files` are listed too.
    #[command(subcommand, visible_alias = "appservices")]
    Appservice(AppserviceCommand),
    /// Check the server as other servers and clients see it: config, discovery, TLS, the
    /// federation API and keys, registration, admins, disk and clock. Exits 1 on a failure.
    Doctor(doctor::Options),
}

#[derive(Subcommand)]
enum PushersCommand {
    /// List a user's pushers and how far delivery to each has got.
    List { user_id: OwnedUserId },
    /// Send each of a user's HTTP pushers a badge update and show what the gateways answered.
    Test { user_id: OwnedUserId },
}

#[derive(Subcommand)]
enum AppserviceCommand {
    /// Add (or replace) an application service from its registration file (YAML).
    Register { file: PathBuf },
    /// List every application service: id, URL, user, and where it was registered.
    List,
    /// Remove an application service added with `register`, and what was queued for it.
    Remove { id: String },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Rebuild the search index from the stored events (progress goes to standard error,
    /// or to the server's log when it runs).
    Reindex,
    /// Back up the whole server (database, signing key, uploaded files) into a new folder.
    /// Works while the server runs: writes wait only while what changed during the copy is
    /// read again; everything else goes on.
    Backup { dir: PathBuf },
    /// Replace the database, signing key and files with a backup's. The server must be
    /// stopped; the database and key it replaces are kept beside them, renamed.
    Restore { dir: PathBuf },
    /// Check the database's references (events, indexes, state, short ids, counters) and
    /// that every uploaded file is on disk. Changes nothing unless `--repair` is given.
    Verify {
        /// Fix what can be rebuilt from other records (the server must be stopped).
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// List every report of an event, a room or a user, oldest first.
    List,
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Print one stored event as its signed PDU (federation format), to debug a room.
    Event {
        /// The event id, such as `$abc...`.
        event_id: OwnedEventId,
    },
    /// Make every local member leave a room, then remove it from the database.
    Delete {
        room_id: OwnedRoomId,
        /// Also block the room, so that nobody here can join it again.
        #[arg(long)]
        block: bool,
        /// Keep the room's history in the database (only move the members out).
        #[arg(long)]
        no_purge: bool,
        /// Purge even if some local members could not be moved out.
        #[arg(long)]
        force_purge: bool,
    },
    /// Block a room (known here or not): this server's users cannot join, knock on or be
    /// invited to it.
    Block { room_id: OwnedRoomId },
    /// Lift a room's block.
    Unblock { room_id: OwnedRoomId },
    /// Remove a room's history before a point: messages and other events that are not
    /// state (the room's state, and its newest event, always stay). Events this server's
    /// users sent stay too unless `--delete-local` is given.
    PurgeHistory {
        room_id: OwnedRoomId,
        /// Remove the events before this one (it stays).
        #[arg(long, group = "point")]
        before_event: Option<OwnedEventId>,
        /// Remove the events older than this, such as 90d or 12h.
        #[arg(long, group = "point", value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Also remove what this server's users sent (they may be its only copies).
        #[arg(long)]
        delete_local: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the signing key's id and public half (creating the key if there is none yet).
    Show,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and report the first problem.
    Check {
        /// The file to check (defaults to --config).
        path: Option<PathBuf>,
    },
}

#[derive(Args)]
struct PasswordSource {
    /// Read the password from the first line of standard input instead of generating one.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Without --password-stdin a random password is generated and printed.
    Create {
        /// Localpart (`alice`) or full user id (`@alice:example.org`).
        name: String,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List all users.
    List,
    /// Set a new password and log out all of the user's devices.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Shadow-ban a user: their messages, state events and invites are answered as if they
    /// worked, and reach nobody.
    ShadowBan {
        name: String,
        /// Lift the shadow ban instead.
        #[arg(long)]
        undo: bool,
    },
    /// Deactivate a user: log out everywhere, leave every room and refuse future logins.
    Deactivate {
        name: String,
        /// Also remove the display name and avatar.
        #[arg(long)]
        erase: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a registration token.
    Create {
        /// How many registrations it allows (default: unlimited).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        uses: Option<u32>,
        /// Lifetime such as 30m, 12h or 7d (default: never expires).
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
        /// Use this token instead of a random one.
        #[arg(long)]
        token: Option<String>,
    },
    /// List registration tokens.
    List,
    /// Delete a registration token.
    Revoke { token: String },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), String> {
    let overrides = Overrides { data_dir: cli.data_dir.clone(), ..Overrides::default() };
    match cli.command {
        Commands::Serve { listen, server_name } => {
            let overrides = Overrides { listen, server_name, ..overrides };
            let config = Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            init_logging(&config);
            warn_ignored_env(&config);
            tracing::info!(config = %cli.config.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()), "configuration loaded");
            runtime(true).block_on(server::run(config))
        }
        Commands::Config(ConfigCommand::Check { path }) => {
            let path = path.or(cli.config).ok_or("give a file to check, or --config")?;
            let config = Config::load(Some(&path), &overrides).map_err(|e| e.to_string())?;
            for name in &config.ignored_env {
                eprintln!("warning: {name} names no config key: ignored");
            }
            crate::appservices::check_files(&config.app_service_config_files, &config.server_name)?;
            println!("{}: ok", path.display());
            Ok(())
        }
        Commands::User(command) => admin_command(&cli.config, &overrides, cli.json, user_command(command)?),
        Commands::Token(command) => admin_command(&cli.config, &overrides, cli.json, token_command(command)?),
        Commands::Room(command) => {
            let command = match command {
                RoomCommand::Event { event_id } => Command::RoomEvent { event_id },
                RoomCommand::Delete { room_id, block, no_purge, force_purge } => {
                    Command::RoomDelete { room_id, block, purge: !no_purge, force_purge }
                }
                RoomCommand::Block { room_id } => Command::RoomBlock { room_id, block: true },
                RoomCommand::Unblock { room_id } => Command::RoomBlock { room_id, block: false },
                RoomCommand::PurgeHistory { room_id, before_event, older_than, delete_local } => {
                    let point = match (before_event, older_than) {
                        (Some(event_id), _) => PurgePoint::Event(event_id),
                        (None, Some(age)) => PurgePoint::Timestamp(
                            crate::now_ms()
                                .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                        ),
                        (None, None) => return Err("give --before-event or --older-than".to_owned()),
                    };
                    Command::RoomPurgeHistory { room_id, point, delete_local_events: delete_local }
                }
            };
            admin_command(&cli.config, &overrides, cli.json, Prepared { command, generated_password: None })
        }
        Commands::Pushers(command) => {
            let command = match command {
                PushersCommand::List { user_id } => Command::PusherList { user_id },
                PushersCommand::Test { user_id } => Command::PusherTest { user_id },
            };
            admin_command(&cli.config, &overrides, cli.json, Prepared { command, generated_password: None })
        }
        Commands::Appservice(command) => {
            let command = match command {
                AppserviceCommand::Register { file } => Command::AppserviceRegister {
                    registration: std::fs::read_to_string(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
                },
                AppserviceCommand::List => Command::AppserviceList,
                AppserviceCommand::Remove { id } => Command::AppserviceRemove { id },
            };
            admin_command(&cli.config, &overrides, cli.json, Prepared { command, generated_password: None })
        }
        Commands::Db(DbCommand::Reindex) => {
            let prepared = Prepared { command: Command::DbReindex, generated_password: None };
            admin_command_logging(&cli.config, &overrides, cli.json, prepared, "warn,myelin::search=info")
        }
        Commands::Db(DbCommand::Backup { dir }) => {
            // The server resolves a relative path against its own working directory.
            let dir = std::path::absolute(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let prepared = Prepared { command: Command::DbBackup { dir }, generated_password: None };
            admin_command_logging(&cli.config, &overrides, cli.json, prepared, "warn,myelin::archive=info")
        }
        Commands::Db(DbCommand::Verify { repair }) => {
            let prepared = Prepared { command: Command::DbVerify { repair }, generated_password: None };
            admin_command_logging(&cli.config, &overrides, cli.json, prepared, "warn,myelin::archive=info")
        }
        Commands::Db(DbCommand::Restore { dir }) => {
            let config = Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            init_cli_logging_with("warn,myelin::archive=info");
            let restored = crate::archive::restore(
                &dir,
                &config.data_dir,
                config.server_name.as_str(),
                config.storage.cache_capacity_mb,
            )?;
            output::print_restored(&restored, cli.json);
            Ok(())
        }
        Commands::Report(ReportCommand::List) => {
            let prepared = Prepared { command: Command::ReportList, generated_password: None };
            admin_command(&cli.config, &overrides, cli.json, prepared)
        }
        Commands::Doctor(options) => {
            init_cli_logging();
            let findings = runtime(false).block_on(doctor::run(cli.config.as_deref(), &overrides, &options));
            doctor::print(&findings, cli.json);
            match findings.iter().filter(|f| f.level == doctor::Level::Fail).count() {
                0 => Ok(()),
                failed => Err(format!("{failed} check(s) failed")),
            }
        }
        Commands::Keys(KeysCommand::Show) => {
            let config = Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
            let key = SigningKey::load_or_generate(&config.data_dir)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"key_id": key.key_id(), "public_key": key.public_key_base64()})
                );
            } else {
                println!("{} {}", key.key_id(), key.public_key_base64());
            }
            Ok(())
        }
    }
}

/// The admin command plus, when we generated it, the password to show the operator.
struct Prepared {
    command: Command,
    generated_password: Option<String>,
}

fn user_command(command: UserCommand) -> Result<Prepared, String> {
    Ok(match command {
        UserCommand::Create { name, admin, password } => {
            let (password, generated_password) = password.obtain()?;
            Prepared {
                command: Command::UserCreate { name, password: Some(password), admin },
                generated_password,
            }
        }
        UserCommand::List => Prepared { command: Command::UserList, generated_password: None },
        UserCommand::Passwd { name, password } => {
            let (password, generated_password) = password.obtain()?;
            Prepared { command: Command::UserPasswd { name, password }, generated_password }
        }
        UserCommand::ShadowBan { name, undo } => {
            Prepared { command: Command::UserShadowBan { name, banned: !undo }, generated_password: None }
        }
        UserCommand::Deactivate { name, erase } => {
            Prepared { command: Command::UserDeactivate { name, erase }, generated_password: None }
        }
    })
}

fn token_command(command: TokenCommand) -> Result<Prepared, String> {
    let command = match command {
        TokenCommand::Create { uses, expires, token } => Command::TokenCreate {
            token,
            uses_allowed: uses,
            expiry_time: expires.map(|d| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                (now + d).as_millis() as u64
            }),
        },
        TokenCommand::List => Command::TokenList,
        TokenCommand::Revoke { token } => Command::TokenRevoke { token },
    };
    Ok(Prepared { command, generated_password: None })
}

impl PasswordSource {
    /// The password to use, and whether it was generated (so it must be shown).
    fn obtain(&self) -> Result<(String, Option<String>), String> {
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                return Err("the password read from standard input is empty".to_owned());
            }
            Ok((password, None))
        } else {
            use rand::{Rng, distributions::Alphanumeric};
            let password: String =
                rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect();
            Ok((password.clone(), Some(password)))
        }
    }
}

/// Runs an admin command on the running server if its socket answers, else on the store.
fn admin_command(
    config_path: &Option<PathBuf>,
    overrides: &Overrides,
    json: bool,
    prepared: Prepared,
) -> Result<(), String> {
    admin_command_logging(config_path, overrides, json, prepared, "warn")
}

/// [`admin_command`], logging to standard error what `log_filter` lets through.
fn admin_command_logging(
    config_path: &Option<PathBuf>,
    overrides: &Overrides,
    json: bool,
    prepared: Prepared,
    log_filter: &str,
) -> Result<(), String> {
    let config = Config::load(config_path.as_deref(), overrides).map_err(|e| e.to_string())?;
    init_cli_logging_with(log_filter);
    warn_ignored_env(&config);
    let reply = runtime(false).block_on(execute_anywhere(config, prepared.command))?;
    output::print(&reply, prepared.generated_password.as_deref(), json);
    match &reply {
        // Scripts (and backup jobs) learn from the exit status that something is wrong.
        admin::Reply::Verified(v) if v.store.unrepaired() > 0 || !v.missing_media.is_empty() => {
            Err("verification found problems (listed above)".to_owned())
        }
        _ => Ok(()),
    }
}

/// Runs an admin command through the running server's socket, or on the store when no
/// server answers there.
async fn execute_anywhere(config: Config, command: Command) -> Result<admin::Reply, String> {
    let socket = server::admin_socket_path(&config);
    match admin_client::send(&socket, &command).await {
        Ok(reply) => reply,
        Err(admin_client::Unreachable(why)) => run_locally(config, command, &socket, &why).await,
    }
}

async fn run_locally(
    config: Config,
    command: Command,
    socket: &std::path::Path,
    why: &str,
) -> Result<admin::Reply, String> {
    let store = Store::open(&config.data_dir, config.storage.cache_capacity_mb).map_err(|e| match e {
        StorageError::Locked => format!(
            "server not reachable over {} ({why}) and the store is locked by another process",
            socket.display()
        ),
        other => other.to_string(),
    })?;
    // The name the server ran with wins over the config, so ids stay consistent; a
    // database no server has run on yet is pinned to the configured name now.
    let mut config = config;
    match store.server_name().map_err(|e| e.to_string())? {
        Some(name) => config.server_name = name,
        None => store.claim_server_name(&config.server_name).map_err(|e| e.to_string())?,
    }
    let store = Arc::new(store);
    let services = Services::new(config, store.clone())?;
    let reply = admin::execute(&services, command).await.map_err(|e| e.to_string());
    store.flush().map_err(|e| e.to_string())?;
    reply
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("the tokio runtime starts")
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MYELIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `MYELIN_*` variables that name no config key (a Kubernetes Service named `myelin` puts
/// several in every pod) are ignored, and said so once logging runs.
fn warn_ignored_env(config: &Config) {
    for name in &config.ignored_env {
        tracing::warn!(variable = %name, "environment variable names no config key: ignored");
    }
}

/// Admin commands log only warnings, to stderr, so their output stays clean.
fn init_cli_logging() {
    init_cli_logging_with("warn")
}

fn init_cli_logging_with(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
