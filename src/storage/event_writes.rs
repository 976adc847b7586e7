//! Atomic event writes without sled transactions.
//!
//! Storing an event touches up to ten trees, which must change together or not at all. A
//! sled transaction does that, but at a price that dominated the send path: each one seals
//! and writes sled's I/O buffer twice (waking its whole I/O thread pool each time), so every
//! event cost its own disk writes on top of the shared flush.
//!
//! Instead, an event's index writes are recorded first as one record in `event_writes`
//! (position → [`WriteSet`]); then the event's record is written, and then the index
//! writes are applied as plain inserts, the room record last. The record itself is not in
//! the write set, which would write its bytes twice. sled recovers a prefix of its log
//! after a crash, so:
//! - a write set that is missing was never begun, and none of its writes survived;
//! - a write set whose event record is missing was begun, but none of its index writes
//!   survived: it is dropped. The record is the room's timeline entry (see `rooms`), so
//!   it must never survive without its write set;
//! - a write set whose room record did not survive may be partly applied, and nothing
//!   later in that room survived either (its events are written one after another), so
//!   [`Store::open`](super::Store::open) applies it again — every write is idempotent.
//!
//! The room record carries the position of its latest event, which tells the last two
//! apart. Once an event is durable its write set is removed ([`Store::settle_event`]).

use super::tree::Tree;

use super::{Result, RoomRecord, StorageError, Store, be_u64, decode};

/// The trees an event's index writes go to. The numbers are stored: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Index {
    Rooms = 0,
    // 1 was the `timeline` tree of schema 4: see [`SCHEMA_4_TIMELINE`].
    RoomState = 2,
    Snapshots = 3,
    Memberships = 4,
    UserRooms = 5,
    TxnIds = 6,
    Relations = 7,
    EventKeys = 8,
    ThreadActivity = 9,
    ThreadLatest = 10,
    Search = 11,
}

impl Index {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Index::Rooms,
            2 => Index::RoomState,
            3 => Index::Snapshots,
            4 => Index::Memberships,
            5 => Index::UserRooms,
            6 => Index::TxnIds,
            7 => Index::Relations,
            8 => Index::EventKeys,
            9 => Index::ThreadActivity,
            10 => Index::ThreadLatest,
            11 => Index::Search,
            _ => return None,
        })
    }
}

/// The index byte of schema 4's `timeline` entries (room and position → event id), which
/// schema 5 folded into `event_records`. A write set recorded before the upgrade may hold
/// one; the migration moves its event's record ([`schema_4_timeline_entries`]) and replaying
/// the set skips it.
const SCHEMA_4_TIMELINE: u8 = 1;

/// One key set (`Some`) or removed (`None`).
type Op = (Index, Vec<u8>, Option<Vec<u8>>);

/// An op as stored, its tree still a byte.
type RawOp = (u8, Vec<u8>, Option<Vec<u8>>);

/// An event's index writes, in the order they are applied.
#[derive(Debug, Default)]
pub(super) struct WriteSet {
    ops: Vec<Op>,
}

