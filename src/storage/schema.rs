//! The schema version key and the migration hook.
//!
//! A database records the schema version it was written with. Opening a database from a
//! newer Myelin is refused (it may hold data this version would misread or destroy); an
//! older one is brought forward by running each migration in turn.
//!
//! A field added to a record with a serde default that means what the older records meant
//! needs no migration and no new version (such as `MediaRecord::authenticated_only`, false
//! for files stored before the media freeze, or `Report::user_id`).

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{Result, StorageError, event_writes::schema_4_timeline_entries};

pub const META_TREE: &str = "meta";
const VERSION_KEY: &[u8] = b"schema_version";

/// The schema this build writes.
pub const CURRENT: u32 = 9;

/// `MIGRATIONS[n]` turns schema `n + 1` into `n + 2`.
const MIGRATIONS: &[fn(&sled::Db) -> Result<()>] = &[
    drop_per_member_notifications,
    mark_grouped_notifications,
    key_events_by_position,
    fold_timeline_into_event_records,
    acknowledge_to_device_by_token,
    index_pushers_by_pushkey,
    build_search_index,
    super::media::index_media_by_uploader,
];

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
        let key = key.to_be_bytes();
        records.insert(key, bytes)?;
        if let Some(earlier) = keys.insert(&event_id, &key)?
            && earlier != key
        {
            records.remove(earlier)?;
        }
    }
    db.flush()?;
    db.drop_tree("events")?;
    Ok(())
}

/// 4 → 5: the `timeline` tree (room and position → event id) folds into `event_records`. A
/// timeline event's record moves from its position to its room and position, and every
/// record gains its event id; see `rooms`.
///
/// Schema 4's timeline says which records move: the tree, and the timeline entries of
/// write sets a crash left behind (opening the store completes those). A record with a
/// position that neither holds was written just before a crash its write set did not
/// survive: it was never acknowledged, and it would now show in the timeline, so it goes.
///
/// Safe to run again after a crash part-way: a moved event's id points to a 16-byte key
/// and is passed over, and a move resumes from wherever it stopped.
fn fold_timeline_into_event_records(db: &sled::Db) -> Result<()> {
    let records = db.open_tree("event_records")?;
    let keys = db.open_tree("event_keys")?;
    let corrupt = |what: &str| StorageError::Corrupt(format!("schema 4 {what}"));
    let move_to_timeline = |timeline_key: &[u8], event_id: &[u8]| -> Result<()> {
        let old_key = keys.get(event_id)?.ok_or_else(|| corrupt("timeline entry without an event"))?;
        if old_key.len() != 8 {
            return Ok(());
        }
        match records.get(&old_key)? {
            Some(bytes) => {
                records.insert(timeline_key, with_event_id(&bytes, event_id)?)?;
            }
            None if records.contains_key(timeline_key)? => {}
            None => return Err(corrupt("event without a record")),
        }
        records.remove(&old_key)?;
        keys.insert(event_id, timeline_key)?;
        Ok(())
    };
    for item in db.open_tree("timeline")?.iter() {
        let (timeline_key, event_id) = item?;
        move_to_timeline(&timeline_key, &event_id)?;
    }
    for item in db.open_tree("event_writes")?.iter() {
        for (timeline_key, event_id) in schema_4_timeline_entries(&item?.1)? {
            move_to_timeline(&timeline_key, &event_id)?;
        }
    }
    // Left under their old keys: outliers, and records no timeline entry claimed.
    for item in keys.iter() {
        let (event_id, key) = item?;
        if key.len() != 8 {
            continue;
        }
        let bytes = records.get(&key)?.ok_or_else(|| corrupt("event without a record"))?;
        let position = record_fields(&bytes)?
            .get("position")
            .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok())
            .ok_or_else(|| corrupt("event record"))?;
        if position == 0 {
            records.insert(&key, with_event_id(&bytes, &event_id)?)?;
        } else {
            keys.remove(&event_id)?;
            records.remove(&key)?;
        }
    }
    db.flush()?;
    db.drop_tree("timeline")?;
    Ok(())
}

