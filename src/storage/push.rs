//! Notifications, read positions and receipts.
//!
//! Trees:
//! - `event_notifications`: room, `0xff`, position → whom an event notifies (for unread
//!   counts and `/notifications`): recipients grouped by their actions, each group's users
//!   as a set in `notified_sets` (see [`super::notified_sets`])
//! - `read_positions`: user, `0xff`, room → position of the newest event the user has read
//!   (unthreaded receipts); user, `0xff`, room, `0xff`, thread id → the same for threaded
//!   receipts (`main` for the main timeline, else the thread root)
//! - `receipts`: room, `0xff`, user, `0xff`, type, `0xff`, thread → [`ReceiptRecord`]

use std::{borrow::Cow, collections::BTreeMap};

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{
    Result, StorageError, Store, be_u64, composite_key, decode, encode, notified_sets::SetId, positioned,
    prefix_of,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    /// The thread the event is in (`None`: the main timeline).
    pub thread: Option<OwnedEventId>,
    pub actions: JsonValue,
    pub highlight: bool,
    pub ts: u64,
}

/// Whom one event notifies, as push evaluation finds it. Recipients are grouped by their
/// push actions, which most of them share; each group's users are stored once as a set
/// ([`NotifiedSets`](super::notified_sets::NotifiedSets)) that the event's record names.
#[derive(Debug, Clone)]
pub struct EventNotifications {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub ts: u64,
    /// The thread the event is in (`None`: the main timeline), counted apart.
    pub thread: Option<OwnedEventId>,
    groups: Vec<NotifiedGroup>,
}

#[derive(Debug, Clone)]
struct NotifiedGroup {
    highlight: bool,
    actions: JsonValue,
    users: Vec<OwnedUserId>,
}

impl EventNotifications {
    pub fn new(room_id: OwnedRoomId, event_id: OwnedEventId, ts: u64, thread: Option<OwnedEventId>) -> Self {
        Self { room_id, event_id, ts, thread, groups: Vec::new() }
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

    /// Everyone the event notifies.
    pub fn recipients(&self) -> impl Iterator<Item = &OwnedUserId> {
        self.groups.iter().flat_map(|group| &group.users)
    }
}

/// An event's notification record as stored. Records written before recipient sets name
/// their recipients inline: per group (`users`), or, older still, one entry per recipient.
#[derive(Serialize, Deserialize)]
struct StoredNotifications {
    room_id: OwnedRoomId,
    event_id: OwnedEventId,
    ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thread: Option<OwnedEventId>,
    #[serde(default)]
    groups: Vec<StoredGroup>,
    #[serde(default, skip_serializing)]
    recipients: Vec<UngroupedRecipient>,
}

#[derive(Serialize, Deserialize)]
struct StoredGroup {
    highlight: bool,
    actions: JsonValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<SetId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<OwnedUserId>,
}

#[derive(Deserialize)]
struct UngroupedRecipient {
    user: OwnedUserId,
    highlight: bool,
    actions: JsonValue,
}

/// [`StoredNotifications`] read for counting: only who and whether highlighted, borrowed
/// from the record; the actions are skipped, not built.
#[derive(Deserialize)]
struct Counted<'a> {
    #[serde(default, borrow)]
    thread: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    groups: Vec<CountedGroup<'a>>,
    #[serde(default, borrow)]
    recipients: Vec<CountedRecipient<'a>>,
}

#[derive(Deserialize)]
struct CountedGroup<'a> {
    highlight: bool,
    #[serde(default)]
    set: Option<SetId>,
    #[serde(default, borrow)]
    users: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CountedRecipient<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
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

/// Unread counts of one user in one room or thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    pub notifications: u64,
    pub highlights: u64,
}

impl UnreadCounts {
    fn add(&mut self, other: UnreadCounts) {
        self.notifications += other.notifications;
        self.highlights += other.highlights;
    }
}

