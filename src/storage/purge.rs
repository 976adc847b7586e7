//! Purging a room: its record, memberships, events (timeline and the outliers its events
//! name), state, snapshots, relations, threads, receipts, read positions, notifications,
//! aliases and directory entry, removed from every tree that holds them.
//!
//! The order is what a crash in the middle must leave readable: the room record and the
//! memberships go first (from then on nobody finds the room, nor lists it among their
//! rooms), an event's `event_keys` entry before its record (a key without a record would be
//! a corrupt database; a record without a key is unreachable). What a crash leaves behind
//! is unreachable and only takes space. Stream positions are global, so the purged
//! room's positions simply have no events any more.
//!
//! Blocked rooms live here too. Tree `blocked_rooms`: room id → [`BlockedRoom`].

use std::collections::BTreeSet;

use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};

use super::Tree;
use super::{
    Result, Store, composite_key, decode, encode, prefix_of,
    rooms::{Snapshot, StoredEvent},
};

/// Who blocked a room, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockedRoom {
    /// The administrator who blocked it; `None` when it was the CLI.
    pub blocked_by: Option<OwnedUserId>,
    pub ts: u64,
}

impl Store {
    /// Removes every trace of a room; returns the ids of the events removed, for caches
    /// above the store. Nothing happens for a room this server does not have.
    pub async fn purge_room(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let Some(room) = self.room(room_id)? else { return Ok(Vec::new()) };
        self.rooms.remove(room_id.as_bytes())?;
        self.room_records.forget(room_id);

        let room_prefix = prefix_of(room_id.as_bytes());
        let members: Vec<OwnedUserId> =
            self.membership_entries(room_id)?.into_iter().map(|(u, _)| u).collect();
        for user in &members {
            let user_room = composite_key(&[user.as_bytes(), room_id.as_bytes()]);
            self.user_rooms.remove(&user_room)?;
            self.remote_invites.remove(&user_room)?;
            self.read_positions.remove(&user_room)?;
            remove_prefix(&self.read_positions, &prefix_of(&user_room))?;
        }
        for tree in [&self.memberships, &self.receipts, &self.event_notifications] {
            remove_prefix(tree, &room_prefix)?;
        }
        for item in self.room_aliases.scan_prefix(&room_prefix).keys() {
            let key = item?;
            self.aliases.remove(&key[room_prefix.len()..])?;
            self.room_aliases.remove(key)?;
        }
        self.public_rooms.remove(room_id.as_bytes())?;

        let short = room.short.to_be_bytes();
        let mut snapshots: BTreeSet<u64> = room.snapshot.into_iter().collect();
        let mut removed = Vec::new();
        // The room's timeline, then the outliers its events name (the state and auth events
        // another server sent when this one joined), following their own auth events.
        let mut named: Vec<OwnedEventId> = Vec::new();
        for item in self.event_records.scan_prefix(short) {
            let (key, bytes) = item?;
            let stored: StoredEvent = decode("event", &bytes)?;
            named.extend(referenced_events(&stored));
            snapshots.extend(stored.state_before);
            self.unindex_event(&stored.pdu_json(), room.short, stored.position)?;
            self.forget_event(&stored.event_id, &key)?;
            removed.push(stored.event_id);
        }
        let mut seen: BTreeSet<OwnedEventId> = removed.iter().cloned().collect();
        while let Some(event_id) = named.pop() {
            if !seen.insert(event_id.clone()) {
                continue;
            }
            let Some(key) = self.event_keys.get(event_id.as_bytes())? else { continue };
            let Some(bytes) = self.event_records.get(&key)? else { continue };
            let stored: StoredEvent = decode("event", &bytes)?;
            // An outlier of this room; a timeline event of another room is left alone.
            if stored.room_id != room_id || key.len() != 8 {
                continue;
            }
            named.extend(referenced_events(&stored));
            self.forget_event(&event_id, &key)?;
            removed.push(event_id);
        }

        remove_prefix(&self.room_state, &short)?;
        for item in self.thread_activity.scan_prefix(short) {
            let (key, root) = item?;
            self.thread_latest.remove(root)?;
            self.thread_activity.remove(key)?;
        }
        // Each snapshot's chain of parents is the room's own.
        let mut pending: Vec<u64> = snapshots.into_iter().collect();
        while let Some(id) = pending.pop() {
            if let Some(bytes) = self.snapshots.remove(id.to_be_bytes())? {
                let snapshot: Snapshot = decode("snapshot", &bytes)?;
                pending.extend(snapshot.parent);
            }
        }
        self.durable().await?;
        Ok(removed)
    }

    /// Removes an event's id, its record and the relations naming it as parent.
    pub(super) fn forget_event(&self, event_id: &EventId, record_key: &[u8]) -> Result<()> {
        self.event_keys.remove(event_id.as_bytes())?;
        self.event_records.remove(record_key)?;
        remove_prefix(&self.relations, &prefix_of(event_id.as_bytes()))
    }

    /// Blocks (`Some`) or unblocks (`None`) a room, known here or not.
    pub async fn set_room_blocked(&self, room_id: &RoomId, blocked: Option<&BlockedRoom>) -> Result<()> {
        match blocked {
            Some(record) => self.blocked_rooms.insert(room_id.as_bytes(), encode(record))?,
            None => self.blocked_rooms.remove(room_id.as_bytes())?,
        };
        self.durable().await
    }

