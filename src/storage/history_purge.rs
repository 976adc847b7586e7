//! Purging a room's history before a point (admin purges and retention), keeping the room.
//!
//! Which events go is the caller's choice (`rooms` keeps state events, the room's forward
//! extremities and, unless asked, this server's own events); this removes each chosen
//! event from every tree that holds it: its id, its record, its search postings, its
//! notification record, the relations naming it (as parent or as child) and its thread
//! activity. State snapshots stay: later events' state is built on them.
//!
//! Order per event, as in a room purge: the id before the record, so that a crash leaves
//! at most an unreachable record, which a later purge or `db verify` finds.

use ruma::{EventId, OwnedEventId, RoomId};
use serde_json::Value as JsonValue;

use super::{Result, Store, decode, rooms::StoredEvent};

/// What a history purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPurged {
    /// Timeline events removed.
    pub events: u64,
    /// Timeline events before the point that were kept (state, extremities, local ones).
    pub kept: u64,
}

impl Store {
    /// Removes the events of `room_id`'s timeline stored from `from` up to `before` (stream
    /// positions) for which `remove` says so, looking at `limit` events at most. Returns the
    /// ids removed, for caches above, and where to go on if the limit stopped it.
    pub async fn purge_history(
        &self,
        room_id: &RoomId,
        (from, before): (u64, u64),
        limit: usize,
        remove: &(dyn Fn(&OwnedEventId, &JsonValue) -> bool + Sync),
    ) -> Result<(HistoryPurged, Vec<OwnedEventId>, Option<u64>)> {
        let Some(room) = self.room(room_id)? else { return Ok(Default::default()) };
        let mut summary = HistoryPurged::default();
        let mut removed = Vec::new();
        let mut resume_at = None;
        let start = super::rooms::room_key(room.short, from);
        let end = super::rooms::room_key(room.short, before);
        for (looked_at, item) in self.event_records.range(start..end).enumerate() {
            let (key, bytes) = item?;
            if looked_at == limit {
                resume_at = Some(super::be_u64("position", &key[8..])?);
                break;
            }
            let stored: StoredEvent = decode("event", &bytes)?;
            let pdu = stored.pdu_json();
            if !remove(&stored.event_id, &pdu) {
                summary.kept += 1;
                continue;
            }
            self.unindex_event(&pdu, room.short, stored.position)?;
            if let Some(parent) = relates_to(&pdu) {
                self.relations.remove(super::rooms::relation_key(&parent, stored.position))?;
            }
            self.event_notifications
                .remove(super::composite_key(&[room_id.as_bytes(), &stored.position.to_be_bytes()]))?;
            if let Some(root) = self.thread_activity.remove(key.as_ref())? {
                self.thread_latest.remove(root)?;
            }
            self.forget_event(&stored.event_id, &key)?;
            removed.push(stored.event_id);
            summary.events += 1;
        }
        // The room's newest entries are kept in memory with its record.
        self.room_records.forget(room_id);
        self.durable().await?;
        Ok((summary, removed, resume_at))
    }
}

impl Store {
    /// The position of the room's first timeline event sent at or after `ts` (by its
    /// `origin_server_ts`), or one past its latest event if none was. A scan from the
    /// room's start: after a purge, what is left before the point is little.
    pub fn first_position_since(&self, room_id: &RoomId, ts: u64) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Sent {
            #[serde(default)]
            origin_server_ts: u64,
        }
        let Some(room) = self.room(room_id)? else { return Ok(0) };
        let start = super::rooms::room_key(room.short, 0);
        let end = super::rooms::room_key(room.short, u64::MAX);
        for item in self.event_records.range(start..end) {
            let (_, bytes) = item?;
            let stored: StoredEvent = decode("event", &bytes)?;
            let sent: Sent = serde_json::from_str(stored.pdu.get()).unwrap_or(Sent { origin_server_ts: 0 });
            if sent.origin_server_ts >= ts {
                return Ok(stored.position);
            }
        }
        Ok(room.last_position + 1)
    }
}

/// The event an event's `m.relates_to` names.
fn relates_to(pdu: &JsonValue) -> Option<OwnedEventId> {
    let id = pdu.get("content")?.get("m.relates_to")?.get("event_id")?.as_str()?;
    EventId::parse(id).ok()
}
