//! Delivering notifications to push gateways: one task per HTTP pusher, each an ordered,
//! durable queue.
//!
//! Nothing is copied to queue a push. A pusher's queue is the user's notification records
//! (written with each event, in its flush) after the pusher's cursor, `delivered_upto`,
//! which moves only once the gateway has answered. So a restart — even `kill -9` — resumes
//! from the store and loses nothing. Cursors are written together, every
//! [`CURSOR_WRITE_INTERVAL`], not one by one: one message in a room of a thousand moves a
//! thousand cursors, and a store write for each cost three times the rest of the delivery.
//! A crash may therefore repeat the notifications of its last quarter second or so; apps
//! show one notification per event id, so a repeat replaces itself.
//!
//! While the server runs, a sender only leaves a hint — (position, room, recipients) — and
//! returns: nobody's send waits for a gateway. Hints are left before the event's position
//! becomes visible; a dispatcher hands them to the recipients' workers once it is, in
//! stream order, so a worker delivers in order without waiting for anything. Waking the
//! workers only then also keeps a thousand of them from running ahead of the sender's own
//! response. A worker that falls far behind forgets its hints and reads them back from the
//! store.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::Url;
use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    api::client::push::{Pusher, PusherKind},
};
use tokio::sync::mpsc;

use super::{
    counts::UnreadCounter,
    gateway::{Gateway, GatewayError},
    notification::{PushedEvents, Target},
};
use crate::{
    config::PushConfig,
    error::{Error, Result},
    metrics::{PushLabels, metrics},
    now_ms,
    outbound::OutboundPolicy,
    storage::{PusherKey, PusherRecord, PusherState, Store},
};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60 * 60);
/// Hints a worker keeps in memory; beyond them it reads its backlog from the store.
const MAX_QUEUED: usize = 1000;
/// How often the cursors that moved are written to the store.
const CURSOR_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// What wakes a pusher's worker.
enum Wake {
    /// The event at this position in the room notifies the pusher's user.
    Notification(u64, OwnedRoomId),
    /// The user's read receipts moved: the badge may have changed.
    Badge,
}

/// A running worker: which pusher it delivers to, and its wake-up channel.
type WorkerHandle = (PusherKey, mpsc::UnboundedSender<Wake>);

/// An event's position, room, and the users it notifies.
type Hint = (u64, OwnedRoomId, Vec<OwnedUserId>);

/// Where hints go: each user's running workers.
#[derive(Default)]
struct Router {
    /// Each user's running workers; empty until [`Delivery::start`].
    workers: Mutex<HashMap<OwnedUserId, Vec<WorkerHandle>>>,
    /// Hints for positions that are not visible yet.
    waiting: Mutex<Vec<Hint>>,
}

impl Router {
    /// Hands the waiting hints up to `visible` to the workers, in stream order.
    fn dispatch(&self, visible: u64) {
        let mut ready: Vec<Hint> = {
            let mut waiting = self.waiting.lock().expect("never poisoned");
            if waiting.is_empty() {
                return;
            }
            let (ready, later) =
                std::mem::take(&mut *waiting).into_iter().partition(|(p, _, _)| *p <= visible);
            *waiting = later;
            ready
        };
        ready.sort_by_key(|(position, _, _)| *position);
        let workers = self.workers.lock().expect("never poisoned");
        for (position, room, users) in ready {
            for user in users {
                for (_, tx) in workers.get(&user).into_iter().flatten() {
                    let _ = tx.send(Wake::Notification(position, room.clone()));
                }
            }
        }
    }
}

/// Everything the workers share.
struct Shared {
    store: Arc<Store>,
    counter: Arc<UnreadCounter>,
    gateway: Gateway,
    events: PushedEvents,
    config: PushConfig,
    /// Cursors moved since they were last written.
    moved_cursors: Mutex<HashMap<PusherKey, PusherState>>,
}

impl Shared {
    /// Writes the cursors that moved; `false` if none had.
    fn write_cursors(&self) -> Result<bool> {
        let moved: Vec<_> =
            std::mem::take(&mut *self.moved_cursors.lock().expect("never poisoned")).into_iter().collect();
        if moved.is_empty() {
            return Ok(false);
        }
        self.store.set_pusher_states(&moved)?;
        Ok(true)
    }

    /// Writes the cursors that moved and flushes them at once, so that the next send's
    /// flush does not have them to write.
    async fn write_cursors_durably(&self) -> Result<()> {
        if self.write_cursors()? {
            self.store.durable().await?;
        }
        Ok(())
    }
}

