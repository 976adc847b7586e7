//! Wakes exactly the long-polling syncs whose user a commit concerns.
//!
//! A sync takes a [`Subscription`] *before* it reads, so a commit that lands between its
//! read and its wait still wakes it (tokio's `Notified::enable` registers the waiter).
//! An idle long-poll is a parked future: it costs no CPU until its user is notified.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, Arc<Notify>>>,
}

pub struct Subscription {
    notify: Arc<Notify>,
}

impl Notifier {
    pub fn subscribe(&self, user: &UserId) -> Subscription {
        let notify = self
            .users
            .lock()
            .expect("notifier lock is never poisoned")
            .entry(user.to_owned())
            .or_default()
            .clone();
        Subscription { notify }
    }

    pub fn notify<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) {
        let map = self.users.lock().expect("notifier lock is never poisoned");
        for user in users {
            if let Some(notify) = map.get(user) {
                notify.notify_waiters();
            }
        }
    }
}

impl Subscription {
    /// Runs `read` until it finds something or `timeout` passes, reading again only when
    /// the user is notified. No commit between a read and the following wait is missed.
    pub async fn read_or_wait<T>(
        &self,
        timeout: Duration,
        mut read: impl FnMut() -> T,
        is_empty: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let result = read();
            if !is_empty(&result) || tokio::time::Instant::now() >= deadline {
                return result;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return result;
            }
        }
    }
}
