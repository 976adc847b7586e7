//! Administration as one set of operations with several doors (docs/architecture.md,
//! decision 8): the CLI runs a [`Command`] against the admin socket of a running server, or
//! directly on the store when none runs; both end in [`execute`]. The Synapse-compatible
//! admin API (`admin_api::synapse`) calls the same domain functions, and the operations
//! here (`users`, ...) that take more than one call.

pub mod appservices;
pub mod rooms;
pub mod users;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use crate::{
    accounts::{self, Logout, NewUser, RegistrationTokenInfo},
    rooms::{DeleteRoom, FiledReport, HistoryPurge, PurgePoint},
    services::Services,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    UserCreate {
        name: String,
        password: Option<String>,
        admin: bool,
    },
    UserList,
    UserPasswd {
        name: String,
        password: String,
    },
    UserDeactivate {
        name: String,
        /// Also forget the profile, as a user asking to be erased would.
        #[serde(default)]
        erase: bool,
    },
    /// Shadow-bans a user, or lifts the ban.
    UserShadowBan {
        name: String,
        banned: bool,
    },
    TokenCreate {
        token: Option<String>,
        uses_allowed: Option<u32>,
        expiry_time: Option<u64>,
    },
    TokenList,
    TokenRevoke {
        token: String,
    },
    // One stored event exactly as signed (or as redacted), for operators debugging a room.
    RoomEvent {
        event_id: OwnedEventId,
    },
    /// Moves every local member out of a room, optionally blocking it, then (with `purge`)
    /// removes it from the database.
    RoomDelete {
        room_id: OwnedRoomId,
        block: bool,
        purge: bool,
        force_purge: bool,
    },
    /// Removes a room's history before a point (see `rooms::history_purge`).
    RoomPurgeHistory {
        room_id: OwnedRoomId,
        point: PurgePoint,
        delete_local_events: bool,
    },
    /// Blocks a room (known here or not) or lifts the block.
    RoomBlock {
        room_id: OwnedRoomId,
        block: bool,
    },
    /// Every report users made of events, rooms and users, oldest first.
    ReportList,
    /// A user's pushers, with how far delivery to each has got.
    PusherList {
        user_id: OwnedUserId,
    },
    /// Sends each of a user's HTTP pushers a badge update and reports what the gateways said.
    PusherTest {
        user_id: OwnedUserId,
    },
    /// Adds (or replaces) an application service from its registration's text.
    AppserviceRegister {
        registration: String,
    },
    AppserviceList,
    /// Removes an application service added with `AppserviceRegister`.
    AppserviceRemove {
        id: String,
    },
    /// Rebuilds the search index from the stored events.
    DbReindex,
    /// Writes a backup of the whole server into `dir` (absent or empty).
    DbBackup {
        dir: std::path::PathBuf,
    },
    /// Checks the database's references and media files; `repair` only on a stopped server.
    DbVerify {
        repair: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    UserCreated {
        user_id: OwnedUserId,
    },
    Users {
        users: Vec<UserSummary>,
    },
    PasswordChanged {
        user_id: OwnedUserId,
    },
    UserDeactivated {
        user_id: OwnedUserId,
    },
    ShadowBan {
        user_id: OwnedUserId,
        banned: bool,
    },
    RoomDeleted {
        room_id: OwnedRoomId,
        kicked_users: Vec<OwnedUserId>,
        failed_to_kick_users: Vec<OwnedUserId>,
        purged: bool,
    },
    RoomBlock {
        room_id: OwnedRoomId,
        block: bool,
    },
    Token {
        token: RegistrationTokenInfo,
    },
    Tokens {
        tokens: Vec<RegistrationTokenInfo>,
    },
    TokenRevoked {
        token: String,
    },
    RoomEvent(StoredEventInfo),
    Reports {
        reports: Vec<FiledReport>,
    },
    Pushers {
        pushers: Vec<PusherSummary>,
    },
    PusherTests {
        results: Vec<PusherTestResult>,
    },
    Appservices {
        appservices: Vec<appservices::AppserviceSummary>,
    },
    AppserviceRegistered {
        id: String,
    },
    AppserviceRemoved {
        id: String,
    },
    Reindexed {
        /// Timeline events read.
        events: u64,
        /// Of those, events with text to search (the rest have none, or were redacted).
        indexed: u64,
    },
    HistoryPurged(HistoryPurge),
    BackedUp(crate::archive::BackupSummary),
    Verified(crate::archive::Verified),
}

/// One pusher, for operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PusherSummary {
    pub app_id: String,
    pub pushkey: String,
    /// The pusher as the client set it (kind, data with the gateway URL, names).
    pub pusher: JsonValue,
    pub device_id: Option<String>,
    /// Stream position up to which notifications were delivered.
    pub delivered_upto: u64,
    /// Since when (ms) deliveries fail, if they do.
    pub failing_since: Option<u64>,
}