/// Unread counts of one user in one room, the main timeline apart from each thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadedCounts {
    pub main: UnreadCounts,
    /// Only threads with something unread.
    pub threads: BTreeMap<OwnedEventId, UnreadCounts>,
}

impl ThreadedCounts {
    /// The counts of the whole room, threads included.
    pub fn total(&self) -> UnreadCounts {
        let mut total = self.main;
        self.threads.values().for_each(|counts| total.add(*counts));
        total
    }

    pub fn add(&mut self, other: &ThreadedCounts) {
        self.main.add(other.main);
        for (thread, counts) in &other.threads {
            self.threads.entry(thread.clone()).or_default().add(*counts);
        }
    }
}

/// How far a user has read in one room: by unthreaded receipts, and by threaded ones per
/// thread (the thread root, or `main` for the main timeline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadMarks {
    pub unthreaded: u64,
    pub threads: BTreeMap<String, u64>,
}

/// The thread id of the main timeline in threaded receipts.
pub const MAIN_THREAD: &str = "main";

impl ReadMarks {
    /// The position up to which the events of `thread` (`None`: the main timeline) are
    /// read: an unthreaded receipt reads every thread, a threaded one only its own.
    pub fn read_upto(&self, thread: Option<&str>) -> u64 {
        let threaded = self.threads.get(thread.unwrap_or(MAIN_THREAD)).copied().unwrap_or(0);
        self.unthreaded.max(threaded)
    }
}

