//! The only code that touches sled.
//!
//! Domains call the typed methods in the submodules; none of them sees a tree, a key
//! layout or a byte. Every write method returns only once the write is durable (see
//! [`durability`]), so a handler can answer as soon as its domain call returns.
//!
//! Key layouts: strings as UTF-8, `0xff` between parts of a composite key (it never occurs
//! in UTF-8), integers big-endian so that range scans follow numeric order.

mod account_data;
mod accounts;
mod appservices;
mod backup;
mod directory;
mod durability;
mod e2ee;
mod event_staging;
mod event_writes;
mod federation;
mod filters;
mod media;
mod memberships;
mod misc;
mod notified_sets;
mod positions;
mod purge;
mod push;
mod pushers;
mod room_records;
mod rooms;
mod schema;
mod search;
mod state;
mod threads;
mod timeline;
mod txn_ids;

use std::{os::unix::fs::DirBuilderExt, path::Path};

use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use account_data::{AccountDataEntry, AccountDataRecord};
pub use accounts::{
    CreateUserError, DeviceRecord, LoginTokenRecord, NewDevice, RegistrationTokenRecord, TokenOwner,
    UserRecord,
};
pub use appservices::AppserviceItem;
pub use backup::{BackedUpSession, BackupDeletion, BackupVersionRecord};
pub use directory::AliasRecord;
pub use durability::Announced;
use durability::GroupCommit;
pub use e2ee::{ClaimedKey, FallbackKey, SignatureTarget, ToDeviceMessage};
pub use federation::{CachedServerKeys, Outgoing, RemoteMembership};
pub use media::MediaRecord;
pub use memberships::UserRoom;
pub use misc::{OpenIdToken, Report};
use notified_sets::NotifiedSets;
pub use positions::PositionGuard;
use positions::Positions;
pub use purge::BlockedRoom;
pub use push::{
    EventNotifications, MAIN_THREAD, NotificationRecord, ReadMarks, ReceiptRecord, ThreadedCounts,
    UnreadCounts,
};
pub use pushers::{PusherKey, PusherRecord, PusherState};
use room_records::RoomRecords;
pub use rooms::{NewEvent, NewRelation, Placement, Relation, RoomRecord, StateKey, StateMap, StoredEvent};
use ruma::{OwnedServerName, ServerName};
pub use search::{
    FIELDS as SEARCH_FIELDS, SearchHit, SearchRoom, SearchScan, TermStats, terms as search_terms,
};

const SERVER_NAME_KEY: &[u8] = b"server_name";

/// The separator inside composite keys.
const SEP: u8 = 0xff;

/// An open database. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    db: sled::Db,
    commit: GroupCommit,
    positions: Positions,
    room_records: RoomRecords,
    newest_receipts: push::NewestReceipts,
    /// See [`Store::latest_key_change`].
    latest_key_change: std::sync::atomic::AtomicU64,
    users: sled::Tree,
    devices: sled::Tree,
    access_tokens: sled::Tree,
    registration_tokens: sled::Tree,
    login_tokens: sled::Tree,
    profiles: sled::Tree,
    meta: sled::Tree,
    rooms: sled::Tree,
    event_records: sled::Tree,
    event_keys: sled::Tree,
    event_writes: sled::Tree,
    state_keys: sled::Tree,
    state_keys_rev: sled::Tree,
    room_state: sled::Tree,
    snapshots: sled::Tree,
    memberships: sled::Tree,
    user_rooms: sled::Tree,
    txn_ids: sled::Tree,
    aliases: sled::Tree,
    room_aliases: sled::Tree,
    public_rooms: sled::Tree,
    relations: sled::Tree,
    thread_activity: sled::Tree,
    thread_latest: sled::Tree,
    filters: sled::Tree,
    account_data: sled::Tree,
    event_notifications: sled::Tree,
    notified_sets: NotifiedSets,
    read_positions: sled::Tree,
    receipts: sled::Tree,
    pushers: sled::Tree,
    pusher_state: sled::Tree,
    pushers_by_key: sled::Tree,
    device_keys: sled::Tree,
    one_time_keys: sled::Tree,
    one_time_key_order: sled::Tree,
    fallback_keys: sled::Tree,
    cross_signing_keys: sled::Tree,
    key_changes: sled::Tree,
    to_device: sled::Tree,
    to_device_txns: sled::Tree,
    backup_versions: sled::Tree,
    backup_keys: sled::Tree,
    media: sled::Tree,
    reports: sled::Tree,
    openid_tokens: sled::Tree,
    outbound_queue: sled::Tree,
    server_keys: sled::Tree,
    inbound_txns: sled::Tree,
    remote_invites: sled::Tree,
    blocked_rooms: sled::Tree,
    appservice_registrations: sled::Tree,
    appservice_queue: sled::Tree,
    /// Behind a lock so that a rebuild can drop the tree and start a new one (see `search`).
    search_postings: std::sync::RwLock<sled::Tree>,
}

