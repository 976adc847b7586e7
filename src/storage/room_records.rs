//! The latest record and the newest timeline entries of each recently used room, kept
//! above sled.
//!
//! Every send reads its room's record, and a sync reads each of the user's rooms' several
//! times (timeline, members, summary): from sled, each is a lookup and a JSON decode, about
//! 8 % of an initial sync. A record changes with every event in its room, so writes put
//! the new one here ([`RoomRecords::put`]) and bump a generation: a reader that went to
//! sled before a write must not keep what it read ([`RoomRecords::keep`]).
//!
//! Every sync also reads the newest part of each room's timeline: a range scan in sled
//! (a reverse one for an initial sync), about a fifth of an initial sync's time. The newest
//! [`RECENT`] entries ride along with the record ([`Recent`]), filled from sled the same
//! way and extended by each write, so that most of those reads need no scan.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedEventId, OwnedRoomId, RoomId};

use super::RoomRecord;

/// Rooms kept at most; when full, the cache starts afresh. A record is a few hundred bytes,
/// its recent entries about 2 KB.
const CAPACITY: usize = 4096;

/// Timeline entries kept per room: a sync's first page (16) with room to spare for entries
/// written but not yet visible.
pub(super) const RECENT: usize = 24;

#[derive(Default)]
pub(super) struct RoomRecords(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    rooms: HashMap<OwnedRoomId, Entry>,
    /// Bumped by every write and every clearing.
    generation: u64,
}

struct Entry {
    record: RoomRecord,
    /// `None` until read from sled.
    recent: Option<Recent>,
}

/// What a reader saw of the cache before going to sled.
pub(super) struct Miss {
    generation: u64,
}

/// The newest timeline entries of a room, exactly as in sled's `timeline` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recent {
    /// (position, event id), oldest first, at most [`RECENT`].
    entries: Vec<(u64, OwnedEventId)>,
    /// Every entry of the room with a position above this one is in `entries` (0: all are).
    held_after: u64,
}

impl Recent {
    /// From sled's newest entries of a room, newest first, read with a limit of [`RECENT`].
    pub fn from_newest_first(mut entries: Vec<(u64, OwnedEventId)>) -> Self {
        entries.reverse();
        let held_after = match entries.first() {
            Some((oldest, _)) if entries.len() == RECENT => oldest.saturating_sub(1),
            _ => 0,
        };
        Self { entries, held_after }
    }

    /// The entries after `from` (forwards, oldest first) or before it (newest first), at most
    /// `limit`: what `Store::timeline` answers, when these entries hold all of the answer.
    pub fn read(&self, from: u64, forwards: bool, limit: usize) -> Option<Vec<(u64, OwnedEventId)>> {
        if forwards {
            (from >= self.held_after)
                .then(|| self.entries.iter().filter(|(p, _)| *p > from).take(limit).cloned().collect())
        } else {
            let before: Vec<_> =
                self.entries.iter().rev().filter(|(p, _)| *p < from).take(limit).cloned().collect();
            (before.len() == limit || self.held_after == 0).then_some(before)
        }
    }

    /// A new entry, newer than all others; one already here (read from sled after the write
    /// put it there) is not added twice.
    fn push(&mut self, position: u64, event_id: OwnedEventId) {
        if self.entries.last().is_some_and(|(newest, _)| *newest >= position) {
            return;
        }
        self.entries.push((position, event_id));
        if self.entries.len() > RECENT {
            let (dropped, _) = self.entries.remove(0);
            self.held_after = dropped;
        }
    }
}

impl Inner {
    fn insert(&mut self, room_id: OwnedRoomId, entry: Entry) {
        if self.rooms.len() >= CAPACITY && !self.rooms.contains_key(&room_id) {
            self.rooms.clear();
            self.generation += 1;
        }
        self.rooms.insert(room_id, entry);
    }
}

impl RoomRecords {
    pub fn get(&self, room_id: &RoomId) -> Result<RoomRecord, Miss> {
        let inner = self.0.lock().expect("never poisoned");
        match inner.rooms.get(room_id) {
            Some(entry) => Ok(entry.record.clone()),
            None => Err(Miss { generation: inner.generation }),
        }
    }

    /// Keeps a record read from sled after `miss`, unless a write came in between.
    pub fn keep(&self, miss: Miss, room: &RoomRecord) {
        let mut inner = self.0.lock().expect("never poisoned");
        if inner.generation == miss.generation {
            inner.insert(room.room_id.clone(), Entry { record: room.clone(), recent: None });
        }
    }

    /// The room's timeline entries after or before `from`, as [`Recent::read`] answers;
    /// `Ok(None)` when the kept entries do not hold all of the answer, or when the room's
    /// record is not kept (so there is nowhere to keep its entries either). `Err` when the
    /// entries are worth reading from sled and keeping.
    pub fn read_recent(
        &self,
        room_id: &RoomId,
        from: u64,
        forwards: bool,
        limit: usize,
    ) -> Result<Option<Vec<(u64, OwnedEventId)>>, Miss> {
        let inner = self.0.lock().expect("never poisoned");
        match inner.rooms.get(room_id) {
            Some(Entry { recent: Some(recent), .. }) => Ok(recent.read(from, forwards, limit)),
            Some(_) => Err(Miss { generation: inner.generation }),
            None => Ok(None),
        }
    }

    /// Keeps timeline entries read from sled after `miss`, unless a write came in between.
    pub fn keep_recent(&self, miss: Miss, room_id: &RoomId, recent: Recent) {
        let mut inner = self.0.lock().expect("never poisoned");
        if inner.generation == miss.generation
            && let Some(entry) = inner.rooms.get_mut(room_id)
        {
            entry.recent = Some(recent);
        }
    }