/// What one gateway answered to a test notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PusherTestResult {
    pub app_id: String,
    pub pushkey: String,
    /// `None`: delivered; otherwise why not.
    pub error: Option<String>,
    /// Whether the gateway rejected the push key (the pusher would be removed).
    pub rejected: bool,
}

/// One stored event, for operators debugging a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEventInfo {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub room_version: RoomVersionId,
    /// The PDU as stored: the federation format, with hashes and signatures.
    pub pdu: JsonValue,
    /// The redaction that redacted it, if any (then `pdu` is the redacted form).
    pub redacted_because: Option<OwnedEventId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub user_id: OwnedUserId,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: u64,
}

/// One page of a listing: `from` and `limit` as an admin API client gives them.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many there are in all pages.
    pub total: usize,
    /// Where the next page starts, if there is one.
    pub next: Option<usize>,
}

impl<T> Page<T> {
    pub fn of(all: Vec<T>, from: usize, limit: usize) -> Self {
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(from).take(limit).collect();
        let end = from.saturating_add(items.len());
        Self { next: (end < total && !items.is_empty()).then_some(end), total, items }
    }
}

/// Why a command failed, from whichever domain refused it.
#[derive(Debug)]
pub enum Error {
    Accounts(accounts::Error),
    Rooms(crate::rooms::Error),
    Appservices(crate::appservices::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accounts(e) => e.fmt(f),
            Self::Rooms(e) => e.fmt(f),
            Self::Appservices(e) => e.fmt(f),
        }
    }
}

impl From<accounts::Error> for Error {
    fn from(e: accounts::Error) -> Self {
        Self::Accounts(e)
    }
}

impl From<crate::appservices::Error> for Error {
    fn from(e: crate::appservices::Error) -> Self {
        Self::Appservices(e)
    }
}

impl From<crate::rooms::Error> for Error {
    fn from(e: crate::rooms::Error) -> Self {
        Self::Rooms(e)
    }
}

/// A user's pushers with how far delivery to each has got.
pub fn pushers(services: &Services, user_id: &ruma::UserId) -> Result<Vec<PusherSummary>, Error> {
    Ok(services
        .push
        .pusher_records(user_id)?
        .into_iter()
        .map(|record| PusherSummary {
            app_id: record.key.app_id,
            pushkey: record.key.pushkey,
            pusher: record.pusher,
            device_id: record.state.device_id.map(|d| d.to_string()),
            delivered_upto: record.state.delivered_upto,
            failing_since: record.state.failing_since,
        })
        .collect())
}

