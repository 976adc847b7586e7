//! Rooms: events, timelines, state snapshots and relations.
//!
//! Trees and keys (`S(x)` is a short id: a u64 from sled's id generator, big-endian):
//! - `rooms`: room id → [`RoomRecord`]
//! - `event_records`: record key → [`StoredEvent`] (the signed PDU plus where it sits).
//!   A timeline event's record key is S(room), position: positions come from one global
//!   counter, so a range scan of a room's keys is its timeline in the order it was stored,
//!   and a room's new records go to the end of its range. An outlier's key is a generated
//!   id (8 bytes, so it never falls inside a room's range). The timeline was once a tree of
//!   its own; sled keeps memory for every page of keys, and that tree cost one more key
//!   per event.
//! - `event_keys`: event id → record key. Event ids are hashes, so these inserts land
//!   anywhere in the tree; keeping the large records out of it keeps that tree small.
//! - `state_keys`: type, `0xff`, state key → S(key); `state_keys_rev`: the reverse
//! - `room_state`: S(room), S(key) → event id: the room's current state
//! - `snapshots`: snapshot id → [`Snapshot`]: state as a chain of small deltas with a full
//!   copy every [`FULL_SNAPSHOT_EVERY`] links (docs/architecture.md, decision 6). Each
//!   event records the snapshot of the state *before* it.
//! - `memberships`, `user_rooms`: see [`super::memberships`]
//! - `txn_ids`: see [`super::txn_ids`]
//! - `relations`: parent event id, `0xff`, position → [`Relation`] (edits, reactions,
//!   threads, replies in threads: whatever names the parent in `m.relates_to`)

use std::collections::BTreeMap;

use ruma::{
    DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::room::member::MembershipState,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{Result, StorageError, Store, be_u64, composite_key, decode, encode};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomRecord {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub short: u64,
    /// Events with no children yet: the `prev_events` of the next event.
    pub extremities: Vec<OwnedEventId>,
    /// The greatest depth in the room.
    pub depth: u64,
    /// Snapshot of the current state; `None` before the create event is stored.
    pub snapshot: Option<u64>,
    /// Position of the latest event stored (0 in records from before it was kept).
    #[serde(default)]
    pub last_position: u64,
    /// Position of the latest event that changed a membership (0: not known, in records
    /// from before it was kept).
    #[serde(default)]
    pub last_membership_change: u64,
    /// Position of the latest event that changed the room's state (0: not known, in records
    /// from before it was kept).
    #[serde(default)]
    pub last_state_change: u64,
    /// Position of the latest event that moves the room up a client's room list (what
    /// counts is the caller's to say, see `NewEvent::bumps`; 0: not known).
    #[serde(default)]
    pub last_bump: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Stored because a timeline scan reads records, and room versions 3 and later derive
    /// the id from a hash of the PDU.
    pub event_id: OwnedEventId,
    /// The PDU as signed (or, after a redaction, as redacted), as raw JSON: most readers
    /// want a few fields or the JSON as it is, and building a tree of every PDU read was
    /// the largest cost of an initial sync.
    pub pdu: Box<RawJsonValue>,
    pub room_id: OwnedRoomId,
    pub position: u64,
    /// The state before this event.
    pub state_before: Option<u64>,
    /// The device and transaction id it was sent with, for `unsigned.transaction_id`.
    pub txn: Option<(String, String)>,
    /// The redaction event that redacted this one.
    #[serde(default)]
    pub redacted_because: Option<OwnedEventId>,
    /// For a state event, the event it replaced in the room's state (for
    /// `unsigned.prev_content`). Not known for events stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_state: Option<OwnedEventId>,
}

impl StoredEvent {
    /// The PDU as a JSON tree, for readers that edit or walk it.
    pub fn pdu_json(&self) -> JsonValue {
        serde_json::from_str(self.pdu.get()).expect("a stored PDU is valid JSON")
    }
}

pub(super) fn raw_pdu(pdu: &JsonValue) -> Box<RawJsonValue> {
    serde_json::value::to_raw_value(pdu).expect("JSON values serialise")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) parent: Option<u64>,
    /// State keys (short ids) set by this link; with no parent, the whole state.
    pub(super) changes: Vec<(u64, OwnedEventId)>,
    pub(super) chain_len: u32,
}

/// An event that relates to another through `m.relates_to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relation {
    pub event_id: OwnedEventId,
    pub rel_type: String,
    pub kind: String,
    pub position: u64,
    /// `None` in records written before it was kept.
    #[serde(default)]
    pub sender: Option<OwnedUserId>,
}

