//! The global stream position (DESIGN.md decision 5).
//!
//! Every change `/sync` can return gets a position from one counter. Writers to different
//! rooms commit in parallel, so position 7 may become durable before position 6; a sync
//! that answered "up to 7" then would never deliver 6. So readers only see up to
//! [`Positions::visible`]: the highest position below which nothing is still being written.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

pub struct Positions {
    state: Arc<Mutex<State>>,
}

struct State {
    /// Positions handed out whose writes have not finished.
    in_flight: BTreeSet<u64>,
    /// The highest position handed out so far.
    issued: u64,
}

/// Holds a position while its write is in progress; dropping it (after the write is durable,
/// or after it failed) lets readers see past it.
pub struct PositionGuard {
    position: u64,
    state: Arc<Mutex<State>>,
}

impl Positions {
    /// `start` is a position above everything stored before this process started.
    pub fn new(start: u64) -> Self {
        Self { state: Arc::new(Mutex::new(State { in_flight: BTreeSet::new(), issued: start })) }
    }

    /// Registers `position` (from sled's monotonic id generator) as being written.
    pub fn begin(&self, position: u64) -> PositionGuard {
        let mut state = self.state.lock().expect("positions lock is never poisoned");
        state.in_flight.insert(position);
        state.issued = state.issued.max(position);
        PositionGuard { position, state: self.state.clone() }
    }

    /// Everything at or below this position is durable (or will never exist).
    pub fn visible(&self) -> u64 {
        let state = self.state.lock().expect("positions lock is never poisoned");
        match state.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => state.issued,
        }
    }
}

impl PositionGuard {
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl Drop for PositionGuard {
    fn drop(&mut self) {
        self.state.lock().expect("positions lock is never poisoned").in_flight.remove(&self.position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_never_see_past_an_unfinished_write() {
        let positions = Positions::new(10);
        assert_eq!(positions.visible(), 10);
        let a = positions.begin(11);
        let b = positions.begin(12);
        assert_eq!(positions.visible(), 10);
        drop(b);
        assert_eq!(positions.visible(), 10, "11 is still being written");
        drop(a);
        assert_eq!(positions.visible(), 12);
    }
}