/// 5 → 6: a sync token now acknowledges every to-device message up to its position, or up
/// to the position its own to-device part names, so `to_device_deliveries` (token → last
/// message the response with that token carried) goes. A response that had to leave
/// messages behind recorded a token above them; a client may still sync from that token,
/// which would now acknowledge them undelivered. Those messages move above every position
/// handed out so far, in their order, and are delivered by the next sync.
fn acknowledge_to_device_by_token(db: &sled::Db) -> Result<()> {
    let deliveries = db.open_tree("to_device_deliveries")?;
    let messages = db.open_tree("to_device")?;
    // Per device queue (its key prefix): the ranges (last delivered, token] at risk.
    let mut at_risk: BTreeMap<Vec<u8>, Vec<(u64, u64)>> = BTreeMap::new();
    for item in deliveries.iter() {
        let (key, last) = item?;
        let split =
            key.len().checked_sub(8).ok_or_else(|| StorageError::Corrupt("delivery key".to_owned()))?;
        let token = super::be_u64("delivery token", &key[split..])?;
        let last = super::be_u64("delivered position", &last)?;
        at_risk.entry(key[..split].to_vec()).or_default().push((last, token));
    }
    for (prefix, ranges) in at_risk {
        for item in messages.scan_prefix(&prefix) {
            let (key, message) = item?;
            let position = super::be_u64("to-device key", &key[prefix.len()..])?;
            if ranges.iter().any(|(last, token)| position > *last && position <= *token) {
                let moved = [prefix.as_slice(), &db.generate_id()?.to_be_bytes()].concat();
                messages.insert(moved, message)?;
                messages.remove(key)?;
            }
        }
    }
    db.flush()?;
    db.drop_tree("to_device_deliveries")?;
    Ok(())
}

/// 6 → 7: pushers are also indexed by app id and push key (`pushers_by_key`), so that a
/// client taking a push key over (`append: false`) finds the other users holding it
/// without reading every pusher. Their delivery state starts when first read.
fn index_pushers_by_pushkey(db: &sled::Db) -> Result<()> {
    let by_key = db.open_tree("pushers_by_key")?;
    for key in db.open_tree("pushers")?.iter().keys() {
        let key = key?;
        let mut parts = key.splitn(3, |b| *b == super::SEP);
        let (Some(user), Some(app), Some(pushkey)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StorageError::Corrupt("pusher key".to_owned()));
        };
        by_key.insert(super::composite_key(&[app, pushkey, user]), &[])?;
    }
    Ok(())
}

/// 7 → 8: timeline events are indexed for search (`search_postings`, see `search`). The
/// index is built from the stored events once; from then on each event's write set carries
/// its postings. Safe to run again after a crash part-way (postings are keyed by event).
fn build_search_index(db: &sled::Db) -> Result<()> {
    let mut progress = |read: u64, indexed: u64| {
        tracing::info!(read, indexed, "building the search index");
    };
    // Nothing else writes while a migration runs: a gate of its own is never closed.
    let gate = Default::default();
    super::search::index_records(
        &super::Tree::open(db, "event_records", &gate)?,
        &super::Tree::open(db, "search_postings", &gate)?,
        &mut progress,
    )?;
    Ok(())
}

/// A stored record's fields, each as its JSON text.
fn record_fields(bytes: &[u8]) -> Result<BTreeMap<String, Box<RawValue>>> {
    super::decode("event record", bytes)
}