pub struct Delivery {
    shared: Arc<Shared>,
    router: Arc<Router>,
    /// Where the workers run once [`Delivery::start`]ed: a runtime of their own (see there).
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

/// What a gateway said to a test notification.
pub type TestOutcome = std::result::Result<Vec<String>, GatewayError>;

impl Delivery {
    pub fn new(
        store: Arc<Store>,
        counter: Arc<UnreadCounter>,
        config: PushConfig,
        policy: Arc<OutboundPolicy>,
    ) -> Self {
        let shared = Shared {
            store,
            counter,
            gateway: Gateway::new(policy),
            events: PushedEvents::default(),
            config,
            moved_cursors: Mutex::default(),
        };
        Self { shared: Arc::new(shared), router: Arc::default(), runtime: Default::default() }
    }

    /// Whether a pusher URL is refused outright (see [`Gateway::check`]).
    pub fn check_url(&self, url: &Url) -> std::result::Result<(), crate::outbound::Refused> {
        self.shared.gateway.check(url)
    }

    /// Starts a worker for every stored HTTP pusher, each resuming where it got to. Only a
    /// running server delivers; the CLI on a stopped server leaves its queues in the store.
    ///
    /// The workers get threads of their own (a runtime named `push`). On the request
    /// runtime, a message in a big room woke a thousand workers in the same run queue as
    /// the sender's own request, whose answer then waited behind them; on their own
    /// threads, the operating system shares the cores between the two instead.
    pub fn start(&self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
            .thread_name("push")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start push delivery: {e}")))?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process: its threads run while this one waits.
        std::thread::Builder::new()
            .name("push-runtime".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| Error::Internal(format!("cannot start push delivery: {e}")))?;
        if self.runtime.set(handle.clone()).is_err() {
            return Err(Error::Internal("push delivery started twice".to_owned()));
        }
        for record in self.shared.store.all_pushers()? {
            self.spawn(record);
        }
        let (router, mut visible) = (self.router.clone(), self.shared.store.watch_visible_position());
        handle.spawn(async move {
            while visible.changed().await.is_ok() {
                let upto = *visible.borrow_and_update();
                router.dispatch(upto);
            }
        });
        let shared = self.shared.clone();
        handle.spawn(async move {
            let mut every = tokio::time::interval(CURSOR_WRITE_INTERVAL);
            loop {
                every.tick().await;
                if let Err(e) = shared.write_cursors_durably().await {
                    tracing::error!(error = %e, "cannot record how far push delivery got");
                }
            }
        });
        Ok(())
    }

    /// Writes the cursors not written yet: on shutdown, so a clean restart repeats nothing.
    pub fn write_cursors(&self) -> Result<()> {
        self.shared.write_cursors().map(|_| ())
    }

    /// A pusher was set (or set again, which restarts it from now).
    pub fn pusher_set(&self, record: PusherRecord) {
        self.pusher_removed(&record.key);
        self.spawn(record);
    }

    /// A pusher is gone: its worker stops (dropping its channel ends the worker's wait), and
    /// its cursor is not written again: a pusher set anew starts from its own.
    pub fn pusher_removed(&self, key: &PusherKey) {
        // Held while the channel closes, so the worker's `save` sees it closed or is undone.
        let mut moved = self.shared.moved_cursors.lock().expect("never poisoned");
        moved.remove(key);
        let mut workers = self.router.workers.lock().expect("never poisoned");
        if let Some(list) = workers.get_mut(&key.user_id) {
            list.retain(|(k, _)| k != key);
            if list.is_empty() {
                workers.remove(&key.user_id);
            }
        }
    }

    /// The event at `position` in `room` notifies `users`. Called after the event is durable
    /// and before its position is visible (see the module docs).
    pub fn notified(&self, room: &OwnedRoomId, position: u64, users: Vec<OwnedUserId>) {
        if users.is_empty() || self.router.workers.lock().expect("never poisoned").is_empty() {
            return;
        }
        self.router.waiting.lock().expect("never poisoned").push((position, room.clone(), users));
    }

    /// The user's read receipts moved: their pushers update the badge.
    pub fn receipt_moved(&self, user: &UserId) {
        for (_, tx) in self.router.workers.lock().expect("never poisoned").get(user).into_iter().flatten() {
            let _ = tx.send(Wake::Badge);
        }
    }

    /// Sends each of the user's HTTP pushers a badge update with the current count, and
    /// reports what each gateway answered (for `myelin pushers test`).
    pub async fn test(&self, user: &UserId) -> Result<Vec<(PusherKey, TestOutcome)>> {
        let badge = self.shared.counter.badge(&self.shared.store, user)?;
        let mut outcomes = Vec::new();
        for record in self.shared.store.pushers(user)? {
            let Some((target, url)) = target(&record) else { continue };
            let outcome =
                self.shared.gateway.notify(&url, target.badge_notification(&record.state), Some(badge)).await;
            outcomes.push((record.key, outcome));
        }
        Ok(outcomes)
    }

