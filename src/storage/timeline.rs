//! Reading a room's timeline (a range of its event records, see `rooms`) and the
//! relations of an event.

use ruma::{EventId, OwnedEventId};
use serde::Deserialize;

use super::{
    Result, Store, decode, prefix_of,
    room_records::{RECENT, Recent},
    rooms::{Relation, RoomRecord, room_key, u64_from},
};

impl Store {
    /// Event ids of a room's timeline after (forwards) or before (backwards) `from`, which
    /// is a position; at most `limit` of them, with their positions. Answered from the
    /// room's newest entries kept in memory when they hold the answer.
    pub fn timeline(
        &self,
        room: &RoomRecord,
        from: u64,
        forwards: bool,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        match self.room_records.read_recent(&room.room_id, from, forwards, limit) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(miss) => {
                let recent = Recent::from_newest_first(self.scan_timeline(room, u64::MAX, false, RECENT)?);
                let found = recent.read(from, forwards, limit);
                self.room_records.keep_recent(miss, &room.room_id, recent);
                if let Some(found) = found {
                    return Ok(found);
                }
            }
        }
        self.scan_timeline(room, from, forwards, limit)
    }

    /// [`Store::timeline`] from sled.
    fn scan_timeline(
        &self,
        room: &RoomRecord,
        from: u64,
        forwards: bool,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        /// The one field of a record a timeline scan needs.
        #[derive(Deserialize)]
        struct Named {
            event_id: OwnedEventId,
        }
        let parse = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(u64, OwnedEventId)> {
            let (key, value) = item?;
            Ok((u64_from(&key[8..])?, decode::<Named>("event", &value)?.event_id))
        };
        if forwards {
            let start = room_key(room.short, from.saturating_add(1));
            let end = room_key(room.short, u64::MAX);
            self.event_records.range(start..=end).take(limit).map(parse).collect()
        } else {
            let start = room_key(room.short, 0);
            let end = room_key(room.short, from);
            self.event_records.range(start..end).rev().take(limit).map(parse).collect()
        }
    }

    /// Events relating to `parent`, in position order (newest first when `forwards` is
    /// false), strictly after / before the `from` position.
    pub fn relations(&self, parent: &EventId, from: Option<u64>, forwards: bool) -> Result<Vec<Relation>> {
        let prefix = prefix_of(parent.as_bytes());
        let decode_all = |iter: &mut dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>| -> Result<Vec<Relation>> {
            iter.map(|item| decode("relation", &item?.1)).collect()
        };
        let mut start = prefix.clone();
        let mut end = prefix.clone();
        match (forwards, from) {
            (true, Some(from)) => start.extend_from_slice(&from.saturating_add(1).to_be_bytes()),
            (false, Some(from)) => end.extend_from_slice(&from.to_be_bytes()),
            _ => {}
        }
        if from.is_none() || forwards {
            end.extend_from_slice(&u64::MAX.to_be_bytes());
        }
        let mut range = self.relations.range(start..end);
        if forwards { decode_all(&mut range) } else { decode_all(&mut range.rev()) }
    }

    /// The position of the room's newest event (0 for none).
    pub fn latest_position(&self, room: &RoomRecord) -> Result<u64> {
        Ok(self.timeline(room, u64::MAX, false, 1)?.first().map_or(0, |(position, _)| *position))
    }
}