    /// Drops a room that no longer exists (a purged one); a reader that went to sled
    /// before must not keep what it read.
    pub fn forget(&self, room_id: &RoomId) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        inner.rooms.remove(room_id);
    }

    /// A record just written to sled, with the timeline entry written with it.
    pub fn put(&self, room: RoomRecord, appended: Option<(u64, OwnedEventId)>) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        let mut recent = inner.rooms.get_mut(&room.room_id).and_then(|entry| entry.recent.take());
        if let (Some(recent), Some((position, event_id))) = (&mut recent, appended) {
            recent.push(position, event_id);
        }
        inner.insert(room.room_id.clone(), Entry { record: room, recent });
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
            last_state_change: 0,
            last_bump: 0,
        }
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache = RoomRecords::default();
        let room = room_id!("!room:example.org");
        let miss = cache.get(room).unwrap_err();
        // The reader read position 1 from sled; meanwhile a write stored position 2.
        cache.put(record(room, 2), None);
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
        cache.put(record(room, 2), None);
        assert_eq!(cache.get(room).ok().unwrap().last_position, 2);
    }

    #[test]
    fn a_full_cache_starts_afresh_and_refuses_older_reads() {
        let cache = RoomRecords::default();
        for i in 0..CAPACITY {
            cache.put(record(&RoomId::parse(format!("!r{i}:example.org")).unwrap(), 1), None);
        }
        let late = room_id!("!late:example.org");
        let miss = cache.get(late).unwrap_err();
        cache.put(record(room_id!("!new:example.org"), 1), None);
        assert!(cache.get(room_id!("!r0:example.org")).is_err(), "the full cache was not cleared");
        cache.keep(miss, &record(late, 1));
        assert!(cache.get(late).is_err());
        assert_eq!(cache.0.lock().unwrap().rooms.len(), 1);
    }

    fn entries(positions: std::ops::RangeInclusive<u64>) -> Vec<(u64, OwnedEventId)> {
        positions.map(|p| (p, OwnedEventId::try_from(format!("$e{p}")).unwrap())).collect()
    }

    fn positions(found: Option<Vec<(u64, OwnedEventId)>>) -> Option<Vec<u64>> {
        found.map(|found| found.into_iter().map(|(p, _)| p).collect())
    }

    #[test]
    fn recent_entries_answer_only_what_they_hold_all_of() {
        // Positions 11..=34: the newest RECENT of a longer timeline.
        let mut newest_first = entries(11..=34);
        newest_first.reverse();
        let recent = Recent::from_newest_first(newest_first);
        assert_eq!(recent.held_after, 10);
        assert_eq!(positions(recent.read(30, true, 10)), Some(vec![31, 32, 33, 34]));
        assert_eq!(positions(recent.read(20, true, 3)), Some(vec![21, 22, 23]));
        assert_eq!(positions(recent.read(5, true, 3)), None, "positions 6..=10 are not held");
        assert_eq!(positions(recent.read(35, false, 3)), Some(vec![34, 33, 32]));
        assert_eq!(positions(recent.read(14, false, 3)), Some(vec![13, 12, 11]));
        assert_eq!(positions(recent.read(14, false, 4)), None, "position 10 is not held");

        // A whole timeline shorter than RECENT answers everything.
        let mut short = entries(1..=3);
        short.reverse();
        let recent = Recent::from_newest_first(short);
        assert_eq!(recent.held_after, 0);
        assert_eq!(positions(recent.read(0, true, 10)), Some(vec![1, 2, 3]));
        assert_eq!(positions(recent.read(3, false, 10)), Some(vec![2, 1]));
    }

    #[test]
    fn writes_extend_the_recent_entries_once_and_keep_the_newest() {
        let cache = RoomRecords::default();
        let room = room_id!("!room:example.org");
        assert!(matches!(cache.read_recent(room, 0, true, 10), Ok(None)), "no record kept to keep them with");
        cache.put(record(room, 2), None);
        let miss = cache.read_recent(room, 0, true, 10).unwrap_err();
        cache.keep_recent(miss, room, Recent::from_newest_first(entries(1..=2).into_iter().rev().collect()));
        // The write of position 3 was in sled before the read above, then put here too.
        let three = entries(3..=3).pop().unwrap();
        cache.put(record(room, 3), Some(three.clone()));
        cache.put(record(room, 3), Some(three));
        assert_eq!(positions(cache.read_recent(room, 0, true, 10).ok().unwrap()), Some(vec![1, 2, 3]));
        for (position, event_id) in entries(4..=(RECENT as u64 + 1)) {
            cache.put(record(room, position), Some((position, event_id)));
        }
        let forwards = positions(cache.read_recent(room, 1, true, 100).ok().unwrap()).unwrap();
        assert_eq!(forwards, (2..=RECENT as u64 + 1).collect::<Vec<_>>());
        assert_eq!(positions(cache.read_recent(room, 0, true, 100).ok().unwrap()), None, "1 was dropped");
        let backwards = positions(cache.read_recent(room, 5, false, 100).ok().unwrap());
        assert_eq!(backwards, None, "1 is older than the entries held");
    }

    #[test]
    fn recent_entries_overtaken_by_a_write_are_not_kept() {
        let cache = RoomRecords::default();
        let room = room_id!("!room:example.org");
        cache.put(record(room, 1), None);
        let miss = cache.read_recent(room, 0, true, 10).unwrap_err();
        // The reader read position 1 from sled; meanwhile a write stored position 2.
        cache.put(record(room, 2), Some(entries(2..=2).pop().unwrap()));
        cache.keep_recent(miss, room, Recent::from_newest_first(entries(1..=1)));
        assert!(cache.read_recent(room, 0, true, 10).is_err());
    }
}
