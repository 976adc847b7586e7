//! Notifications, read positions, receipts and pushers.
//!
//! Trees:
//! - `notifications`: user, `0xff`, position → [`NotificationRecord`] (for `/notifications`)
//! - `room_notifications`: user, `0xff`, room, `0xff`, position → highlight flag (for counts)
//! - `read_positions`: user, `0xff`, room → position of the newest event the user has read
//! - `receipts`: room, `0xff`, user, `0xff`, type, `0xff`, thread → [`ReceiptRecord`]
//! - `pushers`: user, `0xff`, app id, `0xff`, push key → the pusher's JSON

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, StorageError, Store, composite_key, decode, encode, positioned, prefix_of};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub actions: JsonValue,
    pub highlight: bool,
    pub ts: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub user_id: OwnedUserId,
    pub receipt_type: String,
    /// Empty for an unthreaded receipt.
    pub thread_id: String,
    pub event_id: OwnedEventId,
    pub ts: u64,
    pub position: u64,
}

/// Unread counts of one user in one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    pub notifications: u64,
    pub highlights: u64,
}

fn be(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

impl Store {
    /// Records that `event` (at `position`) notifies each of `users`, with its actions.
    /// Records the notifications an event causes. Not awaited durable: the event's own
    /// flush, which the caller awaits next, covers them.
    pub fn stage_notifications(
        &self,
        position: u64,
        users: &[(OwnedUserId, NotificationRecord)],
    ) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        // Batches, not a transaction: a transaction reads every key it writes, which for one
        // entry per member per event was most of the cost of a send. The two trees need no
        // atomicity between them: the same flush makes both durable, and the entries are only
        // read once the event is visible, after that flush.
        let mut all = sled::Batch::default();
        let mut by_room = sled::Batch::default();
        for (user, record) in users {
            all.insert(composite_key(&[user.as_bytes(), &be(position)]), encode(record));
            by_room.insert(
                composite_key(&[user.as_bytes(), record.room_id.as_bytes(), &be(position)]),
                &[u8::from(record.highlight)],
            );
        }
        self.notifications.apply_batch(all)?;
        self.room_notifications.apply_batch(by_room)?;
        Ok(())
    }

    /// Notifying events after the user's read position in the room (and after `after`), up
    /// to `upto`.
    pub fn unread_counts(&self, user: &UserId, room: &RoomId, after: u64, upto: u64) -> Result<UnreadCounts> {
        let read = self.read_position(user, room)?.max(after);
        let start = composite_key(&[user.as_bytes(), room.as_bytes(), &be(read.saturating_add(1))]);
        let end = composite_key(&[user.as_bytes(), room.as_bytes(), &be(upto.saturating_add(1))]);
        if start >= end {
            return Ok(UnreadCounts::default());
        }
        let mut counts = UnreadCounts::default();
        for item in self.room_notifications.range(start..end) {
            let (_, highlight) = item?;
            counts.notifications += 1;
            counts.highlights += u64::from(highlight.first() == Some(&1));
        }
        Ok(counts)
    }

    pub fn read_position(&self, user: &UserId, room: &RoomId) -> Result<u64> {
        match self.read_positions.get(composite_key(&[user.as_bytes(), room.as_bytes()]))? {
            Some(bytes) => bytes
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("read position".to_owned())),
            None => Ok(0),
        }
    }

    /// The user's notifications, newest first, before position `before`.
    pub fn notifications(
        &self,
        user: &UserId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NotificationRecord)>> {
        let start = composite_key(&[user.as_bytes(), &be(0)]);
        let end = composite_key(&[user.as_bytes(), &be(before)]);
        self.notifications
            .range(start..end)
            .rev()
            .take(limit)
            .map(|item| positioned("notification", item))
            .collect()
    }

    /// Stores a receipt; for read receipts also moves the user's read position forwards.
    /// Returns the stream position of the change.
    pub async fn set_receipt(
        &self,
        room: &RoomId,
        mut record: ReceiptRecord,
        event_position: u64,
    ) -> Result<u64> {
        let guard = self.begin_position()?;
        record.position = guard.position();
        let key = composite_key(&[
            room.as_bytes(),
            record.user_id.as_bytes(),
            record.receipt_type.as_bytes(),
            record.thread_id.as_bytes(),
        ]);
        self.receipts.insert(key, encode(&record))?;
        if record.receipt_type == "m.read" || record.receipt_type == "m.read.private" {
            let key = composite_key(&[record.user_id.as_bytes(), room.as_bytes()]);
            self.read_positions.fetch_and_update(key, |old| {
                let old = old.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
                Some(be(old.max(event_position)).to_vec())
            })?;
        }
        self.durable().await?;
        Ok(guard.position())
    }

    /// Every receipt in a room.
    pub fn receipts(&self, room: &RoomId) -> Result<Vec<ReceiptRecord>> {
        self.receipts
            .scan_prefix(prefix_of(room.as_bytes()))
            .values()
            .map(|v| decode("receipt", &v?))
            .collect()
    }

    pub async fn set_pusher(
        &self,
        user: &UserId,
        app_id: &str,
        pushkey: &str,
        pusher: Option<&JsonValue>,
    ) -> Result<()> {
        let key = composite_key(&[user.as_bytes(), app_id.as_bytes(), pushkey.as_bytes()]);
        match pusher {
            Some(pusher) => self.pushers.insert(key, encode(pusher))?,
            None => self.pushers.remove(key)?,
        };
        self.durable().await
    }

    pub fn pushers(&self, user: &UserId) -> Result<Vec<JsonValue>> {
        self.pushers.scan_prefix(prefix_of(user.as_bytes())).values().map(|v| decode("pusher", &v?)).collect()
    }
}
