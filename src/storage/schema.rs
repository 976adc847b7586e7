//! The schema version key and the migration hook.
//!
//! A database records the schema version it was written with. Opening a database from a
//! newer Myelin is refused (it may hold data this version would misread or destroy); an
//! older one is brought forward by running each migration in turn.

use super::{Result, StorageError};

pub const META_TREE: &str = "meta";
const VERSION_KEY: &[u8] = b"schema_version";

/// The schema this build writes.
pub const CURRENT: u32 = 4;

/// `MIGRATIONS[n]` turns schema `n + 1` into `n + 2`.
const MIGRATIONS: &[fn(&sled::Db) -> Result<()>] =
    &[drop_per_member_notifications, mark_grouped_notifications, key_events_by_position];

/// 1 → 2: notifications moved from one record per member and event to one per event. The
/// old records only fed unread counts and `/notifications`, which start afresh.
fn drop_per_member_notifications(db: &sled::Db) -> Result<()> {
    for tree in ["notifications", "room_notifications"] {
        db.drop_tree(tree)?;
    }
    Ok(())
}

/// 2 → 3: notification records group their recipients by push actions, and events are
/// written through write sets (`event_writes`). This version reads the older records as
/// they are, so nothing is rewritten; the new version number keeps an older Myelin, which
/// cannot read the new records, from opening the database.
fn mark_grouped_notifications(_db: &sled::Db) -> Result<()> {
    Ok(())
}

/// 3 → 4: event records move from `events` (event id → record) to `event_records`
/// (position → record) with an `event_keys` index (event id → position); see `rooms`.
/// Outliers, which have no position, get a generated key.
///
/// Safe to run again after a crash part-way: a timeline event lands on the same key, and
/// an outlier's earlier copy is removed when its id is indexed again. The old tree goes
/// only once the copy is on disk.
fn key_events_by_position(db: &sled::Db) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Placed {
        position: u64,
    }
    let old = db.open_tree("events")?;
    let records = db.open_tree("event_records")?;
    let keys = db.open_tree("event_keys")?;
    for item in old.iter() {
        let (event_id, bytes) = item?;
        let Placed { position } = super::decode("event", &bytes)?;
        let key = match position {
            0 => db.generate_id()?,
            position => position,
        };
        super::rooms::put_event_record(&records, &keys, &event_id, key, bytes)?;
    }
    db.flush()?;
    db.drop_tree("events")?;
    Ok(())
}

pub fn check_and_migrate(db: &sled::Db) -> Result<()> {
    let meta = db.open_tree(META_TREE)?;
    let found = match meta.get(VERSION_KEY)? {
        None => {
            meta.insert(VERSION_KEY, &CURRENT.to_be_bytes())?;
            db.flush()?;
            return Ok(());
        }
        Some(bytes) => u32::from_be_bytes(
            bytes.as_ref().try_into().map_err(|_| StorageError::Corrupt("schema version".to_owned()))?,
        ),
    };
    if found > CURRENT {
        return Err(StorageError::TooNew { found, supported: CURRENT });
    }
    for version in found..CURRENT {
        tracing::info!(from = version, to = version + 1, "migrating database schema");
        MIGRATIONS[(version - 1) as usize](db)?;
        meta.insert(VERSION_KEY, &(version + 1).to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_newer_schema() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        check_and_migrate(&db).unwrap();
        db.open_tree(META_TREE).unwrap().insert(VERSION_KEY, &(CURRENT + 1).to_be_bytes()).unwrap();
        assert!(matches!(check_and_migrate(&db), Err(StorageError::TooNew { .. })));
    }

    /// A schema-3 database with a timeline event at position 42 and an outlier.
    fn schema_3_events(db: &sled::Db) {
        db.open_tree(META_TREE).unwrap().insert(VERSION_KEY, &3u32.to_be_bytes()).unwrap();
        let events = db.open_tree("events").unwrap();
        events.insert("$timeline", br#"{"pdu":{"n":1},"position":42}"#).unwrap();
        events.insert("$outlier", br#"{"pdu":{"n":2},"position":0}"#).unwrap();
    }

    fn record_of(db: &sled::Db, event_id: &str) -> (u64, String) {
        let key = db.open_tree("event_keys").unwrap().get(event_id).unwrap().unwrap();
        let record = db.open_tree("event_records").unwrap().get(&key).unwrap().unwrap();
        (u64::from_be_bytes(key.as_ref().try_into().unwrap()), String::from_utf8(record.to_vec()).unwrap())
    }

    #[test]
    fn events_are_rekeyed_by_position() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        schema_3_events(&db);
        check_and_migrate(&db).unwrap();
        assert_eq!(record_of(&db, "$timeline"), (42, r#"{"pdu":{"n":1},"position":42}"#.to_owned()));
        let (outlier_key, outlier) = record_of(&db, "$outlier");
        assert_ne!(outlier_key, 42);
        assert_eq!(outlier, r#"{"pdu":{"n":2},"position":0}"#);
        assert!(!db.tree_names().iter().any(|name| name.as_ref() == b"events"));
    }

    #[test]
    fn rekeying_events_again_after_a_crash_leaves_no_copies() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        schema_3_events(&db);
        key_events_by_position(&db).unwrap();
        // The crash came after the copy and before the old tree was dropped.
        schema_3_events(&db);
        check_and_migrate(&db).unwrap();
        assert_eq!(db.open_tree("event_records").unwrap().len(), 2);
        assert_eq!(record_of(&db, "$timeline").0, 42);
        assert_eq!(record_of(&db, "$outlier").1, r#"{"pdu":{"n":2},"position":0}"#);
    }

    #[test]
    fn fresh_database_gets_current_version() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        check_and_migrate(&db).unwrap();
        let stored = db.open_tree(META_TREE).unwrap().get(VERSION_KEY).unwrap().unwrap();
        assert_eq!(stored.as_ref(), CURRENT.to_be_bytes());
    }
}
