//! Each room's thread list: its thread roots, most recently active first.
//!
//! Trees:
//! - `thread_activity`: S(room), position of the thread's latest reply → root event id
//! - `thread_latest`: root event id → position of its latest reply (big-endian), which
//!   names the root's `thread_activity` entry to move when a new reply arrives

use ruma::{EventId, OwnedEventId};

use super::{
    Result, Store, be_u64, event_id_from,
    event_writes::{Index, WriteSet},
    rooms::{RoomRecord, room_key, u64_from},
};

impl Store {
    /// Adds to an event's writes the move of its thread's root to the top of the room's
    /// thread list. The caller holds the room's append lock, so the latest position read
    /// here cannot change before the writes are applied.
    pub(super) fn thread_writes(
        &self,
        room: &RoomRecord,
        root: &EventId,
        position: u64,
        writes: &mut WriteSet,
    ) -> Result<()> {
        if let Some(previous) = self.thread_latest.get(root.as_bytes())? {
            let previous = be_u64("thread position", &previous)?;
            writes.remove(Index::ThreadActivity, room_key(room.short, previous));
        }
        writes.insert(Index::ThreadActivity, room_key(room.short, position), root.as_bytes());
        writes.insert(Index::ThreadLatest, root.as_bytes(), position.to_be_bytes());
        Ok(())
    }

    /// The room's thread roots whose latest reply is before position `before`, most recently
    /// active first, each with the position of that reply.
    pub fn threads(
        &self,
        room: &RoomRecord,
        before: u64,
    ) -> impl Iterator<Item = Result<(u64, OwnedEventId)>> + '_ {
        self.thread_activity.range(room_key(room.short, 0)..room_key(room.short, before)).rev().map(|item| {
            let (key, value) = item?;
            Ok((u64_from(&key[8..])?, event_id_from(&value)?))
        })
    }
}