pub async fn execute(services: &Services, command: Command) -> Result<Reply, Error> {
    let accounts = &services.accounts;
    Ok(match command {
        Command::DbReindex => {
            let (events, indexed) = services.search.reindex().await?;
            Reply::Reindexed { events, indexed }
        }
        Command::RoomPurgeHistory { room_id, point, delete_local_events } => {
            Reply::HistoryPurged(services.rooms.purge_history(&room_id, &point, delete_local_events).await?)
        }
        Command::DbBackup { dir } => Reply::BackedUp(services.archive.backup(&dir).await?),
        Command::DbVerify { repair } => Reply::Verified(services.archive.verify(repair).await?),
        Command::UserCreate { name, password, admin } => {
            let new = NewUser { name, password, admin, displayname: None };
            Reply::UserCreated { user_id: accounts.create_user(new).await? }
        }
        Command::UserList => Reply::Users {
            users: accounts
                .user_infos()?
                .into_iter()
                .map(|u| UserSummary {
                    user_id: u.user_id,
                    admin: u.admin,
                    deactivated: u.deactivated,
                    created_ts: u.created_ts,
                })
                .collect(),
        },
        Command::UserPasswd { name, password } => {
            let user_id = accounts.existing_local_user(&name)?;
            // A reset by an administrator assumes the old password is compromised.
            accounts.set_password(&user_id, password, Logout::All).await?;
            Reply::PasswordChanged { user_id }
        }
        Command::UserDeactivate { name, erase } => {
            let user_id = accounts.existing_local_user(&name)?;
            services.rooms.deactivate_account(&user_id, erase).await?;
            Reply::UserDeactivated { user_id }
        }
        Command::UserShadowBan { name, banned } => {
            let user_id = accounts.existing_local_user(&name)?;
            accounts.set_shadow_banned(&user_id, banned).await?;
            Reply::ShadowBan { user_id, banned }
        }
        Command::TokenCreate { token, uses_allowed, expiry_time } => Reply::Token {
            token: accounts.create_registration_token(token, None, uses_allowed, expiry_time).await?,
        },
        Command::TokenList => Reply::Tokens { tokens: accounts.registration_tokens()? },
        Command::TokenRevoke { token } => {
            accounts.revoke_registration_token(&token).await?;
            Reply::TokenRevoked { token }
        }
        Command::RoomEvent { event_id } => {
            let stored = services.rooms.stored_pdu(&event_id)?.ok_or_else(|| {
                crate::rooms::Error::NotFound(format!("no event {event_id} is stored here"))
            })?;
            Reply::RoomEvent(StoredEventInfo {
                event_id,
                room_id: stored.room_id,
                room_version: stored.room_version,
                pdu: stored.pdu,
                redacted_because: stored.redacted_because,
            })
        }
        Command::RoomDelete { room_id, block, purge, force_purge } => {
            let request = DeleteRoom {
                requester: None,
                new_room_user_id: None,
                room_name: None,
                message: None,
                block,
                purge,
                force_purge,
            };
            let shutdown = rooms::delete_room_now(services, &room_id, request).await?;
            Reply::RoomDeleted {
                room_id,
                kicked_users: shutdown.kicked_users,
                failed_to_kick_users: shutdown.failed_to_kick_users,
                purged: purge,
            }
        }
        Command::RoomBlock { room_id, block } => {
            services.rooms.set_blocked(&room_id, block, None).await?;
            Reply::RoomBlock { room_id, block }
        }
        Command::ReportList => Reply::Reports { reports: services.rooms.reports()? },
        Command::PusherList { user_id } => Reply::Pushers { pushers: pushers(services, &user_id)? },
        Command::PusherTest { user_id } => Reply::PusherTests {
            results: services
                .push
                .test_pushers(&user_id)
                .await?
                .into_iter()
                .map(|(key, outcome)| PusherTestResult {
                    rejected: outcome.as_ref().is_ok_and(|rejected| rejected.contains(&key.pushkey)),
                    error: outcome.err().map(|e| e.to_string()),
                    app_id: key.app_id,
                    pushkey: key.pushkey,
                })
                .collect(),
        },
        Command::AppserviceRegister { registration } => {
            appservices::register(services, &registration).await?
        }
        Command::AppserviceList => appservices::list(services),
        Command::AppserviceRemove { id } => appservices::remove(services, id).await?,
    })
}
