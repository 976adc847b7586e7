//! Previews already made, by URL, for a while: a link posted in a busy room is fetched once
//! however many clients ask, and asks that arrive while it is being fetched wait for that
//! fetch instead of starting their own.
//!
//! Kept in memory, not in the store: a preview is cheap to make again and stale within the
//! hour, so losing them at a restart costs one fetch each, while storing them would put a
//! durable write (an fsync, decision 4) on a path that needs none. The images a preview
//! points to are stored as media, so they outlive the cache like any upload.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::OnceCell;

struct Slot<V> {
    /// Which entry of the queue is this slot's.
    id: u64,
    born: Instant,
    value: Arc<OnceCell<V>>,
}

struct State<V> {
    slots: HashMap<String, Slot<V>>,
    /// Slots by age, oldest first; an entry whose id is no longer its key's slot is stale.
    order: VecDeque<(u64, String)>,
    next_id: u64,
}

/// At most `capacity` values, each kept for as long as `lifetime` says.
pub struct Cache<V> {
    capacity: usize,
    /// The longest any value is kept.
    max_lifetime: Duration,
    lifetime: fn(&V) -> Duration,
    state: Mutex<State<V>>,
}

impl<V: Clone> Cache<V> {
    pub fn new(capacity: usize, max_lifetime: Duration, lifetime: fn(&V) -> Duration) -> Self {
        Self {
            capacity,
            max_lifetime,
            lifetime,
            state: Mutex::new(State { slots: HashMap::new(), order: VecDeque::new(), next_id: 0 }),
        }
    }

    /// The value for `key`, made by `make` unless one is kept or being made. If the ask
    /// that is making it goes away, the next waiting one makes it.
    pub async fn get_or_make<F, Fut>(&self, key: &str, make: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self.slot(key);
        cell.get_or_init(make).await.clone()
    }

    fn slot(&self, key: &str) -> Arc<OnceCell<V>> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some(slot) = state.slots.get(key) {
            let fresh = match slot.value.get() {
                None => true,
                Some(value) => now < slot.born + (self.lifetime)(value).min(self.max_lifetime),
            };
            if fresh {
                return slot.value.clone();
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let value = Arc::new(OnceCell::new());
        state.slots.insert(key.to_owned(), Slot { id, born: now, value: value.clone() });
        state.order.push_back((id, key.to_owned()));
        // Forget the oldest while over capacity, and whatever has outlived every lifetime.
        let state = &mut *state;
        while let Some((oldest, oldest_key)) = state.order.front() {
            let stale = match state.slots.get(oldest_key) {
                Some(slot) if slot.id == *oldest => now.duration_since(slot.born) >= self.max_lifetime,
                _ => true,
            };
            if state.order.len() <= self.capacity && !stale {
                break;
            }
            let (oldest, key) = state.order.pop_front().expect("not empty");
            if state.slots.get(&key).is_some_and(|slot| slot.id == oldest) {
                state.slots.remove(&key);
            }
        }
        value
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn made_once_and_bounded() {
        let cache: Cache<u32> = Cache::new(2, Duration::from_secs(60), |_| Duration::from_secs(60));
        let made = AtomicUsize::new(0);
        let make = |v: u32| {
            let made = &made;
            move || async move {
                made.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                v
            }
        };
        // Two asks at once make one value.
        let (a, b) = tokio::join!(cache.get_or_make("a", make(1)), cache.get_or_make("a", make(2)));
        assert_eq!((a, b), (1, 1));
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get_or_make("a", make(3)).await, 1);
        cache.get_or_make("b", make(4)).await;
        cache.get_or_make("c", make(5)).await;
        assert_eq!(cache.len(), 2);
        // "a" was the oldest, so it was forgotten.
        assert_eq!(cache.get_or_make("a", make(6)).await, 6);
    }

    #[tokio::test]
    async fn values_expire_after_their_lifetime() {
        let cache: Cache<u32> =
            Cache::new(10, Duration::from_secs(60), |v| Duration::from_millis(u64::from(*v)));
        assert_eq!(cache.get_or_make("short", || async { 1 }).await, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(cache.get_or_make("short", || async { 2 }).await, 2);
        assert_eq!(cache.get_or_make("long", || async { 60_000 }).await, 60_000);
        assert_eq!(cache.get_or_make("long", || async { 7 }).await, 60_000);
    }
}