/// A schema-4 event record with its event id added, as schema 5 stores it.
fn with_event_id(bytes: &[u8], event_id: &[u8]) -> Result<Vec<u8>> {
    let event_id = std::str::from_utf8(event_id).map_err(|_| StorageError::Corrupt("event id".to_owned()))?;
    let mut fields = record_fields(bytes)?;
    fields.insert(
        "event_id".to_owned(),
        serde_json::value::to_raw_value(event_id).expect("a string serialises"),
    );
    Ok(super::encode(&fields))
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

    /// The key an event's id points to, and the record under it.
    fn stored(db: &sled::Db, event_id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let key = db.open_tree("event_keys").unwrap().get(event_id).unwrap()?;
        let record = db.open_tree("event_records").unwrap().get(&key).unwrap().unwrap();
        Some((key.to_vec(), record.to_vec()))
    }

    fn record_of(db: &sled::Db, event_id: &str) -> (u64, String) {
        let (key, record) = stored(db, event_id).unwrap();
        (u64::from_be_bytes(key.try_into().unwrap()), String::from_utf8(record).unwrap())
    }

    #[test]
    fn events_are_rekeyed_by_position() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        schema_3_events(&db);
        key_events_by_position(&db).unwrap();
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
        key_events_by_position(&db).unwrap();
        assert_eq!(db.open_tree("event_records").unwrap().len(), 2);
        assert_eq!(record_of(&db, "$timeline").0, 42);
        assert_eq!(record_of(&db, "$outlier").1, r#"{"pdu":{"n":2},"position":0}"#);
    }

    /// Room short id 7's key for `position`, as schema 4's timeline and schema 5's records
    /// spell it.
    fn room_key(position: u64) -> Vec<u8> {
        [7u64.to_be_bytes(), position.to_be_bytes()].concat()
    }

    fn schema_4_record(position: u64) -> String {
        format!(r#"{{"pdu":{{"n":{position}}},"room_id":"!r:x","position":{position},"state_before":null}}"#)
    }

    /// A schema-4 database with, in room `!r:x` (short id 7): a timeline event at position
    /// 42; an event at 43 whose write set a crash interrupted before its timeline entry;
    /// one at 44 whose write set a crash kept from being written at all; and an outlier.
    fn schema_4_events(db: &sled::Db) {
        db.open_tree(META_TREE).unwrap().insert(VERSION_KEY, &4u32.to_be_bytes()).unwrap();
        let records = db.open_tree("event_records").unwrap();
        let keys = db.open_tree("event_keys").unwrap();
        for (event_id, position) in [("$timeline", 42u64), ("$pending", 43), ("$unwritten", 44)] {
            records.insert(position.to_be_bytes(), schema_4_record(position).as_bytes()).unwrap();
            keys.insert(event_id, &position.to_be_bytes()).unwrap();
        }
        records.insert(1000u64.to_be_bytes(), schema_4_record(0).as_bytes()).unwrap();
        keys.insert("$outlier", &1000u64.to_be_bytes()).unwrap();
        db.open_tree("timeline").unwrap().insert(room_key(42), "$timeline").unwrap();
        // Schema 4's write set for 43: its timeline entry (index byte 1), then the room
        // record (index byte 0); each key and value prefixed by its length.
        let room = br#"{"room_id":"!r:x","version":"11","short":7,"extremities":[],"depth":1,"snapshot":null,"last_position":43}"#;
        let mut set = Vec::new();
        for (index, key, value) in
            [(1u8, room_key(43), b"$pending".to_vec()), (0, b"!r:x".to_vec(), room.to_vec())]
        {
            set.push(index);
            for bytes in [key, value] {
                set.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                set.extend_from_slice(&bytes);
            }
        }
        db.open_tree("event_writes").unwrap().insert(43u64.to_be_bytes(), set).unwrap();
    }

    fn record_fields_of(db: &sled::Db, event_id: &str) -> Option<(Vec<u8>, serde_json::Value)> {
        stored(db, event_id).map(|(key, record)| (key, serde_json::from_slice(&record).unwrap()))
    }

    fn assert_timeline_folded(db: &sled::Db) {
        for (event_id, position) in [("$timeline", 42), ("$pending", 43)] {
            let (key, record) = record_fields_of(db, event_id).unwrap();
            assert_eq!(key, room_key(position), "{event_id} is not under its room and position");
            assert_eq!(record["event_id"], event_id);
            assert_eq!(record["pdu"]["n"], position);
        }
        let (key, outlier) = record_fields_of(db, "$outlier").unwrap();
        assert_eq!((key, outlier["event_id"].as_str()), (1000u64.to_be_bytes().to_vec(), Some("$outlier")));
        assert!(record_fields_of(db, "$unwritten").is_none(), "an event no write set claimed was kept");
        assert_eq!(db.open_tree("event_records").unwrap().len(), 3, "a record was left behind");
        assert!(!db.tree_names().iter().any(|name| name.as_ref() == b"timeline"));
    }

    #[test]
    fn the_timeline_folds_into_event_records() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        schema_4_events(&db);
        check_and_migrate(&db).unwrap();
        assert_timeline_folded(&db);
    }

    #[test]
    fn folding_the_timeline_again_after_a_crash_finishes_the_move() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        schema_4_events(&db);
        // The first run's crash came after 42's record moved, before its id was repointed.
        let records = db.open_tree("event_records").unwrap();
        records
            .insert(room_key(42), with_event_id(schema_4_record(42).as_bytes(), b"$timeline").unwrap())
            .unwrap();
        records.remove(42u64.to_be_bytes()).unwrap();
        fold_timeline_into_event_records(&db).unwrap();
        assert_timeline_folded(&db);
        // And a crash after the whole move, before the version was bumped.
        fold_timeline_into_event_records(&db).unwrap();
        assert_timeline_folded(&db);
    }

    #[test]
    fn a_store_opened_after_the_fold_completes_the_interrupted_event() {
        let dir = crate::storage::scratch_dir("schema-fold-timeline");
        {
            let db = sled::Config::new().path(dir.join("db")).open().unwrap();
            schema_4_events(&db);
            db.flush().unwrap();
        }
        let store = crate::storage::Store::open(&dir, 8).unwrap();
        let room =
            store.room(ruma::room_id!("!r:x")).unwrap().expect("the interrupted write set was not applied");
        assert_eq!(room.last_position, 43);
        let timeline: Vec<_> = store
            .timeline(&room, 0, true, 10)
            .unwrap()
            .into_iter()
            .map(|(p, id)| (p, id.to_string()))
            .collect();
        assert_eq!(timeline, [(42, "$timeline".to_owned()), (43, "$pending".to_owned())]);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn fresh_database_gets_current_version() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        check_and_migrate(&db).unwrap();
        let stored = db.open_tree(META_TREE).unwrap().get(VERSION_KEY).unwrap().unwrap();
        assert_eq!(stored.as_ref(), CURRENT.to_be_bytes());
    }

    /// A schema-5 device queue: messages at 10 to 13 and 30, and a response with token 15
    /// that carried up to 11. A sync from 15 now acknowledges up to 15, so 12 and 13 move
    /// above every position handed out, in order; 30 and the delivered 10 and 11 stay.
    #[test]
    fn undelivered_to_device_messages_move_above_their_token() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree(META_TREE).unwrap().insert(VERSION_KEY, &5u32.to_be_bytes()).unwrap();
        while db.generate_id().unwrap() < 40 {}
        let prefix = b"@a:x\xffDEV\xff".to_vec();
        let key = |position: u64| [prefix.as_slice(), &position.to_be_bytes()].concat();
        let messages = db.open_tree("to_device").unwrap();
        for position in [10u64, 11, 12, 13, 30] {
            messages.insert(key(position), position.to_string().as_bytes()).unwrap();
        }
        db.open_tree("to_device_deliveries").unwrap().insert(key(15), &11u64.to_be_bytes()).unwrap();

        check_and_migrate(&db).unwrap();

        let queue: Vec<(u64, String)> = messages
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item.unwrap();
                (
                    u64::from_be_bytes(k[prefix.len()..].try_into().unwrap()),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        let contents: Vec<&str> = queue.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(contents, ["10", "11", "30", "12", "13"]);
        assert!(
            queue[3].0 > 40 && queue[4].0 > queue[3].0,
            "moved above the positions handed out: {queue:?}"
        );
        assert!(!db.tree_names().iter().any(|name| name == b"to_device_deliveries"));
    }
}
