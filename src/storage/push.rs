//! Notifications, read positions, receipts and pushers.
//!
//! Trees:
//! - `event_notifications`: room, `0xff`, position → [`EventNotifications`]: whom an event
//!   notifies (for unread counts and `/notifications`)
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

/// Whom one event notifies, with each recipient's push actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventNotifications {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub ts: u64,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipient {
    pub user: OwnedUserId,
    pub highlight: bool,
    pub actions: JsonValue,
}

/// [`EventNotifications`] read for counting: `actions` and the rest are skipped.
#[derive(Deserialize)]
struct Recipients {
    recipients: Vec<CountedRecipient>,
}

#[derive(Deserialize)]
struct CountedRecipient {
    user: OwnedUserId,
    highlight: bool,
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
    /// Records whom the event at `position` notifies: one record per event, whatever the
    /// number of members (one per member and event made sled copy a node per member at
    /// every send). Not awaited durable: the event's own flush, awaited next, covers it.
    pub fn stage_notifications(&self, position: u64, notified: &EventNotifications) -> Result<()> {
        if notified.recipients.is_empty() {
            return Ok(());
        }
        let key = composite_key(&[notified.room_id.as_bytes(), &be(position)]);
        self.event_notifications.insert(key, encode(notified))?;
        Ok(())
    }

    /// Notifying events for `user` in the room at positions `after < p <= upto`.
    pub fn count_notifications(
        &self,
        user: &UserId,
        room: &RoomId,
        after: u64,
        upto: u64,
    ) -> Result<UnreadCounts> {
        let start = composite_key(&[room.as_bytes(), &be(after.saturating_add(1))]);
        let end = composite_key(&[room.as_bytes(), &be(upto.saturating_add(1))]);
        let mut counts = UnreadCounts::default();
        if start >= end {
            return Ok(counts);
        }
        for item in self.event_notifications.range(start..end) {
            let (_, value) = item?;
            // Only who and whether highlighted: the actions are skipped, not built.
            let event: Recipients = decode("notifications", &value)?;
            if let Some(recipient) = event.recipients.iter().find(|r| r.user == user) {
                counts.notifications += 1;
                counts.highlights += u64::from(recipient.highlight);
            }
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

    /// The user's notifications in `rooms`, newest first, before position `before`.
    pub fn notifications(
        &self,
        user: &UserId,
        rooms: &[OwnedRoomId],
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NotificationRecord)>> {
        let mut found = Vec::new();
        for room in rooms {
            let start = composite_key(&[room.as_bytes(), &be(0)]);
            let end = composite_key(&[room.as_bytes(), &be(before)]);
            let mut in_room = 0;
            for item in self.event_notifications.range(start..end).rev() {
                let (position, event): (u64, EventNotifications) = positioned("notifications", item)?;
                let Some(recipient) = event.recipients.into_iter().find(|r| r.user == user) else { continue };
                found.push((
                    position,
                    NotificationRecord {
                        room_id: event.room_id,
                        event_id: event.event_id,
                        actions: recipient.actions,
                        highlight: recipient.highlight,
                        ts: event.ts,
                    },
                ));
                in_room += 1;
                if in_room == limit {
                    break;
                }
            }
        }
        found.sort_by_key(|(position, _)| std::cmp::Reverse(*position));
        found.truncate(limit);
        Ok(found)
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
