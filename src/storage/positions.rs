//! The global stream position (docs/architecture.md, decision 5).
//!
//! Every change `/sync` can return gets a position from one counter. Writers to different
//! rooms commit in parallel, so position 7 may become durable before position 6; a sync
//! that answered "up to 7" then would never deliver 6. So readers only see up to
//! [`Positions::visible`]: the highest position below which nothing is still being written.
//! Its changes are also published on a watch channel, for readers waiting to see a
//! position that was written but is held back by an earlier one.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

pub struct Positions {
    state: Arc<Mutex<State>>,
    visible: Arc<watch::Sender<u64>>,
}

struct State {
    /// Positions handed out whose writes have not finished.
    in_flight: BTreeSet<u64>,
    /// The highest position handed out so far.
    issued: u64,
}

impl State {
    fn visible(&self) -> u64 {
        match self.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => self.issued,
        }
    }
}

/// Holds a position while its write is in progress; dropping it (after the write is durable,
/// or after it failed) lets readers see past it.
pub struct PositionGuard {
    position: u64,
    state: Arc<Mutex<State>>,
    visible: Arc<watch::Sender<u64>>,
}

impl Positions {
    /// `start` is a position above everything stored before this process started.
    pub fn new(start: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State { in_flight: BTreeSet::new(), issued: start })),
            visible: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Takes a new position from `next` (sled's monotonic id generator) and registers it as
    /// being written. `next` runs under the lock: were the id taken before it, a later id
    /// could be registered, finish and become visible first, and a reader would skip this one.
    pub fn begin<E>(&self, next: impl FnOnce() -> Result<u64, E>) -> Result<PositionGuard, E> {
        let mut state = self.state.lock().expect("positions lock is never poisoned");
        let position = next()?;
        state.in_flight.insert(position);
        state.issued = state.issued.max(position);
        Ok(PositionGuard { position, state: self.state.clone(), visible: self.visible.clone() })
    }

    /// Everything at or below this position is durable (or will never exist).
    pub fn visible(&self) -> u64 {
        self.state.lock().expect("positions lock is never poisoned").visible()
    }

    /// Follows [`Positions::visible`] as it moves forwards.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.visible.subscribe()
    }
}

impl PositionGuard {
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl Drop for PositionGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("positions lock is never poisoned");
        state.in_flight.remove(&self.position);
        let visible = state.visible();
        // Under the lock, so the published value never goes backwards.
        self.visible.send_if_modified(|current| {
            let moved = visible > *current;
            *current = (*current).max(visible);
            moved
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(position: u64) -> impl FnOnce() -> Result<u64, ()> {
        move || Ok(position)
    }

    #[test]
    fn readers_never_see_past_an_unfinished_write() {
        let positions = Positions::new(10);
        let watch = positions.watch();
        assert_eq!(positions.visible(), 10);
        let a = positions.begin(ok(11)).unwrap();
        let b = positions.begin(ok(12)).unwrap();
        assert_eq!(positions.visible(), 10);
        drop(b);
        assert_eq!(positions.visible(), 10, "11 is still being written");
        assert_eq!(*watch.borrow(), 10);
        drop(a);
        assert_eq!(positions.visible(), 12);
        assert_eq!(*watch.borrow(), 12, "the watch follows");
    }

    #[test]
    fn a_failed_id_registers_nothing() {
        let positions = Positions::new(10);
        assert!(positions.begin(|| Err::<u64, _>("no id")).is_err());
        assert_eq!(positions.visible(), 10);
    }
}
