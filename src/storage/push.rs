//! Notifications, read positions, receipts and pushers.
//!
//! Trees:
//! - `event_notifications`: room, `0xff`, position → [`EventNotifications`]: whom an event
//!   notifies (for unread counts and `/notifications`), recipients grouped by their actions
//! - `read_positions`: user, `0xff`, room → position of the newest event the user has read
//! - `receipts`: room, `0xff`, user, `0xff`, type, `0xff`, thread → [`ReceiptRecord`]
//! - `pushers`: user, `0xff`, app id, `0xff`, push key → the pusher's JSON

use std::borrow::Cow;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, StorageError, Store, be_u64, composite_key, decode, encode, positioned, prefix_of};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub actions: JsonValue,
    pub highlight: bool,
    pub ts: u64,
}

/// Whom one event notifies. Recipients are grouped by their push actions, which most of
/// them share: with the actions repeated per recipient, this record was the largest write
/// of a send to a busy room.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredNotifications")]
pub struct EventNotifications {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub ts: u64,
    groups: Vec<NotifiedGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NotifiedGroup {
    highlight: bool,
    actions: JsonValue,
    users: Vec<OwnedUserId>,
}

impl EventNotifications {
    pub fn new(room_id: OwnedRoomId, event_id: OwnedEventId, ts: u64) -> Self {
        Self { room_id, event_id, ts, groups: Vec::new() }
    }

    /// Adds a recipient, with the push actions their rules chose.
    pub fn add(&mut self, user: OwnedUserId, highlight: bool, actions: JsonValue) {
        match self.groups.iter_mut().find(|g| g.highlight == highlight && g.actions == actions) {
            Some(group) => group.users.push(user),
            None => self.groups.push(NotifiedGroup { highlight, actions, users: vec![user] }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn group_of(&self, user: &UserId) -> Option<&NotifiedGroup> {
        self.groups.iter().find(|group| group.users.iter().any(|u| u == user))
    }
}

/// The record as stored: grouped, or (written before grouping) one entry per recipient.
#[derive(Deserialize)]
struct StoredNotifications {
    room_id: OwnedRoomId,
    event_id: OwnedEventId,
    ts: u64,
    #[serde(default)]
    groups: Vec<NotifiedGroup>,
    #[serde(default)]
    recipients: Vec<UngroupedRecipient>,
}

#[derive(Deserialize)]
struct UngroupedRecipient {
    user: OwnedUserId,
    highlight: bool,
    actions: JsonValue,
}

impl From<StoredNotifications> for EventNotifications {
    fn from(stored: StoredNotifications) -> Self {
        let mut notified =
            Self { room_id: stored.room_id, event_id: stored.event_id, ts: stored.ts, groups: stored.groups };
        for recipient in stored.recipients {
            notified.add(recipient.user, recipient.highlight, recipient.actions);
        }
        notified
    }
}

/// [`EventNotifications`] read for counting: only who and whether highlighted, borrowed
/// from the record; the actions are skipped, not built.
#[derive(Deserialize)]
struct Counted<'a> {
    #[serde(default, borrow)]
    groups: Vec<CountedGroup<'a>>,
    #[serde(default, borrow)]
    recipients: Vec<CountedRecipient<'a>>,
}

#[derive(Deserialize)]
struct CountedGroup<'a> {
    highlight: bool,
    #[serde(borrow)]
    users: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CountedRecipient<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    highlight: bool,
}

impl Counted<'_> {
    /// Whether the event notifies `user`, and if so whether it highlights.
    fn highlight_for(&self, user: &str) -> Option<bool> {
        let grouped = self.groups.iter().find(|g| g.users.iter().any(|u| u == user)).map(|g| g.highlight);
        grouped.or_else(|| self.recipients.iter().find(|r| r.user == user).map(|r| r.highlight))
    }
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
        if notified.is_empty() {
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
            let event: Counted<'_> = serde_json::from_slice(&value)
                .map_err(|e| StorageError::Corrupt(format!("notifications: {e}")))?;
            if let Some(highlight) = event.highlight_for(user.as_str()) {
                counts.notifications += 1;
                counts.highlights += u64::from(highlight);
            }
        }
        Ok(counts)
    }

    pub fn read_position(&self, user: &UserId, room: &RoomId) -> Result<u64> {
        match self.read_positions.get(composite_key(&[user.as_bytes(), room.as_bytes()]))? {
            Some(bytes) => be_u64("read position", &bytes),
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
                let Some(group) = event.group_of(user) else { continue };
                let (actions, highlight) = (group.actions.clone(), group.highlight);
                found.push((
                    position,
                    NotificationRecord {
                        room_id: event.room_id,
                        event_id: event.event_id,
                        actions,
                        highlight,
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

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id, user_id};
    use serde_json::json;

    use super::*;

    fn counted(bytes: &[u8]) -> Counted<'_> {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn recipients_are_grouped_by_their_actions() {
        let mut notified = EventNotifications::new(owned_room_id!("!r:x"), owned_event_id!("$e"), 1);
        let highlight = json!(["notify", {"set_tweak": "highlight"}]);
        notified.add(user_id!("@a:x").to_owned(), false, json!(["notify"]));
        notified.add(user_id!("@b:x").to_owned(), true, highlight.clone());
        notified.add(user_id!("@c:x").to_owned(), false, json!(["notify"]));
        let bytes = encode(&notified);
        let stored: JsonValue = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored["groups"].as_array().unwrap().len(), 2);
        let read: EventNotifications = decode("notifications", &bytes).unwrap();
        assert_eq!(read.group_of(user_id!("@b:x")).unwrap().actions, highlight);
        assert_eq!(counted(&bytes).highlight_for("@c:x"), Some(false));
        assert_eq!(counted(&bytes).highlight_for("@b:x"), Some(true));
        assert_eq!(counted(&bytes).highlight_for("@d:x"), None);
    }

    /// Records written before grouping keep their counts and `/notifications` entries.
    #[test]
    fn ungrouped_records_still_read() {
        let bytes = serde_json::to_vec(&json!({
            "room_id": "!r:x",
            "event_id": "$e",
            "ts": 1,
            "recipients": [
                {"user": "@a:x", "highlight": false, "actions": ["notify"]},
                {"user": "@b:x", "highlight": true, "actions": ["notify", {"set_tweak": "highlight"}]},
                {"user": "@c:x", "highlight": false, "actions": ["notify"]},
            ],
        }))
        .unwrap();
        let read: EventNotifications = decode("notifications", &bytes).unwrap();
        assert_eq!(read.groups.len(), 2);
        assert!(read.group_of(user_id!("@c:x")).is_some_and(|group| !group.highlight));
        assert_eq!(counted(&bytes).highlight_for("@b:x"), Some(true));
        assert_eq!(counted(&bytes).highlight_for("@d:x"), None);
    }
}