    pub fn room_blocked(&self, room_id: &RoomId) -> Result<Option<BlockedRoom>> {
        self.blocked_rooms.get(room_id.as_bytes())?.map(|b| decode("blocked room", &b)).transpose()
    }
}

/// The events a stored event names: its auth events and its parents.
fn referenced_events(stored: &StoredEvent) -> Vec<OwnedEventId> {
    #[derive(Deserialize)]
    struct Links {
        #[serde(default)]
        auth_events: Vec<OwnedEventId>,
        #[serde(default)]
        prev_events: Vec<OwnedEventId>,
    }
    serde_json::from_str::<Links>(stored.pdu.get())
        .map(|links| links.auth_events.into_iter().chain(links.prev_events).collect())
        .unwrap_or_default()
}

fn remove_prefix(tree: &Tree, prefix: &[u8]) -> Result<()> {
    for key in tree.scan_prefix(prefix).keys() {
        tree.remove(key?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{EventId, RoomVersionId, UserId, event_id, room_alias_id, room_id, user_id};
    use serde_json::json;

    use super::*;
    use crate::storage::{AliasRecord, NewEvent, NewRelation, Placement, scratch_dir};

    fn event<'a>(
        event_id: &'a EventId,
        state: Option<(&'a str, &'a str)>,
        membership: Option<(&'a UserId, &'a ruma::events::room::member::MembershipState)>,
    ) -> NewEvent<'a> {
        NewEvent {
            event_id,
            pdu: json!({ "type": state.map_or("m.room.message", |s| s.0), "content": {}, "auth_events": ["$outlier"] }),
            depth: 1,
            state,
            membership,
            txn: None,
            relation: None,
            thread_reply_to: None,
            bumps: true,
        }
    }

    /// Everything of the purged room goes, from every tree; the other room keeps all of its.
    #[tokio::test]
    async fn a_purge_removes_the_room_and_nothing_else() {
        let dir = scratch_dir("purge-room");
        let store = Store::open(&dir, 8).unwrap();
        let join = ruma::events::room::member::MembershipState::Join;
        let alice = user_id!("@alice:example.org");
        let (doomed, kept) = (room_id!("!doomed:example.org"), room_id!("!kept:example.org"));
        store.store_outlier(doomed, event_id!("$outlier"), json!({ "auth_events": [] })).unwrap();
        for (room_id, ids) in [
            (doomed, [event_id!("$d1"), event_id!("$d2"), event_id!("$d3")]),
            (kept, [event_id!("$k1"), event_id!("$k2"), event_id!("$k3")]),
        ] {
            let mut room = store.new_room_record(room_id.to_owned(), RoomVersionId::V11).unwrap();
            let mut message = event(ids[2], None, None);
            message.relation = Some(NewRelation {
                parent: ids[0],
                rel_type: "m.annotation",
                kind: "m.reaction",
                sender: alice,
            });
            for new in [
                event(ids[0], Some(("m.room.create", "")), None),
                event(ids[1], Some(("m.room.member", alice.as_str())), Some((alice, &join))),
                message,
            ] {
                let (updated, stored, guard) = store.stage_event(&room, new, Placement::Tip).unwrap();
                store.settle_event(stored.position).unwrap();
                store.room_records.put(updated.clone(), None);
                drop(guard);
                room = updated;
            }
            let alias = if room_id == doomed {
                room_alias_id!("#doomed:example.org")
            } else {
                room_alias_id!("#kept:example.org")
            };
            store
                .create_alias(alias, &AliasRecord { room_id: room_id.to_owned(), creator: alice.to_owned() })
                .await
                .unwrap();
            store.set_published(room_id, true).await.unwrap();
        }
        let before = store.event_records.len();
        let snapshots = store.snapshots.len();
        assert!(snapshots >= 2);

        let removed = store.purge_room(doomed).await.unwrap();
        assert_eq!(removed.len(), 4, "three events and the outlier they name: {removed:?}");
        assert!(store.room(doomed).unwrap().is_none());
        assert_eq!(store.event_records.len(), before - 4);
        for id in ["$d1", "$d2", "$d3", "$outlier"] {
            assert!(store.event(&EventId::parse(id).unwrap()).unwrap().is_none(), "{id} is still stored");
        }
        assert!(store.memberships(doomed).unwrap().is_empty());
        assert_eq!(store.user_rooms(alice).unwrap().len(), 1);
        assert!(store.alias(room_alias_id!("#doomed:example.org")).unwrap().is_none());
        assert!(!store.is_published(doomed).unwrap());
        assert_eq!(store.relations.len(), 1, "the kept room's reaction stays");

        let kept_room = store.room(kept).unwrap().unwrap();
        assert_eq!(store.current_state(&kept_room).unwrap().len(), 2);
        assert!(store.event(event_id!("$k3")).unwrap().is_some());
        assert!(store.alias(room_alias_id!("#kept:example.org")).unwrap().is_some());
        assert_eq!(store.room_state.len(), 2, "only the kept room's state is left");
        assert_eq!(store.snapshots.len(), snapshots / 2, "the two rooms had the same snapshots");
        assert!(store.purge_room(doomed).await.unwrap().is_empty(), "a second purge finds nothing");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