/// The relation a new event's content names.
#[derive(Debug, Clone, Copy)]
pub struct NewRelation<'a> {
    pub parent: &'a EventId,
    pub rel_type: &'a str,
    /// The relating event's own type and sender.
    pub kind: &'a str,
    pub sender: &'a UserId,
}

/// A state key as (event type, state key).
pub type StateKey = (String, String);

/// A room's state: which event holds each state key.
pub type StateMap = BTreeMap<StateKey, OwnedEventId>;

/// Where a new event sits in the room's graph, which decides the state before it and the
/// room's state after it.
pub enum Placement<'a> {
    /// On top of all the room's forward extremities (every local event): the state before
    /// it is the room's current state, which it then updates.
    Tip,
    /// Anywhere else (an event from another server on a branch, or the first event this
    /// server has of a room it joins over federation): the state before it and the room's
    /// state and forward extremities afterwards, resolved by the caller.
    Resolved {
        before: &'a BTreeMap<StateKey, OwnedEventId>,
        after: &'a BTreeMap<StateKey, OwnedEventId>,
        extremities: Vec<OwnedEventId>,
        /// Memberships the new state changes besides the event's own.
        memberships: Vec<(OwnedUserId, MembershipState)>,
    },
}

/// What to store for one new event.
pub struct NewEvent<'a> {
    pub event_id: &'a EventId,
    pub pdu: JsonValue,
    pub depth: u64,
    /// `Some((type, state_key))` for state events.
    pub state: Option<(&'a str, &'a str)>,
    /// For `m.room.member`: the member and the new membership.
    pub membership: Option<(&'a UserId, &'a MembershipState)>,
    /// User, device and transaction id of a client send.
    pub txn: Option<(&'a UserId, &'a DeviceId, &'a str)>,
    /// The parent the content's `m.relates_to` names, if any.
    pub relation: Option<NewRelation<'a>>,
    /// The root of the thread the event replies in (`m.thread`), whose place in the room's
    /// thread list it moves up.
    pub thread_reply_to: Option<&'a EventId>,
    /// Whether the event moves its room up a client's room list (a message does, a
    /// reaction or a receipt does not).
    pub bumps: bool,
}

/// The `relations` key of the event at `position` relating to `parent`.
pub(super) fn relation_key(parent: &EventId, position: u64) -> Vec<u8> {
    composite_key(&[parent.as_bytes(), &position.to_be_bytes()])
}

pub(super) fn room_key(short: u64, rest: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&short.to_be_bytes());
    key[8..].copy_from_slice(&rest.to_be_bytes());
    key
}

pub(super) fn u64_from(bytes: &[u8]) -> Result<u64> {
    be_u64("short id", bytes)
}

impl Store {
    /// Allocates a new room's short id; the room exists once its create event is appended.
    pub fn new_room_record(&self, room_id: OwnedRoomId, version: RoomVersionId) -> Result<RoomRecord> {
        Ok(RoomRecord {
            room_id,
            version,
            short: self.db.generate_id()?,
            extremities: vec![],
            depth: 0,
            snapshot: None,
            last_position: 0,
            last_membership_change: 0,
            last_state_change: 0,
            last_bump: 0,
        })
    }