fn be(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

impl Store {
    /// Records whom the event at `position` notifies: one record per event, whatever the
    /// number of members (one per member and event made sled copy a node per member at
    /// every send), naming each group's recipients by their stored set. Not awaited
    /// durable: the event's own flush, awaited next, covers it.
    pub fn stage_notifications(&self, position: u64, notified: &EventNotifications) -> Result<()> {
        if notified.is_empty() {
            return Ok(());
        }
        let groups = notified
            .groups
            .iter()
            .map(|group| {
                Ok(StoredGroup {
                    highlight: group.highlight,
                    actions: group.actions.clone(),
                    set: Some(self.notified_sets.put(&group.users)?),
                    users: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        let record = StoredNotifications {
            room_id: notified.room_id.clone(),
            event_id: notified.event_id.clone(),
            ts: notified.ts,
            thread: notified.thread.clone(),
            groups,
            recipients: Vec::new(),
        };
        let key = composite_key(&[notified.room_id.as_bytes(), &be(position)]);
        self.event_notifications.insert(key, encode(&record))?;
        Ok(())
    }

    /// Whether a group of a notification record holds `user`: by its set, or by the list
    /// that records written before sets carry.
    fn group_holds<'a>(
        &self,
        set: Option<SetId>,
        mut listed: impl Iterator<Item = &'a str>,
        user: &UserId,
    ) -> Result<bool> {
        match set {
            Some(set) => self.notified_sets.contains(set, user),
            None => Ok(listed.any(|listed| listed == user.as_str())),
        }
    }

    /// Notifying events for `user` in the room at positions `after < p <= upto` that `marks`
    /// leave unread, by thread.
    pub fn count_notifications(
        &self,
        user: &UserId,
        room: &RoomId,
        marks: &ReadMarks,
        after: u64,
        upto: u64,
    ) -> Result<ThreadedCounts> {
        let start = composite_key(&[room.as_bytes(), &be(after.saturating_add(1))]);
        let end = composite_key(&[room.as_bytes(), &be(upto.saturating_add(1))]);
        let mut counts = ThreadedCounts::default();
        if start >= end {
            return Ok(counts);
        }
        for item in self.event_notifications.range(start..end) {
            let (key, value) = item?;
            let position = be_u64("notification position", &key[key.len() - 8..])?;
            let event: Counted<'_> = serde_json::from_slice(&value)
                .map_err(|e| StorageError::Corrupt(format!("notifications: {e}")))?;
            if position <= marks.read_upto(event.thread.as_deref()) {
                continue;
            }
            let mut highlight = None;
            for group in &event.groups {
                if self.group_holds(group.set, group.users.iter().map(|u| &**u), user)? {
                    highlight = Some(group.highlight);
                    break;
                }
            }
            let highlight = highlight
                .or_else(|| event.recipients.iter().find(|r| r.user == user.as_str()).map(|r| r.highlight));
            let Some(highlight) = highlight else { continue };
            let bucket = match event.thread.as_deref().map(EventId::parse) {
                Some(Ok(thread)) => counts.threads.entry(thread).or_default(),
                _ => &mut counts.main,
            };
            bucket.notifications += 1;
            bucket.highlights += u64::from(highlight);
        }
        Ok(counts)
    }

    /// Where `user` has read up to in the room, by unthreaded and threaded receipts.
    pub fn read_marks(&self, user: &UserId, room: &RoomId) -> Result<ReadMarks> {
        let room_key = composite_key(&[user.as_bytes(), room.as_bytes()]);
        let unthreaded = match self.read_positions.get(&room_key)? {
            Some(bytes) => be_u64("read position", &bytes)?,
            None => 0,
        };
        let mut threads = BTreeMap::new();
        let prefix = prefix_of(&room_key);
        for item in self.read_positions.scan_prefix(&prefix) {
            let (key, value) = item?;
            let thread = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            threads.insert(thread, be_u64("read position", &value)?);
        }
        Ok(ReadMarks { unthreaded, threads })
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
            found.extend(self.notifications_in(user, room, 0, before, true, limit)?);
        }
        found.sort_by_key(|(position, _)| std::cmp::Reverse(*position));
        found.truncate(limit);
        Ok(found)
    }

    /// The user's notifications in `rooms` at positions `after < p <= upto`, oldest first:
    /// what a pusher whose delivery got to `after` has still to deliver.
    pub fn notifications_after(
        &self,
        user: &UserId,
        rooms: &[OwnedRoomId],
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, NotificationRecord)>> {
        let mut found = Vec::new();
        for room in rooms {
            let start = after.saturating_add(1);
            found.extend(self.notifications_in(user, room, start, upto.saturating_add(1), false, limit)?);
        }
        found.sort_by_key(|(position, _)| *position);
        found.truncate(limit);
        Ok(found)
    }

    /// The notification the event at `position` in the room is for `user`, if it is one.
    pub fn notification_at(
        &self,
        user: &UserId,
        room: &RoomId,
        position: u64,
    ) -> Result<Option<NotificationRecord>> {
        let found = self.notifications_in(user, room, position, position.saturating_add(1), false, 1)?;
        Ok(found.into_iter().next().map(|(_, record)| record))
    }

    /// Up to `limit` of the user's notifications in the room at positions `from <= p < to`,
    /// newest first when `newest_first`.
    fn notifications_in(
        &self,
        user: &UserId,
        room: &RoomId,
        from: u64,
        to: u64,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(u64, NotificationRecord)>> {
        let start = composite_key(&[room.as_bytes(), &be(from)]);
        let end = composite_key(&[room.as_bytes(), &be(to)]);
        if start >= end {
            return Ok(Vec::new());
        }
        let range = self.event_notifications.range(start..end);
        let entries: Box<dyn Iterator<Item = _>> =
            if newest_first { Box::new(range.rev()) } else { Box::new(range) };
        let mut found = Vec::new();
        for item in entries {
            let (position, event): (u64, StoredNotifications) = positioned("notifications", item)?;
            let Some((highlight, actions)) = self.notified_as(event.groups, event.recipients, user)? else {
                continue;
            };
            found.push((
                position,
                NotificationRecord {
                    room_id: event.room_id,
                    event_id: event.event_id,
                    thread: event.thread,
                    actions,
                    highlight,
                    ts: event.ts,
                },
            ));
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    /// Whether and how a notification record notifies `user`: the highlight flag and actions.
    fn notified_as(
        &self,
        groups: Vec<StoredGroup>,
        recipients: Vec<UngroupedRecipient>,
        user: &UserId,
    ) -> Result<Option<(bool, JsonValue)>> {
        for group in groups {
            if self.group_holds(group.set, group.users.iter().map(|u| u.as_str()), user)? {
                return Ok(Some((group.highlight, group.actions)));
            }
        }
        Ok(recipients.into_iter().find(|r| r.user == user).map(|r| (r.highlight, r.actions)))
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
        // Before the position becomes visible: a reader that sees it must not be told
        // the room has nothing newer.
        self.newest_receipts.raise(room, record.position);
        if record.receipt_type == "m.read" || record.receipt_type == "m.read.private" {
            let mut parts = vec![record.user_id.as_bytes(), room.as_bytes()];
            if !record.thread_id.is_empty() {
                parts.push(record.thread_id.as_bytes());
            }
            let key = composite_key(&parts);
            self.read_positions.fetch_and_update(key, |old| {
                let old = old.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
                Some(be(old.max(event_position)).to_vec())
            })?;
        }
        self.durable().await?;
        Ok(guard.position())
    }

    /// The position of the room's newest receipt (0 for none). Kept in memory after the
    /// first read, so syncs pass over rooms without new receipts without reading them.
    pub fn newest_receipt(&self, room: &RoomId) -> Result<u64> {
        if let Some(position) = self.newest_receipts.get(room) {
            return Ok(position);
        }
        let newest = self.receipts(room)?.iter().map(|receipt| receipt.position).max().unwrap_or(0);
        // A receipt written meanwhile raised the entry already; raising never lowers it.
        self.newest_receipts.raise(room, newest);
        Ok(self.newest_receipts.get(room).unwrap_or(newest))
    }

    /// Every receipt in a room.
    pub fn receipts(&self, room: &RoomId) -> Result<Vec<ReceiptRecord>> {
        self.receipts
            .scan_prefix(prefix_of(room.as_bytes()))
            .values()
            .map(|v| decode("receipt", &v?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedEventId, owned_event_id, owned_room_id, room_id, user_id};
    use serde_json::json;

    use super::*;
    use crate::storage::scratch_dir;

    fn highlight() -> JsonValue {
        json!(["notify", {"set_tweak": "highlight"}])
    }

    /// Counts and `/notifications` entries of @a, @b (highlighted) and @c (not notified) for
    /// two events in !r:x at positions 1 and 2.
    fn assert_reads_back(store: &Store) {
        let room = room_id!("!r:x");
        let marks = ReadMarks::default();
        let count = |user: &str| {
            store.count_notifications(user.try_into().unwrap(), room, &marks, 0, 2).unwrap().total()
        };
        assert_eq!(count("@a:x"), UnreadCounts { notifications: 2, highlights: 0 });
        assert_eq!(count("@b:x"), UnreadCounts { notifications: 2, highlights: 2 });
        assert_eq!(count("@c:x"), UnreadCounts::default());
        let rooms = [room.to_owned()];
        let found = store.notifications(user_id!("@b:x"), &rooms, u64::MAX, 10).unwrap();
        assert_eq!(found.iter().map(|(position, _)| *position).collect::<Vec<_>>(), [2, 1]);
        assert!(found.iter().all(|(_, record)| record.highlight && record.actions == highlight()));
        assert!(store.notifications(user_id!("@c:x"), &rooms, u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn recipients_are_stored_once_as_sets_of_users() {
        let store = Store::open(&scratch_dir("notifications-sets"), 8).unwrap();
        for (position, event) in [(1, owned_event_id!("$1")), (2, owned_event_id!("$2"))] {
            let mut notified = EventNotifications::new(owned_room_id!("!r:x"), event, 1, None);
            notified.add(user_id!("@a:x").to_owned(), false, json!(["notify"]));
            notified.add(user_id!("@b:x").to_owned(), true, highlight());
            store.stage_notifications(position, &notified).unwrap();
        }
        // One set per group, shared by both events; the records name no user.
        assert_eq!(store.db.open_tree("notified_sets").unwrap().len(), 2);
        for item in store.event_notifications.iter() {
            let (_, record) = item.unwrap();
            assert!(!String::from_utf8_lossy(&record).contains("@a:x"));
        }
        assert_reads_back(&store);
    }

    /// A threaded receipt reads its own thread only; an unthreaded one reads them all.
    #[test]
    fn threaded_receipts_read_their_own_thread() {
        let store = Store::open(&scratch_dir("notifications-threads"), 8).unwrap();
        let (room, user) = (room_id!("!r:x"), user_id!("@a:x"));
        let root = owned_event_id!("$root");
        // Positions 1 and 3 in the main timeline, 2 and 4 in the thread.
        for position in 1..=4u64 {
            let thread = (position % 2 == 0).then(|| root.clone());
            let event = OwnedEventId::try_from(format!("${position}")).unwrap();
            let mut notified = EventNotifications::new(room.to_owned(), event, 1, thread);
            notified.add(user.to_owned(), false, json!(["notify"]));
            store.stage_notifications(position, &notified).unwrap();
        }
        let counts = |marks: &ReadMarks| {
            let counts = store.count_notifications(user, room, marks, 0, 4).unwrap();
            (counts.main.notifications, counts.threads.get(&root).map_or(0, |c| c.notifications))
        };
        assert_eq!(counts(&ReadMarks::default()), (2, 2));
        let main_read = ReadMarks { unthreaded: 0, threads: [(MAIN_THREAD.to_owned(), 3)].into() };
        assert_eq!(counts(&main_read), (0, 2), "reading the main timeline left the thread unread");
        let thread_read = ReadMarks { unthreaded: 0, threads: [(root.to_string(), 2)].into() };
        assert_eq!(counts(&thread_read), (2, 1));
        assert_eq!(counts(&ReadMarks { unthreaded: 3, threads: Default::default() }), (0, 1));
    }

    /// Records written before recipient sets keep their counts and `/notifications` entries.
    #[test]
    fn records_that_list_their_recipients_still_read() {
        let store = Store::open(&scratch_dir("notifications-listed"), 8).unwrap();
        let grouped = json!({
            "room_id": "!r:x", "event_id": "$1", "ts": 1,
            "groups": [
                {"highlight": false, "actions": ["notify"], "users": ["@a:x"]},
                {"highlight": true, "actions": highlight(), "users": ["@b:x"]},
            ],
        });
        let ungrouped = json!({
            "room_id": "!r:x", "event_id": "$2", "ts": 1,
            "recipients": [
                {"user": "@a:x", "highlight": false, "actions": ["notify"]},
                {"user": "@b:x", "highlight": true, "actions": highlight()},
            ],
        });
        for (position, record) in [(1, grouped), (2, ungrouped)] {
            let key = composite_key(&[b"!r:x", &be(position)]);
            store.event_notifications.insert(key, encode(&record)).unwrap();
        }
        assert_reads_back(&store);
    }
}

/// The newest receipt position per room, for [`Store::newest_receipt`].
#[derive(Default)]
pub(super) struct NewestReceipts(std::sync::Mutex<std::collections::HashMap<ruma::OwnedRoomId, u64>>);

impl NewestReceipts {
    fn get(&self, room: &RoomId) -> Option<u64> {
        self.0.lock().expect("never poisoned").get(room).copied()
    }

    fn raise(&self, room: &RoomId, position: u64) {
        let mut rooms = self.0.lock().expect("never poisoned");
        let newest = rooms.entry(room.to_owned()).or_default();
        *newest = (*newest).max(position);
    }
}
