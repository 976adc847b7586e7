//! Whole room states kept in memory, by snapshot id.
//!
//! A sync reads the state before the first event it sends in each room, which costs a read
//! per state key; after a message, every member's sync asks for the same one. Snapshots
//! never change, so [`StateSnapshots`] needs no invalidation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::storage::StateMap;

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
