//! The schema version key and the migration hook.
//!
//! A database records the schema version it was written with. Opening a database from a
//! newer Myelin is refused (it may hold data this version would misread or destroy); an
//! older one is brought forward by running each migration in turn.

use super::{Result, StorageError};

pub const META_TREE: &str = "meta";
const VERSION_KEY: &[u8] = b"schema_version";

/// The schema this build writes.
pub const CURRENT: u32 = 3;

/// `MIGRATIONS[n]` turns schema `n + 1` into `n + 2`.
const MIGRATIONS: &[fn(&sled::Db) -> Result<()>] =
    &[drop_per_member_notifications, mark_grouped_notifications];

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

    #[test]
    fn fresh_database_gets_current_version() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        check_and_migrate(&db).unwrap();
        let stored = db.open_tree(META_TREE).unwrap().get(VERSION_KEY).unwrap().unwrap();
        assert_eq!(stored.as_ref(), CURRENT.to_be_bytes());
    }
}