    /// Every room this server knows. Scans the room table: for occasional requests only.
    pub fn room_ids(&self) -> Result<Vec<OwnedRoomId>> {
        self.rooms
            .iter()
            .keys()
            .map(|key| {
                let key = key?;
                std::str::from_utf8(&key)
                    .ok()
                    .and_then(|s| OwnedRoomId::try_from(s).ok())
                    .ok_or_else(|| StorageError::Corrupt("room id".to_owned()))
            })
            .collect()
    }

    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        let miss = match self.room_records.get(room_id) {
            Ok(room) => return Ok(Some(room)),
            Err(miss) => miss,
        };
        let room: Option<RoomRecord> =
            self.rooms.get(room_id.as_bytes())?.map(|b| decode("room", &b)).transpose()?;
        if let Some(room) = &room {
            self.room_records.keep(miss, room);
        }
        Ok(room)
    }

    pub fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        Ok(self.event_record(event_id)?.map(|(_, stored)| stored))
    }

    /// An event's record with its key in `event_records`.
    fn event_record(&self, event_id: &EventId) -> Result<Option<(sled::IVec, StoredEvent)>> {
        let Some(key) = self.event_keys.get(event_id.as_bytes())? else { return Ok(None) };
        let bytes = self
            .event_records
            .get(&key)?
            .ok_or_else(|| StorageError::Corrupt(format!("no record for event {event_id}")))?;
        Ok(Some((key, decode("event", &bytes)?)))
    }

    /// Replaces an event's PDU with its redacted form; returns the new record. The relation
    /// its content named goes with the content: a redacted edit, reaction or thread reply
    /// no longer counts towards its parent's aggregations.
    pub async fn store_redacted(
        &self,
        event_id: &EventId,
        pdu: JsonValue,
        because: &EventId,
    ) -> Result<Option<StoredEvent>> {
        let Some((key, mut stored)) = self.event_record(event_id)? else { return Ok(None) };
        let parent = stored.pdu_json()["content"]["m.relates_to"]["event_id"]
            .as_str()
            .and_then(|id| EventId::parse(id).ok());
        if let Some(parent) = parent
            && pdu["content"]["m.relates_to"]["event_id"].as_str() != Some(parent.as_str())
        {
            self.relations.remove(relation_key(&parent, stored.position))?;
        }
        if key.len() == 16 {
            self.unindex_event(&stored.pdu_json(), u64_from(&key[..8])?, stored.position)?;
        }
        stored.pdu = raw_pdu(&pdu);
        stored.redacted_because = Some(because.to_owned());
        self.event_records.insert(key, encode(&stored))?;
        self.durable().await?;
        Ok(Some(stored))
    }

    /// Stores an event that is not part of the timeline (an "outlier"): the state and auth
    /// events another server sent when this one joined a room. Keeps an existing record.
    pub fn store_outlier(&self, room_id: &RoomId, event_id: &EventId, pdu: JsonValue) -> Result<()> {
        let stored = StoredEvent {
            event_id: event_id.to_owned(),
            pdu: raw_pdu(&pdu),
            room_id: room_id.to_owned(),
            position: 0,
            state_before: None,
            txn: None,
            redacted_because: None,
            replaces_state: None,
        };
        if self.event_keys.contains_key(event_id.as_bytes())? {
            return Ok(());
        }
        let key = self.db.generate_id()?.to_be_bytes();
        self.event_records.insert(key, encode(&stored))?;
        let claimed =
            self.event_keys.compare_and_swap(event_id.as_bytes(), None as Option<&[u8]>, Some(&key))?;
        if claimed.is_err() {
            // Stored meanwhile by another writer; this copy is not needed.
            self.event_records.remove(key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{event_id, room_id};
    use serde_json::json;

    use super::*;
    use crate::storage::scratch_dir;

    fn create_event(event_id: &EventId) -> NewEvent<'_> {
        NewEvent {
            event_id,
            pdu: json!({ "type": "m.room.create", "state_key": "", "content": {} }),
            depth: 1,
            state: Some(("m.room.create", "")),
            membership: None,
            txn: None,
            bumps: true,
            relation: None,
            thread_reply_to: None,
        }
    }

    #[test]
    fn an_outlier_that_joins_the_timeline_keeps_one_record() {
        let dir = scratch_dir("rooms-outlier");
        let store = Store::open(&dir, 8).unwrap();
        let room_id = room_id!("!room:example.org");
        let event_id = event_id!("$create");
        store.store_outlier(room_id, event_id, json!({ "outlier": true })).unwrap();
        store.store_outlier(room_id, event_id, json!({ "outlier": "again" })).unwrap();
        assert_eq!(store.event(event_id).unwrap().unwrap().position, 0);
        assert_eq!(store.event_records.len(), 1, "a second outlier copy was kept");

        let room = store.new_room_record(room_id.to_owned(), RoomVersionId::V11).unwrap();
        let (_, stored, guard) = store.stage_event(&room, create_event(event_id), Placement::Tip).unwrap();
        drop(guard);
        let read = store.event(event_id).unwrap().unwrap();
        assert_eq!(read.position, stored.position);
        assert_eq!(read.pdu.get(), stored.pdu.get());
        assert_eq!(store.event_records.len(), 1, "the outlier record was left behind");
        assert_eq!(
            store.event_records.first().unwrap().unwrap().0.as_ref(),
            room_key(room.short, stored.position),
            "a timeline event's record is keyed by its room and position"
        );
        assert_eq!(store.timeline(&room, 0, true, 10).unwrap(), vec![(stored.position, event_id.to_owned())]);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