impl WriteSet {
    pub fn insert(&mut self, index: Index, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((index, key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, index: Index, key: impl Into<Vec<u8>>) {
        self.ops.push((index, key.into(), None));
    }

    /// Binary form: per op, the index byte, then the key and the value each prefixed by its
    /// length as a big-endian u32; a removal has no value and [`REMOVED`] for its length.
    /// JSON would spell every byte of the keys as a number.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.ops.iter().map(|(_, k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len)).sum(),
        );
        for (index, key, value) in &self.ops {
            out.push(*index as u8);
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
            match value {
                Some(value) => {
                    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&REMOVED.to_be_bytes()),
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut ops = Vec::new();
        for (byte, key, value) in decode_raw(bytes)? {
            if byte == SCHEMA_4_TIMELINE {
                continue;
            }
            let index = Index::from_byte(byte).ok_or_else(corrupt)?;
            ops.push((index, key, value));
        }
        Ok(Self { ops })
    }

    /// The key of the event record the set belongs to: the value of its `event_keys` op
    /// (`None` in sets from schema 4, whose record was written before the set).
    fn record_key(&self) -> Option<&[u8]> {
        self.ops.iter().find_map(|(index, _, value)| match (index, value) {
            (Index::EventKeys, Some(key)) => Some(key.as_slice()),
            _ => None,
        })
    }
}

fn corrupt() -> StorageError {
    StorageError::Corrupt("event write set".to_owned())
}

fn decode_raw(mut bytes: &[u8]) -> Result<Vec<RawOp>> {
    let mut take = |n: usize| -> Result<&[u8]> {
        let (head, rest) = bytes.split_at_checked(n).ok_or_else(corrupt)?;
        bytes = rest;
        Ok(head)
    };
    let mut ops = Vec::new();
    loop {
        let Ok(&[index]) = take(1) else { break };
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
        let key = take(len as usize)?.to_vec();
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
        let value = if len == REMOVED { None } else { Some(take(len as usize)?.to_vec()) };
        ops.push((index, key, value));
    }
    Ok(ops)
}

/// The schema-4 timeline entries (room and position → event id) of a stored write set.
pub(super) fn schema_4_timeline_entries(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    Ok(decode_raw(bytes)?
        .into_iter()
        .filter(|(byte, ..)| *byte == SCHEMA_4_TIMELINE)
        .filter_map(|(_, key, value)| Some((key, value?)))
        .collect())
}

/// The value length that marks a removal.
const REMOVED: u32 = u32::MAX;

impl Store {
    fn index_tree(&self, index: Index) -> &Tree {
        match index {
            Index::Rooms => &self.rooms,
            Index::RoomState => &self.room_state,
            Index::Snapshots => &self.snapshots,
            Index::Memberships => &self.memberships,
            Index::UserRooms => &self.user_rooms,
            Index::TxnIds => &self.txn_ids,
            Index::Relations => &self.relations,
            Index::EventKeys => &self.event_keys,
            Index::ThreadActivity => &self.thread_activity,
            Index::ThreadLatest => &self.thread_latest,
            Index::Search => unreachable!("search postings are written under their lock, in `apply`"),
        }
    }

    /// Records the write set under the event's position, writes the event's record under
    /// `record_key` (which the set's `event_keys` op must name), then applies the set.
    pub(super) fn write_event_and_indexes(
        &self,
        position: u64,
        record_key: &[u8],
        record: Vec<u8>,
        writes: &WriteSet,
    ) -> Result<()> {
        debug_assert_eq!(writes.record_key(), Some(record_key));
        self.event_writes.insert(position.to_be_bytes(), writes.encode())?;
        self.event_records.insert(record_key, record)?;
        self.apply(writes)
    }

    fn apply(&self, writes: &WriteSet) -> Result<()> {
        for (index, key, value) in &writes.ops {
            if *index == Index::Search {
                self.write_posting(key, value.as_deref())?;
                continue;
            }
            let tree = self.index_tree(*index);
            let Some(value) = value else {
                tree.remove(key.as_slice())?;
                continue;
            };
            let earlier = tree.insert(key.as_slice(), value.as_slice())?;
            // An outlier joining the timeline: its record under its generated key goes. (A
            // crash in between leaves that record behind, unreferenced.)
            if *index == Index::EventKeys
                && let Some(earlier) = earlier
                && earlier != value.as_slice()
            {
                self.event_records.remove(earlier)?;
            }
        }
        Ok(())
    }

    /// The event at `position` is durable: its write set is no longer needed.
    pub fn settle_event(&self, position: u64) -> Result<()> {
        self.event_writes.remove(position.to_be_bytes())?;
        Ok(())
    }

    /// Completes the event writes a crash interrupted, and drops the write sets of those
    /// that finished. Runs once, when the database is opened.
    pub(super) fn recover_event_writes(&self) -> Result<()> {
        let (mut recovered, mut dropped) = (0, 0);
        for item in self.event_writes.iter() {
            let (key, bytes) = item?;
            let position = be_u64("event write key", &key)?;
            let writes = WriteSet::decode(&bytes)?;
            if let Some(record_key) = writes.record_key()
                && !self.event_records.contains_key(record_key)?
            {
                self.event_writes.remove(key)?;
                dropped += 1;
                continue;
            }
            // The room record is the last write; its position says whether it got there.
            let Some((_, room_key, Some(room_bytes))) =
                writes.ops.iter().rev().find(|(i, ..)| *i == Index::Rooms)
            else {
                return Err(StorageError::Corrupt(format!("event write set {position} has no room record")));
            };
            let written: RoomRecord = decode("room", room_bytes)?;
            let stored: Option<RoomRecord> =
                self.rooms.get(room_key)?.map(|b| decode("room", &b)).transpose()?;
            if stored.is_none_or(|room| room.last_position < written.last_position) {
                self.apply(&writes)?;
                recovered += 1;
            }
            self.event_writes.remove(key)?;
        }
        if recovered > 0 {
            tracing::warn!(events = recovered, "completed event writes interrupted by a crash");
        }
        if dropped > 0 {
            tracing::warn!(events = dropped, "dropped events a crash interrupted before they were stored");
        }
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedEventId, RoomVersionId, event_id, owned_event_id, room_id};

    use super::*;
    use crate::storage::{StoredEvent, encode, rooms::room_key, scratch_dir};

    /// Opens the store again after dropping it. sled's I/O threads can hold the database's
    /// file, and so its lock, for a moment after the last handle is dropped.
    fn reopen(dir: &std::path::Path) -> Store {
        for _ in 0..100 {
            match Store::open(dir, 8) {
                Err(StorageError::Locked) => std::thread::sleep(std::time::Duration::from_millis(20)),
                opened => return opened.unwrap(),
            }
        }
        panic!("the database stayed locked after the store was dropped");
    }

    /// An event at `position` in a fresh room: its write set, its record's key and bytes,
    /// and the room as the event leaves it.
    fn event_at(store: &Store, position: u64) -> (WriteSet, [u8; 16], Vec<u8>, RoomRecord) {
        let mut room =
            store.new_room_record(room_id!("!room:example.org").to_owned(), RoomVersionId::V11).unwrap();
        room.last_position = position;
        let event_id = OwnedEventId::try_from(format!("$event{position}")).unwrap();
        let record_key = room_key(room.short, position);
        let record = encode(&StoredEvent {
            event_id: event_id.clone(),
            pdu: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
            room_id: room.room_id.clone(),
            position,
            state_before: None,
            txn: None,
            redacted_because: None,
            replaces_state: None,
        });
        let mut writes = WriteSet::default();
        writes.insert(Index::EventKeys, event_id.as_bytes(), record_key);
        writes.insert(Index::Rooms, room.room_id.as_bytes(), encode(&room));
        (writes, record_key, record, room)
    }

    #[test]
    fn reopening_completes_an_interrupted_event_write() {
        let dir = scratch_dir("event-writes-interrupted");
        let room = {
            let store = Store::open(&dir, 8).unwrap();
            let (writes, record_key, record, room) = event_at(&store, 7);
            // The crash came after the write set and the record, before the indexes.
            store.event_writes.insert(7u64.to_be_bytes(), writes.encode()).unwrap();
            store.event_records.insert(record_key, record).unwrap();
            store.flush().unwrap();
            room
        };
        let store = reopen(&dir);
        assert_eq!(store.room(&room.room_id).unwrap().unwrap().last_position, 7);
        assert_eq!(store.event(event_id!("$event7")).unwrap().unwrap().position, 7);
        assert_eq!(store.timeline(&room, 0, true, 10).unwrap(), vec![(7, owned_event_id!("$event7"))]);
        assert!(store.event_writes.is_empty());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopening_drops_an_event_whose_record_was_not_written() {
        let dir = scratch_dir("event-writes-no-record");
        let room = {
            let store = Store::open(&dir, 8).unwrap();
            let (writes, _, _, room) = event_at(&store, 7);
            // The crash came after the write set, before the record.
            store.event_writes.insert(7u64.to_be_bytes(), writes.encode()).unwrap();
            store.flush().unwrap();
            room
        };
        let store = reopen(&dir);
        assert!(store.room(&room.room_id).unwrap().is_none(), "the room record was applied");
        assert!(store.event(event_id!("$event7")).unwrap().is_none());
        assert!(store.event_writes.is_empty());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopening_does_not_replay_a_write_set_a_later_event_overtook() {
        let dir = scratch_dir("event-writes-overtaken");
        let room_id = {
            let store = Store::open(&dir, 8).unwrap();
            let (earlier, earlier_key, earlier_record, _) = event_at(&store, 7);
            let (later, later_key, later_record, room) = event_at(&store, 9);
            // Event 7 was applied in full but its write set not yet removed; event 9 settled.
            store.write_event_and_indexes(7, &earlier_key, earlier_record, &earlier).unwrap();
            store.write_event_and_indexes(9, &later_key, later_record, &later).unwrap();
            store.settle_event(9).unwrap();
            store.flush().unwrap();
            room.room_id
        };
        let store = reopen(&dir);
        assert_eq!(store.room(&room_id).unwrap().unwrap().last_position, 9, "the room went back to event 7");
        assert!(store.event_writes.is_empty());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_sets_round_trip() {
        let mut writes = WriteSet::default();
        writes.insert(Index::EventKeys, b"$event".to_vec(), vec![1, 2, 3]);
        writes.remove(Index::RoomState, vec![0xff; 16]);
        writes.insert(Index::Rooms, b"!room:x".to_vec(), Vec::new());
        let decoded = WriteSet::decode(&writes.encode()).unwrap();
        assert_eq!(decoded.ops, writes.ops);
    }

    #[test]
    fn schema_4_timeline_ops_are_read_apart_from_the_rest() {
        let mut rest = WriteSet::default();
        rest.insert(Index::Rooms, b"!room:x".to_vec(), b"{}".to_vec());
        let mut bytes = vec![SCHEMA_4_TIMELINE, 0, 0, 0, 2, 0xaa, 0xbb, 0, 0, 0, 6];
        bytes.extend_from_slice(b"$event");
        bytes.extend_from_slice(&rest.encode());
        assert_eq!(WriteSet::decode(&bytes).unwrap().ops, rest.ops);
        assert_eq!(schema_4_timeline_entries(&bytes).unwrap(), vec![(vec![0xaa, 0xbb], b"$event".to_vec())]);
    }

    #[test]
    fn truncated_write_sets_are_corrupt() {
        let mut writes = WriteSet::default();
        writes.insert(Index::Relations, b"key".to_vec(), b"value".to_vec());
        let bytes = writes.encode();
        assert!(WriteSet::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(WriteSet::decode(&[42]).is_err());
    }
}