/// Why the store could not be used.
#[derive(Debug)]
pub enum StorageError {
    /// Another process (normally a running server) holds the database lock.
    Locked,
    /// The database was written by a newer Myelin with a schema this one does not know.
    TooNew {
        found: u32,
        supported: u32,
    },
    /// The database belongs to a server with another name.
    ServerNameMismatch {
        stored: String,
        configured: String,
    },
    /// A stored value does not decode: a bug or a damaged database.
    Corrupt(String),
    Sled(sled::Error),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked => f.write_str("the database is locked by another process"),
            Self::TooNew { found, supported } => write!(
                f,
                "the database has schema version {found}, newer than the {supported} this \
                 Myelin supports; run a newer Myelin or restore a backup"
            ),
            Self::ServerNameMismatch { stored, configured } => write!(
                f,
                "this database belongs to server {stored:?} but the configuration says \
                 {configured:?}; user and room ids embed the server name, so it cannot change"
            ),
            Self::Corrupt(what) => write!(f, "corrupt database record: {what}"),
            Self::Sled(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled reports a held lock as an I/O error on its lock file.
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => Self::Locked,
            sled::Error::Io(ref io) if io.to_string().contains("lock") => Self::Locked,
            other => Self::Sled(other),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl Store {
    /// Opens (or creates) the database in `dir`, checking and migrating its schema.
    pub fn open(dir: &Path, cache_capacity_mb: u64) -> Result<Self> {
        // Only the server's user may read the database, keys and admin socket.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StorageError::Sled(sled::Error::Io(e)))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_capacity_mb * 1024 * 1024)
            // Durability comes from our own group commit; sled's timer flush is a backstop.
            .flush_every_ms(Some(1000))
            .open()?;
        schema::check_and_migrate(&db)?;
        let store = Self {
            commit: GroupCommit::new(db.clone()),
            // Ids from sled's generator only grow, across restarts too.
            positions: Positions::new(db.generate_id()?),
            room_records: RoomRecords::default(),
            newest_receipts: Default::default(),
            latest_key_change: Self::scan_latest_key_change(&db.open_tree("key_changes")?)?.into(),
            users: db.open_tree("users")?,
            devices: db.open_tree("devices")?,
            access_tokens: db.open_tree("access_tokens")?,
            registration_tokens: db.open_tree("registration_tokens")?,
            login_tokens: db.open_tree("login_tokens")?,
            profiles: db.open_tree("profiles")?,
            meta: db.open_tree(schema::META_TREE)?,
            rooms: db.open_tree("rooms")?,
            event_records: db.open_tree("event_records")?,
            event_keys: db.open_tree("event_keys")?,
            event_writes: db.open_tree("event_writes")?,
            state_keys: db.open_tree("state_keys")?,
            state_keys_rev: db.open_tree("state_keys_rev")?,
            room_state: db.open_tree("room_state")?,
            snapshots: db.open_tree("snapshots")?,
            memberships: db.open_tree("memberships")?,
            user_rooms: db.open_tree("user_rooms")?,
            txn_ids: db.open_tree("txn_ids")?,
            aliases: db.open_tree("aliases")?,
            room_aliases: db.open_tree("room_aliases")?,
            public_rooms: db.open_tree("public_rooms")?,
            relations: db.open_tree("relations")?,
            thread_activity: db.open_tree("thread_activity")?,
            thread_latest: db.open_tree("thread_latest")?,
            filters: db.open_tree("filters")?,
            account_data: db.open_tree("account_data")?,
            event_notifications: db.open_tree("event_notifications")?,
            notified_sets: NotifiedSets::new(db.open_tree("notified_sets")?),
            read_positions: db.open_tree("read_positions")?,
            receipts: db.open_tree("receipts")?,
            pushers: db.open_tree("pushers")?,
            pusher_state: db.open_tree("pusher_state")?,
            pushers_by_key: db.open_tree("pushers_by_key")?,
            device_keys: db.open_tree("device_keys")?,
            one_time_keys: db.open_tree("one_time_keys")?,
            one_time_key_order: db.open_tree("one_time_key_order")?,
            fallback_keys: db.open_tree("fallback_keys")?,
            cross_signing_keys: db.open_tree("cross_signing_keys")?,
            key_changes: db.open_tree("key_changes")?,
            to_device: db.open_tree("to_device")?,
            to_device_txns: db.open_tree("to_device_txns")?,
            backup_versions: db.open_tree("backup_versions")?,
            backup_keys: db.open_tree("backup_keys")?,
            media: db.open_tree("media")?,
            reports: db.open_tree("reports")?,
            openid_tokens: db.open_tree("openid_tokens")?,
            outbound_queue: db.open_tree("outbound_queue")?,
            server_keys: db.open_tree("server_keys")?,
            inbound_txns: db.open_tree("inbound_txns")?,
            remote_invites: db.open_tree("remote_invites")?,
            blocked_rooms: db.open_tree("blocked_rooms")?,
            appservice_registrations: db.open_tree("appservice_registrations")?,
            appservice_queue: db.open_tree("appservice_queue")?,
            search_postings: std::sync::RwLock::new(db.open_tree(search::SEARCH_TREE)?),
            db,
        };
        store.recover_event_writes()?;
        Ok(store)
    }

    /// A new stream position, held until the write that uses it is durable.
    pub fn begin_position(&self) -> Result<PositionGuard> {
        Ok(self.positions.begin(|| self.db.generate_id())?)
    }

    /// Follows [`Store::visible_position`] as it moves forwards.
    pub fn watch_visible_position(&self) -> tokio::sync::watch::Receiver<u64> {
        self.positions.watch()
    }

    /// The stream position up to which every write is visible to readers.
    pub fn visible_position(&self) -> u64 {
        self.positions.visible()
    }

    /// Waits until every write made before this call is on disk.
    pub async fn durable(&self) -> Result<()> {
        self.commit.wait().await
    }

    /// Announces a write about to be made, to be awaited with [`Announced::durable`] instead
    /// of [`Store::durable`]: a flush starting meanwhile waits (briefly) so that this write
    /// can share it. For writers that often come many at once, such as sends to one room.
    pub fn announce_write(&self) -> Announced {
        self.commit.announce()
    }

    /// The server name this database was created for, if a server has run on it.
    pub fn server_name(&self) -> Result<Option<OwnedServerName>> {
        self.meta
            .get(SERVER_NAME_KEY)?
            .map(|bytes| {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| OwnedServerName::try_from(s).ok())
                    .ok_or_else(|| StorageError::Corrupt("server name".to_owned()))
            })
            .transpose()
    }

    /// Records `name` on first start and refuses a different one afterwards.
    pub fn claim_server_name(&self, name: &ServerName) -> Result<()> {
        match self.server_name()? {
            Some(stored) if stored != name => Err(StorageError::ServerNameMismatch {
                stored: stored.to_string(),
                configured: name.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.meta.insert(SERVER_NAME_KEY, name.as_bytes())?;
                self.flush()
            }
        }
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes synchronously; used at shutdown.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("storage records always serialise")
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("{what}: {e}")))
}

/// Aborts a sled transaction with our error type.
fn abort<T, E>(e: E) -> std::result::Result<T, ConflictableTransactionError<E>> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Unwraps a transaction's outcome into our error type.
fn flatten<T, E: From<StorageError>>(
    r: std::result::Result<T, TransactionError<E>>,
) -> std::result::Result<T, E> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => E::from(StorageError::from(e)),
    })
}

