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
mod history_purge;
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
mod snapshot;
mod state;
mod threads;
mod timeline;
mod tree;
mod txn_ids;
mod verify;

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
pub use history_purge::HistoryPurged;
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
pub use snapshot::SnapshotSummary;
use tree::{Tree, WriteGate};
pub use verify::{Finding, VerifyReport};

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
    /// Every write passes it; a snapshot closes it (see [`tree`]).
    gate: std::sync::Arc<WriteGate>,
    users: Tree,
    devices: Tree,
    access_tokens: Tree,
    registration_tokens: Tree,
    login_tokens: Tree,
    profiles: Tree,
    meta: Tree,
    rooms: Tree,
    event_records: Tree,
    event_keys: Tree,
    event_writes: Tree,
    state_keys: Tree,
    state_keys_rev: Tree,
    room_state: Tree,
    snapshots: Tree,
    memberships: Tree,
    user_rooms: Tree,
    txn_ids: Tree,
    aliases: Tree,
    room_aliases: Tree,
    public_rooms: Tree,
    relations: Tree,
    thread_activity: Tree,
    thread_latest: Tree,
    filters: Tree,
    account_data: Tree,
    event_notifications: Tree,
    notified_sets: NotifiedSets,
    read_positions: Tree,
    receipts: Tree,
    pushers: Tree,
    pusher_state: Tree,
    pushers_by_key: Tree,
    device_keys: Tree,
    one_time_keys: Tree,
    one_time_key_order: Tree,
    fallback_keys: Tree,
    cross_signing_keys: Tree,
    key_changes: Tree,
    to_device: Tree,
    to_device_txns: Tree,
    backup_versions: Tree,
    backup_keys: Tree,
    media: Tree,
    user_media: Tree,
    reports: Tree,
    openid_tokens: Tree,
    outbound_queue: Tree,
    server_keys: Tree,
    inbound_txns: Tree,
    remote_invites: Tree,
    blocked_rooms: Tree,
    appservice_registrations: Tree,
    appservice_queue: Tree,
    /// Behind a lock so that a rebuild can drop the tree and start a new one (see `search`).
    search_postings: std::sync::RwLock<Tree>,
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
    /// A snapshot to restore is damaged, cut short or not a snapshot.
    BadSnapshot(String),
    /// Reading or writing a file beside the database (a snapshot).
    Io(std::io::Error),
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
            Self::BadSnapshot(why) => write!(f, "cannot restore the snapshot: {why}"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
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

/// Opens (or creates) the sled database in `dir`, readable by this user only.
fn open_sled(dir: &Path, cache_capacity_mb: u64) -> Result<sled::Db> {
    // Only the server's user may read the database, keys and admin socket.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StorageError::Sled(sled::Error::Io(e)))?;
    Ok(sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(cache_capacity_mb * 1024 * 1024)
        // Durability comes from our own group commit; sled's timer flush is a backstop.
        .flush_every_ms(Some(1000))
        .open()?)
}

impl Store {
    /// Opens (or creates) the database in `dir`, checking and migrating its schema.
    pub fn open(dir: &Path, cache_capacity_mb: u64) -> Result<Self> {
        Self::from_db(open_sled(dir, cache_capacity_mb)?)
    }

    /// Whether another process (a running server) holds the database in `dir`. Opens sled
    /// only: no migration or recovery runs on a database that is merely looked at.
    pub fn in_use(dir: &Path) -> bool {
        dir.join("db").exists() && matches!(open_sled(dir, 1), Err(StorageError::Locked))
    }

    /// The store over an open sled database: checks and migrates its schema, then completes
    /// the event writes a crash interrupted.
    fn from_db(db: sled::Db) -> Result<Self> {
        schema::check_and_migrate(&db)?;
        let gate = std::sync::Arc::new(WriteGate::default());
        let open = |name: &str| Tree::open(&db, name, &gate);
        let store = Self {
            commit: GroupCommit::new(db.clone()),
            // Ids from sled's generator only grow, across restarts too.
            positions: Positions::new(db.generate_id()?),
            room_records: RoomRecords::default(),
            newest_receipts: Default::default(),
            latest_key_change: Self::scan_latest_key_change(&open("key_changes")?)?.into(),
            users: open("users")?,
            devices: open("devices")?,
            access_tokens: open("access_tokens")?,
            registration_tokens: open("registration_tokens")?,
            login_tokens: open("login_tokens")?,
            profiles: open("profiles")?,
            meta: open(schema::META_TREE)?,
            rooms: open("rooms")?,
            event_records: open("event_records")?,
            event_keys: open("event_keys")?,
            event_writes: open("event_writes")?,
            state_keys: open("state_keys")?,
            state_keys_rev: open("state_keys_rev")?,
            room_state: open("room_state")?,
            snapshots: open("snapshots")?,
            memberships: open("memberships")?,
            user_rooms: open("user_rooms")?,
            txn_ids: open("txn_ids")?,
            aliases: open("aliases")?,
            room_aliases: open("room_aliases")?,
            public_rooms: open("public_rooms")?,
            relations: open("relations")?,
            thread_activity: open("thread_activity")?,
            thread_latest: open("thread_latest")?,
            filters: open("filters")?,
            account_data: open("account_data")?,
            event_notifications: open("event_notifications")?,
            notified_sets: NotifiedSets::new(open("notified_sets")?),
            read_positions: open("read_positions")?,
            receipts: open("receipts")?,
            pushers: open("pushers")?,
            pusher_state: open("pusher_state")?,
            pushers_by_key: open("pushers_by_key")?,
            device_keys: open("device_keys")?,
            one_time_keys: open("one_time_keys")?,
            one_time_key_order: open("one_time_key_order")?,
            fallback_keys: open("fallback_keys")?,
            cross_signing_keys: open("cross_signing_keys")?,
            key_changes: open("key_changes")?,
            to_device: open("to_device")?,
            to_device_txns: open("to_device_txns")?,
            backup_versions: open("backup_versions")?,
            backup_keys: open("backup_keys")?,
            media: open("media")?,
            user_media: open("user_media")?,
            reports: open("reports")?,
            openid_tokens: open("openid_tokens")?,
            outbound_queue: open("outbound_queue")?,
            server_keys: open("server_keys")?,
            inbound_txns: open("inbound_txns")?,
            remote_invites: open("remote_invites")?,
            blocked_rooms: open("blocked_rooms")?,
            appservice_registrations: open("appservice_registrations")?,
            appservice_queue: open("appservice_queue")?,
            search_postings: std::sync::RwLock::new(open(search::SEARCH_TREE)?),
            gate,
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
