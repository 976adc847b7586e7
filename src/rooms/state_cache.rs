//! Room state kept in memory: parsed state events by event id, and whole states by
//! snapshot id.
//!
//! Building and authorizing one event reads the room's create, power levels and the
//! sender's member event several times over (to pick auth events, then to check them), and
//! push evaluation reads the power levels again: about ten reads of a stored PDU and a
//! parse of its JSON per message, for events that rarely change. State events are
//! immutable but for redaction, which [`StatePdus::forget`] covers.
//!
//! A sync reads the state before the first event it sends in each room, which costs a read
//! per state key; after a message, every member's sync asks for the same one. Snapshots
//! never change, so [`StateSnapshots`] needs no invalidation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{EventId, OwnedEventId};

use super::Pdu;
use crate::storage::StateMap;

/// Enough for the auth events of every active room on a small server; the cache starts
/// over when full rather than tracking recency.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct StatePdus(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    pdus: HashMap<OwnedEventId, Arc<Pdu>>,
    /// Bumped by every [`StatePdus::forget`]: a PDU read from storage before a redaction
    /// landed must not be cached after it.
    generation: u64,
}

/// What a reader saw of the cache before going to storage.
pub struct Miss {
    generation: u64,
}

impl StatePdus {
    pub fn get(&self, event_id: &EventId) -> Result<Arc<Pdu>, Miss> {
        let inner = self.0.lock().expect("never poisoned");
        inner.pdus.get(event_id).cloned().ok_or(Miss { generation: inner.generation })
    }

    /// Keeps a state event read from storage after `miss`.
    pub fn insert(&self, miss: Miss, pdu: Arc<Pdu>) {
        if pdu.state_key.is_none() {
            return;
        }
        let mut inner = self.0.lock().expect("never poisoned");
        if inner.generation != miss.generation {
            return;
        }
        if inner.pdus.len() >= CAPACITY {
            inner.pdus.clear();
        }
        inner.pdus.insert(pdu.event_id.clone(), pdu);
    }

    /// Drops an event whose stored form changed (a redaction).
    pub fn forget(&self, event_id: &EventId) {
        let mut inner = self.0.lock().expect("never poisoned");
        inner.generation += 1;
        inner.pdus.remove(event_id);
    }
}

/// Enough for the snapshots current syncs ask for; a snapshot of a large room is large.
const SNAPSHOTS: usize = 256;

#[derive(Default)]
pub struct StateSnapshots(Mutex<HashMap<u64, Arc<StateMap>>>);

impl StateSnapshots {
    pub fn get(&self, snapshot: u64) -> Option<Arc<StateMap>> {
        self.0.lock().expect("never poisoned").get(&snapshot).cloned()
    }

    pub fn insert(&self, snapshot: u64, state: Arc<StateMap>) {
        let mut snapshots = self.0.lock().expect("never poisoned");
        if snapshots.len() >= SNAPSHOTS {
            snapshots.clear();
        }
        snapshots.insert(snapshot, state);
    }
}