/// Decodes an entry whose key ends in a big-endian position: (position, value).
fn positioned<T: serde::de::DeserializeOwned>(
    what: &str,
    item: sled::Result<(sled::IVec, sled::IVec)>,
) -> Result<(u64, T)> {
    let (key, value) = item?;
    let position = key
        .len()
        .checked_sub(8)
        .and_then(|start| key[start..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt(format!("{what} key")))?;
    Ok((position, decode(what, &value)?))
}

/// A big-endian u64 stored as a key part or a value; `what` names it in the error.
fn be_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| StorageError::Corrupt(what.to_owned()))
}

/// An event id stored as its UTF-8 bytes.
fn event_id_from(bytes: &[u8]) -> Result<ruma::OwnedEventId> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| ruma::EventId::parse(s).ok())
        .ok_or_else(|| StorageError::Corrupt("event id".to_owned()))
}

fn composite_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

/// The prefix that selects every composite key starting with `first`.
fn prefix_of(first: &[u8]) -> Vec<u8> {
    let mut key = first.to_vec();
    key.push(SEP);
    key
}

/// An empty directory for a test's database, unique to the test process and `name`.
#[cfg(test)]
pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("myelin-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_do_not_collide_across_prefixes() {
        let a = composite_key(&[b"@a:x", b"DEV"]);
        let b = composite_key(&[b"@a:xD", b"EV"]);
        assert_ne!(a, b);
        assert!(a.starts_with(&prefix_of(b"@a:x")));
        assert!(!b.starts_with(&prefix_of(b"@a:x")));
    }
}