    /// Starts a pusher's worker, once delivery has started.
    fn spawn(&self, record: PusherRecord) {
        let Some(runtime) = self.runtime.get() else { return };
        let Some((target, url)) = target(&record) else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        self.router
            .workers
            .lock()
            .expect("never poisoned")
            .entry(record.key.user_id.clone())
            .or_default()
            .push((record.key.clone(), tx));
        let backlog_until = self.shared.store.visible_position();
        let worker = Worker {
            shared: self.shared.clone(),
            target,
            url,
            state: record.state,
            rx,
            queue: BTreeSet::new(),
            backlog_until,
            badge_due: false,
            last_badge: None,
            retry: FIRST_RETRY,
        };
        runtime.spawn(worker.run());
    }
}

/// An HTTP pusher's gateway and URL; `None` for other kinds, or a URL that no longer parses.
fn target(record: &PusherRecord) -> Option<(Target, Url)> {
    let pusher: Pusher = serde_json::from_value(record.pusher.clone()).ok()?;
    let PusherKind::Http(data) = pusher.kind else { return None };
    let url = Url::parse(&data.url).ok()?;
    Some((Target { key: record.key.clone(), data }, url))
}

/// Whether a worker goes on.
enum Next {
    Continue,
    Stop,
}

struct Worker {
    shared: Arc<Shared>,
    target: Target,
    url: Url,
    state: PusherState,
    rx: mpsc::UnboundedReceiver<Wake>,
    /// Hinted notifications not delivered yet, in stream order.
    queue: BTreeSet<(u64, OwnedRoomId)>,
    /// Notifications up to this position may be missing from `queue` (at start, or after
    /// it overflowed) and are read from the store.
    backlog_until: u64,
    badge_due: bool,
    /// The badge count the gateway last got, so an unchanged one is not sent again.
    last_badge: Option<u64>,
    retry: Duration,
}

impl Worker {
    async fn run(mut self) {
        loop {
            while let Ok(wake) = self.rx.try_recv() {
                self.take(wake);
            }
            match self.deliver_queued().await {
                Ok(Next::Continue) => {}
                Ok(Next::Stop) => return,
                Err(e) => {
                    tracing::error!(pusher = ?self.target.key, error = %e, "push delivery failed; retrying");
                    if let Next::Stop = self.pause().await {
                        return;
                    }
                    continue;
                }
            }
            match self.rx.recv().await {
                Some(wake) => self.take(wake),
                None => return,
            }
        }
    }

    fn take(&mut self, wake: Wake) {
        match wake {
            Wake::Notification(position, room) => {
                if position > self.state.delivered_upto {
                    self.queue.insert((position, room));
                }
                if self.queue.len() > MAX_QUEUED {
                    let newest = self.queue.last().map_or(0, |(position, _)| *position);
                    self.backlog_until = self.backlog_until.max(newest);
                    self.queue.clear();
                }
            }
            Wake::Badge => self.badge_due = true,
        }
    }

    /// Delivers what is queued (every hint a worker gets is for a visible position), in
    /// order, then a due badge update.
    async fn deliver_queued(&mut self) -> Result<Next> {
        loop {
            // Read again each time: hints taken while a delivery was retried are for
            // positions that became visible meanwhile.
            let upto = self.shared.store.visible_position();
            if self.state.delivered_upto < self.backlog_until.min(upto) {
                self.read_backlog(upto)?;
            }
            let Some((position, room)) = self.queue.first().cloned() else { break };
            if let Next::Stop = self.deliver(position, &room).await? {
                return Ok(Next::Stop);
            }
            self.queue.remove(&(position, room));
        }
        if self.badge_due {
            self.badge_due = false;
            self.send_badge().await?;
        }
        Ok(Next::Continue)
    }

    /// Queues the oldest undelivered notifications from the store.
    fn read_backlog(&mut self, upto: u64) -> Result<()> {
        let store = &self.shared.store;
        let user = &self.target.key.user_id;
        let rooms: Vec<OwnedRoomId> = store.user_rooms(user)?.into_iter().map(|(room, _)| room).collect();
        let found = store.notifications_after(user, &rooms, self.state.delivered_upto, upto, MAX_QUEUED)?;
        if found.len() < MAX_QUEUED && upto >= self.backlog_until {
            self.backlog_until = 0;
        }
        // What the backlog does not hold up to where it reached is not for this user.
        let reached = if found.len() < MAX_QUEUED { upto } else { found.last().map_or(upto, |(p, _)| *p) };
        self.queue.retain(|(position, _)| *position > reached);
        self.queue.extend(found.into_iter().map(|(position, record)| (position, record.room_id)));
        if self.queue.first().is_none_or(|(position, _)| *position > reached) {
            self.state.delivered_upto = self.state.delivered_upto.max(reached);
        }
        Ok(())
    }

