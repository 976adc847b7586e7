//! Atomic event writes without sled transactions.
//!
//! Storing an event touches up to nine trees, which must change together or not at all. A
//! sled transaction does that, but at a price that dominated the send path: each one seals
//! and writes sled's I/O buffer twice (waking its whole I/O thread pool each time), so every
//! event cost its own disk writes on top of the shared flush.
//!
//! Instead, an event's index writes are recorded first as one record in `event_writes`
//! (position → [`WriteSet`]) and then applied as plain inserts, the room record last.
//! sled recovers a prefix of its log after a crash, so:
//! - a write set that is missing was never begun, and none of its writes survived but
//!   perhaps the event record written before it, which nothing refers to;
//! - a write set whose room record did not survive may be partly applied, and nothing
//!   later in that room survived either (its events are written one after another), so
//!   [`Store::open`](super::Store::open) applies it again — every write is idempotent.
//!
//! The room record carries the position of its latest event, which tells the two apart.
//! Once an event is durable its write set is removed ([`Store::settle_event`]).

use sled::Tree;

use super::{Result, RoomRecord, StorageError, Store, be_u64, decode};

/// The trees an event's index writes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Index {
    Rooms = 0,
    Timeline,
    RoomState,
    Snapshots,
    Memberships,
    UserRooms,
    TxnIds,
    Relations,
}

impl Index {
    const ALL: [Index; 8] = [
        Index::Rooms,
        Index::Timeline,
        Index::RoomState,
        Index::Snapshots,
        Index::Memberships,
        Index::UserRooms,
        Index::TxnIds,
        Index::Relations,
    ];
}

/// One key set (`Some`) or removed (`None`).
type Op = (Index, Vec<u8>, Option<Vec<u8>>);

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

    fn decode(mut bytes: &[u8]) -> Result<Self> {
        let corrupt = || StorageError::Corrupt("event write set".to_owned());
        let mut take = |n: usize| -> Result<&[u8]> {
            let (head, rest) = bytes.split_at_checked(n).ok_or_else(corrupt)?;
            bytes = rest;
            Ok(head)
        };
        let mut ops = Vec::new();
        loop {
            let Ok(&[index]) = take(1) else { break };
            let index = *Index::ALL.get(index as usize).ok_or_else(corrupt)?;
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
            let key = take(len as usize)?.to_vec();
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
            let value = if len == REMOVED { None } else { Some(take(len as usize)?.to_vec()) };
            ops.push((index, key, value));
        }
        Ok(Self { ops })
    }
}

/// The value length that marks a removal.
const REMOVED: u32 = u32::MAX;

impl Store {
    fn index_tree(&self, index: Index) -> &Tree {
        match index {
            Index::Rooms => &self.rooms,
            Index::Timeline => &self.timeline,
            Index::RoomState => &self.room_state,
            Index::Snapshots => &self.snapshots,
            Index::Memberships => &self.memberships,
            Index::UserRooms => &self.user_rooms,
            Index::TxnIds => &self.txn_ids,
            Index::Relations => &self.relations,
        }
    }

    /// Records the write set under the event's position, then applies it.
    pub(super) fn write_indexes(&self, position: u64, writes: &WriteSet) -> Result<()> {
        self.event_writes.insert(position.to_be_bytes(), writes.encode())?;
        self.apply(writes)
    }

    fn apply(&self, writes: &WriteSet) -> Result<()> {
        for (index, key, value) in &writes.ops {
            let tree = self.index_tree(*index);
            match value {
                Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                None => tree.remove(key.as_slice())?,
            };
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
        let mut recovered = 0;
        for item in self.event_writes.iter() {
            let (key, bytes) = item?;
            let position = be_u64("event write key", &key)?;
            let writes = WriteSet::decode(&bytes)?;
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
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{RoomVersionId, room_id};

    use super::*;
    use crate::storage::{encode, scratch_dir};

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

    /// A write set for an event at `position` in a fresh room, and the room as it leaves it.
    fn event_at(store: &Store, position: u64) -> (WriteSet, RoomRecord) {
        let mut room =
            store.new_room_record(room_id!("!room:example.org").to_owned(), RoomVersionId::V11).unwrap();
        room.last_position = position;
        let mut writes = WriteSet::default();
        writes.insert(Index::Timeline, position.to_be_bytes(), format!("$event{position}"));
        writes.insert(Index::Rooms, room.room_id.as_bytes(), encode(&room));
        (writes, room)
    }

    #[test]
    fn reopening_completes_an_interrupted_event_write() {
        let dir = scratch_dir("event-writes-interrupted");
        let room_id = {
            let store = Store::open(&dir, 8).unwrap();
            let (writes, room) = event_at(&store, 7);
            // The crash came after the write set was recorded and before the room record.
            store.event_writes.insert(7u64.to_be_bytes(), writes.encode()).unwrap();
            store.flush().unwrap();
            room.room_id
        };
        let store = reopen(&dir);
        assert_eq!(store.room(&room_id).unwrap().unwrap().last_position, 7);
        assert_eq!(store.timeline.get(7u64.to_be_bytes()).unwrap().unwrap().as_ref(), b"$event7");
        assert!(store.event_writes.is_empty());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopening_does_not_replay_a_write_set_a_later_event_overtook() {
        let dir = scratch_dir("event-writes-overtaken");
        let room_id = {
            let store = Store::open(&dir, 8).unwrap();
            let (earlier, _) = event_at(&store, 7);
            let (later, room) = event_at(&store, 9);
            // Event 7 was applied in full but its write set not yet removed; event 9 settled.
            store.write_indexes(7, &earlier).unwrap();
            store.write_indexes(9, &later).unwrap();
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
        writes.insert(Index::Timeline, vec![1, 2, 3], b"$event".to_vec());
        writes.remove(Index::RoomState, vec![0xff; 16]);
        writes.insert(Index::Rooms, b"!room:x".to_vec(), Vec::new());
        let decoded = WriteSet::decode(&writes.encode()).unwrap();
        assert_eq!(decoded.ops, writes.ops);
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
