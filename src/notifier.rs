//! Wakes exactly the long-polling syncs whose user a commit concerns. It sits below every
//! domain: whatever writes something a sync returns wakes it here, and `sync` waits on it.
//!
//! A sync takes a [`Subscription`] *before* it reads, so a commit that lands between its
//! read and its wait still wakes it (tokio's `Notified::enable` registers the waiter).
//! An idle long-poll is a parked future: it costs no CPU until its user is notified.
//!
//! A commit can finish while an earlier stream position (another room's write) is still in
//! flight, so readers cannot see it yet. Each notification therefore carries its position:
//! a woken sync that finds nothing new waits for the visible position to reach it, instead
//! of going back to sleep on a notification that has already been spent.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ruma::{OwnedUserId, UserId};
use tokio::sync::{Notify, watch};

#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    notify: Notify,
    /// The highest position the user has been notified of.
    wanted: AtomicU64,
}

pub struct Subscription {
    slot: Arc<Slot>,
}

impl Notifier {
    fn slot(&self, user: &UserId) -> Arc<Slot> {
        self.users
            .lock()
            .expect("notifier lock is never poisoned")
            .entry(user.to_owned())
            .or_default()
            .clone()
    }

    pub fn subscribe(&self, user: &UserId) -> Subscription {
        Subscription { slot: self.slot(user) }
    }

    /// Tells `users` that something for them was written at `position`.
    pub fn notify<'a>(&self, users: impl IntoIterator<Item = &'a UserId>, position: u64) {
        for user in users {
            // A slot is kept even without a waiter, so a sync that subscribes later still
            // learns which position it has to wait for.
            let slot = self.slot(user);
            slot.wanted.fetch_max(position, Ordering::SeqCst);
            slot.notify.notify_waiters();
        }
    }
}

impl Subscription {
    /// Runs `read` until it finds something or `timeout` passes, reading again only when
    /// the user is notified or a position they were notified of becomes visible. No commit
    /// between a read and the following wait is missed.
    pub async fn read_or_wait<T>(
        &self,
        timeout: Duration,
        mut visible: watch::Receiver<u64>,
        mut read: impl FnMut() -> T,
        is_empty: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let seen = *visible.borrow_and_update();
            let result = read();
            if !is_empty(&result) || tokio::time::Instant::now() >= deadline {
                return result;
            }
            let wanted = self.slot.wanted.load(Ordering::SeqCst);
            let woke = if wanted > seen {
                // Written and notified, but held back by an earlier position in flight.
                tokio::time::timeout_at(deadline, visible.wait_for(|v| *v >= wanted))
                    .await
                    .is_ok_and(|r| r.is_ok())
            } else {
                tokio::time::timeout_at(deadline, notified).await.is_ok()
            };
            if !woke {
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> OwnedUserId {
        ruma::owned_user_id!("@a:example.org")
    }

    #[tokio::test]
    async fn a_notified_position_is_awaited_until_it_becomes_visible() {
        let notifier = Notifier::default();
        let (visible_tx, visible_rx) = watch::channel(5);
        let visible_tx = Arc::new(visible_tx);
        // Position 7 was written and notified, but 6 is still in flight: visible stays 5.
        notifier.notify([&*user()], 7);
        let subscription = notifier.subscribe(&user());
        let reads = AtomicU64::new(0);
        let publisher = {
            let visible_tx = visible_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                visible_tx.send_replace(7);
            })
        };
        let result = subscription
            .read_or_wait(
                Duration::from_secs(10),
                visible_rx,
                || {
                    reads.fetch_add(1, Ordering::SeqCst);
                    *visible_tx.borrow()
                },
                |seen| *seen < 7,
            )
            .await;
        publisher.await.unwrap();
        assert_eq!(result, 7);
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one read before, one after it became visible");
    }
}
