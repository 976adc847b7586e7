//! The latest record of each recently used room, kept above sled.
//!
//! Every send reads its room's record, and a sync reads each of the user's rooms' several
//! times (timeline, members, summary): from sled, each is a lookup and a JSON decode, about
//! 8 % of an initial sync. A record changes with every event in its room, so writes put
//! the new one here ([`RoomRecords::put`]) and bump a generation: a reader that went to
//! sled before a write must not keep what it read ([`RoomRecords::keep`]).

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedRoomId, RoomId};

use super::RoomRecord;

/// Rooms kept at most; when full, the cache starts afresh. A record is a few hundred bytes.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(super) struct RoomRecords(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    rooms: HashMap<OwnedRoomId, RoomRecord>,
    /// Bumped by every write and every clearing.
    generation: u64,
}

/// What a reader saw of the cache before going to sled.
pub(super) struct Miss {
    generation: u64,
}

impl Inner {
    fn insert(&mut self, room: RoomRecord) {
        if self.rooms.len() >= CAPACITY && !self.rooms.contains_key(&room.room_id) {
            self.rooms.clear();
            self.generation += 1;
        }
        self.rooms.insert(room.room_id.clone(), room);
    }
}

impl RoomRecords {
    pub fn get(&self, room_id: &RoomId) -> Result<RoomRecord, Miss> {
        let inner = self.0.lock().expect("never poisoned");
        inner.rooms.get(room_id).cloned().ok_or(Miss { generation: inner.generation })
    }

    /// Keeps a record read from sled after `miss`, unless a write came in between.
    pub fn keep(&self, miss: Miss, room: &RoomRecord) {
        let mut inner = self.0.lock().expect("never poisoned");
        if inner.generation == miss.generation {
            inner.insert(room.clone());
        }
    }

    /// A record just written to sled.
    pub fn put(&self, room: RoomRecord) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        inner.insert(room);
    }
}

#[cfg(test)]
mod tests {
    use ruma::{RoomVersionId, room_id};

    use super::*;

    fn record(room_id: &RoomId, last_position: u64) -> RoomRecord {
        RoomRecord {
            room_id: room_id.to_owned(),
            version: RoomVersionId::V11,
            short: 1,
            extremities: vec![],
            depth: 0,
            snapshot: None,
            last_position,
            last_membership_change: 0,
        }
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache = RoomRecords::default();
        let room = room_id!("!room:example.org");
        let miss = cache.get(room).unwrap_err();
        // The reader read position 1 from sled; meanwhile a write stored position 2.
        cache.put(record(room, 2));
        cache.keep(miss, &record(room, 1));
        assert_eq!(cache.get(room).ok().unwrap().last_position, 2);
    }

    #[test]
    fn a_read_with_no_write_in_between_is_kept() {
        let cache = RoomRecords::default();
        let room = room_id!("!room:example.org");
        let miss = cache.get(room).unwrap_err();
        cache.keep(miss, &record(room, 1));
        assert_eq!(cache.get(room).ok().unwrap().last_position, 1);
        cache.put(record(room, 2));
        assert_eq!(cache.get(room).ok().unwrap().last_position, 2);
    }

    #[test]
    fn a_full_cache_starts_afresh_and_refuses_older_reads() {
        let cache = RoomRecords::default();
        for i in 0..CAPACITY {
            cache.put(record(&RoomId::parse(format!("!r{i}:example.org")).unwrap(), 1));
        }
        let late = room_id!("!late:example.org");
        let miss = cache.get(late).unwrap_err();
        cache.put(record(room_id!("!new:example.org"), 1));
        assert!(cache.get(room_id!("!r0:example.org")).is_err(), "the full cache was not cleared");
        cache.keep(miss, &record(late, 1));
        assert!(cache.get(late).is_err());
        assert_eq!(cache.0.lock().unwrap().rooms.len(), 1);
    }
}