    /// Delivers one notification, retrying until the gateway takes it or it is given up.
    async fn deliver(&mut self, position: u64, room: &OwnedRoomId) -> Result<Next> {
        let shared = self.shared.clone();
        let store = &shared.store;
        let user = &self.target.key.user_id.clone();
        if position <= self.state.delivered_upto {
            return Ok(Next::Continue);
        }
        let record = store.notification_at(user, room, position)?;
        // Read meanwhile (on another device), or gone: nothing to ring for.
        let unread = match &record {
            Some(record) => {
                store.read_marks(user, room)?.read_upto(record.thread.as_deref().map(|t| t.as_str()))
                    < position
            }
            None => false,
        };
        let event = match record.as_ref().filter(|_| unread) {
            Some(record) => shared.events.get(store, &record.event_id)?,
            None => None,
        };
        let (Some(record), Some(event)) = (record, event) else {
            // Not persisted on its own: a restart just skips it again.
            self.state.delivered_upto = position;
            return Ok(Next::Continue);
        };
        loop {
            if !store.pusher_exists(&self.target.key)? {
                return Ok(Next::Stop);
            }
            let badge = shared.counter.badge(store, user)?;
            let notification = self.target.event_notification(
                &self.state,
                &event,
                &record.actions,
                badge,
                shared.config.include_content,
            );
            match shared.gateway.notify(&self.url, notification, None).await {
                Ok(rejected) => {
                    count("delivered");
                    self.last_badge = Some(badge);
                    return self.delivered(position, &rejected).await;
                }
                Err(e) => {
                    let now = now_ms();
                    let since = *self.state.failing_since.get_or_insert(now);
                    if now.saturating_sub(since) >= shared.config.give_up_after_secs.saturating_mul(1000) {
                        count("dropped");
                        tracing::warn!(pusher = ?self.target.key, event = %event.event_id, error = %e,
                            "push gateway failing for too long: notification dropped");
                        self.state.delivered_upto = position;
                        self.save();
                        return Ok(Next::Continue);
                    }
                    count("failed");
                    if since == now {
                        tracing::warn!(pusher = ?self.target.key, error = %e, "push gateway failed; retrying with backoff");
                        self.save();
                    } else {
                        tracing::debug!(pusher = ?self.target.key, error = %e, "push gateway still failing");
                    }
                    if let Next::Stop = self.pause().await {
                        return Ok(Next::Stop);
                    }
                }
            }
        }
    }

    /// After the gateway took the notification at `position`.
    async fn delivered(&mut self, position: u64, rejected: &[String]) -> Result<Next> {
        self.retry = FIRST_RETRY;
        self.state.failing_since = None;
        self.state.delivered_upto = position;
        if rejected.contains(&self.target.key.pushkey) {
            count("rejected");
            tracing::info!(pusher = ?self.target.key, "the push gateway rejected the push key: pusher removed");
            self.shared.store.remove_pusher(&self.target.key).await?;
            return Ok(Next::Stop);
        }
        self.save();
        Ok(Next::Continue)
    }

    /// Records the cursor, to be written with the others, unless the pusher was removed or
    /// replaced meanwhile (see [`Delivery::pusher_removed`]).
    fn save(&self) {
        let mut moved = self.shared.moved_cursors.lock().expect("never poisoned");
        if !self.rx.is_closed() {
            moved.insert(self.target.key.clone(), self.state.clone());
        }
    }

    /// Waits out the backoff, taking hints meanwhile; stops if the pusher is removed.
    async fn pause(&mut self) -> Next {
        let wait = tokio::time::sleep(self.retry);
        tokio::pin!(wait);
        self.retry = (self.retry * 2).min(LAST_RETRY);
        loop {
            tokio::select! {
                () = &mut wait => return Next::Continue,
                wake = self.rx.recv() => match wake {
                    Some(wake) => self.take(wake),
                    None => return Next::Stop,
                },
            }
        }
    }

    /// Sends the badge if it changed since the gateway last heard it. Not retried: the next
    /// notification carries the count anyway.
    async fn send_badge(&mut self) -> Result<()> {
        let badge = self.shared.counter.badge(&self.shared.store, &self.target.key.user_id)?;
        if self.last_badge == Some(badge) {
            return Ok(());
        }
        let notification = self.target.badge_notification(&self.state);
        match self.shared.gateway.notify(&self.url, notification, Some(badge)).await {
            Ok(_) => {
                count("badge");
                self.last_badge = Some(badge);
            }
            Err(e) => tracing::debug!(pusher = ?self.target.key, error = %e, "badge update failed"),
        }
        Ok(())
    }
}

fn count(outcome: &'static str) {
    metrics().pushes.get_or_create(&PushLabels { outcome }).inc();
}
