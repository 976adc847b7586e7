//! Recently written and read events, parsed, shared by every reader.
//!
//! A sync reads each room's newest events and the state events before them; the send path
//! reads the create, power levels and member events several times per message. From
//! storage each read is a lookup in the largest tree, keyed by random event ids, and a parse
//! of the PDU's JSON: together most of an initial sync's time. New events go in when they
//! are written, so the events syncs ask for next are usually here already.
//!
//! Stored events are immutable but for redaction and an outlier joining the timeline. Both
//! go through [`EventCache::put`], which also bumps a generation: a reader that went to
//! storage before the change must not cache what it read ([`EventCache::keep`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{EventId, OwnedEventId};

use super::Pdu;
use crate::storage::StoredEvent;

/// An event as stored, with the fields readers need parsed out.
#[derive(Debug)]
pub struct Event {
    pub pdu: Pdu,
    pub stored: StoredEvent,
}

impl Event {
    /// Parses a record read from storage.
    pub fn parse(event_id: &EventId, stored: StoredEvent) -> Result<Self, String> {
        let pdu = Pdu::from_raw(event_id.to_owned(), &stored.room_id, &stored.pdu)?;
        Ok(Self { pdu, stored })
    }
}

/// Events per generation. Two generations are kept, so the cache holds between this many
/// and twice as many events, about 1.5 KB each: enough for a small server's active rooms.
const GENERATION: usize = 2048;

#[derive(Default)]
pub struct EventCache(Mutex<Inner>);

/// An approximate LRU in two generations: new entries and hits go to `young`; when it is
/// full it becomes `old` and the previous `old` is dropped. Whatever was used within the
/// last generation survives.
#[derive(Default)]
struct Inner {
    young: HashMap<OwnedEventId, Arc<Event>>,
    old: HashMap<OwnedEventId, Arc<Event>>,
    /// Bumped by every [`EventCache::put`].
    generation: u64,
}

/// What a reader saw of the cache before going to storage.
pub struct Miss {
    generation: u64,
}

impl Inner {
    fn insert(&mut self, event: Arc<Event>) {
        if self.young.len() >= GENERATION {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(event.pdu.event_id.clone(), event);
    }
}

impl EventCache {
    pub fn get(&self, event_id: &EventId) -> Result<Arc<Event>, Miss> {
        let mut inner = self.0.lock().expect("never poisoned");
        if let Some(event) = inner.young.get(event_id) {
            return Ok(event.clone());
        }
        match inner.old.remove(event_id) {
            Some(event) => {
                inner.insert(event.clone());
                Ok(event)
            }
            None => Err(Miss { generation: inner.generation }),
        }
    }

    /// Keeps an event read from storage after `miss`, unless a writer changed the cache since.
    pub fn keep(&self, miss: Miss, event: Arc<Event>) {
        let mut inner = self.0.lock().expect("never poisoned");
        if inner.generation == miss.generation {
            inner.insert(event);
        }
    }

    /// Drops events that are no longer stored (a purged room's).
    pub fn forget(&self, event_ids: &[OwnedEventId]) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        for event_id in event_ids {
            inner.young.remove(event_id);
            inner.old.remove(event_id);
        }
    }

    /// Sets an event as it is now stored, after the write.
    pub fn put(&self, event: Arc<Event>) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        inner.old.remove(&event.pdu.event_id);
        inner.insert(event);
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id};
    use serde_json::json;

    use super::*;

    fn event(id: OwnedEventId, position: u64) -> Arc<Event> {
        let pdu = json!({
            "room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1, "type": "m.room.message",
            "content": {}, "depth": 1, "prev_events": [], "auth_events": [],
        });
        let room_id = owned_room_id!("!r:x");
        Arc::new(Event {
            pdu: Pdu::from_json(id.clone(), &room_id, &pdu).unwrap(),
            stored: StoredEvent {
                event_id: id,
                pdu: serde_json::value::to_raw_value(&pdu).unwrap(),
                room_id,
                position,
                state_before: None,
                txn: None,
                redacted_because: None,
                replaces_state: None,
            },
        })
    }

    #[test]
    fn a_read_that_a_write_overtook_is_not_kept() {
        let cache = EventCache::default();
        let id = owned_event_id!("$a");
        let miss = cache.get(&id).err().unwrap();
        cache.put(event(id.clone(), 2));
        cache.keep(miss, event(id.clone(), 0));
        assert_eq!(cache.get(&id).ok().unwrap().stored.position, 2);
    }

    #[test]
    fn recently_used_events_survive_a_generation() {
        let cache = EventCache::default();
        let first = owned_event_id!("$first");
        cache.put(event(first.clone(), 1));
        for i in 0..GENERATION * 5 / 2 {
            if i == GENERATION {
                // Used in the second generation: moves back to the young one.
                assert!(cache.get(&first).is_ok());
            }
            cache.put(event(OwnedEventId::try_from(format!("${i}")).unwrap(), 2));
        }
        assert!(cache.get(&first).is_ok());
        assert!(cache.get(&owned_event_id!("$0")).is_err(), "unused for two generations");
    }
}
