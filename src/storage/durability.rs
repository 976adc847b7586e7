//! Group commit: many writers, one fsync.
//!
//! A writer that needs its data on disk takes a ticket (a number that only grows) and waits
//! until a flush that *started after* the ticket was taken has finished. One background
//! task runs flushes back to back: each flush covers every ticket handed out before it
//! began. So 32 concurrent writers cost about one or two fsyncs, not 32, and no writer is
//! answered before its data is durable.
//!
//! A fast disk defeats that on its own: when a flush takes less time than building the next
//! event, every flush covers one writer, and the flushes' own CPU cost (sled wakes a pool of
//! I/O threads for each) became a third of the send path. So a writer may announce itself
//! before it starts building ([`announce_write`](super::Store::announce_write)); while announced writers have yet to
//! take their ticket, the flusher holds the next flush back for up to [`GATHER_WINDOW`] so
//! that they share it. With no writer announced, a flush starts at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

use super::{Result, StorageError};

/// The longest a flush waits for announced writers. Short against the latency a client
/// sees, long against building one event (a few hundred microseconds).
const GATHER_WINDOW: Duration = Duration::from_millis(2);

pub struct GroupCommit {
    shared: Arc<Shared>,
    done: watch::Receiver<Flushed>,
}

/// The flusher's progress.
#[derive(Debug, Clone)]
enum Flushed {
    /// Every ticket up to this one is durable.
    UpTo(u64),
    /// A flush failed; sled's state is unknown, so no later write is confirmed.
    Failed(String),
}

struct Shared {
    next_ticket: AtomicU64,
    /// Writers announced and not yet holding a ticket.
    announced: AtomicUsize,
    wake_flusher: Notify,
}

/// A writer on its way to a flush: see [`GroupCommit::announce`]. Dropping it without
/// calling [`Announced::durable`] (an error on the way) withdraws the announcement.
pub struct Announced {
    shared: Arc<Shared>,
    done: watch::Receiver<Flushed>,
}

impl Announced {
    /// Waits until everything this writer wrote is durable.
    pub async fn durable(self) -> Result<()> {
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::SeqCst);
        let done = self.done.clone();
        // Holding a ticket, the writer no longer holds the flush back; dropping says so.
        drop(self);
        wait_for(done, ticket).await
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.shared.announced.fetch_sub(1, Ordering::SeqCst);
        self.shared.wake_flusher.notify_one();
    }
}

impl GroupCommit {
    /// Starts the flusher on the current tokio runtime when there is one. Without a runtime
    /// (a synchronous caller), `wait` is never used and nothing is started.
    pub fn new(db: sled::Db) -> Self {
        let shared = Arc::new(Shared {
            next_ticket: AtomicU64::new(1),
            announced: AtomicUsize::new(0),
            wake_flusher: Notify::new(),
        });
        let (done_tx, done) = watch::channel(Flushed::UpTo(0));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flusher(db, shared.clone(), done_tx));
        }
        Self { shared, done }
    }

    /// Tells the flusher a write is coming, so that a flush about to start may wait for it.
    pub fn announce(&self) -> Announced {
        self.shared.announced.fetch_add(1, Ordering::SeqCst);
        Announced { shared: self.shared.clone(), done: self.done.clone() }
    }

    /// Waits until everything written before this call is durable.
    pub async fn wait(&self) -> Result<()> {
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::SeqCst);
        self.shared.wake_flusher.notify_one();
        wait_for(self.done.clone(), ticket).await
    }
}

async fn wait_for(mut done: watch::Receiver<Flushed>, ticket: u64) -> Result<()> {
    let state = done
        .wait_for(|state| match state {
            Flushed::UpTo(flushed) => *flushed >= ticket,
            Flushed::Failed(_) => true,
        })
        .await
        .map_err(|_| StorageError::Corrupt("the flusher stopped".to_owned()))?;
    match &*state {
        Flushed::UpTo(_) => Ok(()),
        Flushed::Failed(e) => Err(StorageError::Corrupt(format!("flush failed: {e}"))),
    }
}

async fn flusher(db: sled::Db, shared: Arc<Shared>, done: watch::Sender<Flushed>) {
    let mut flushed = 0;
    loop {
        if shared.next_ticket.load(Ordering::SeqCst) - 1 == flushed {
            tokio::select! {
                _ = shared.wake_flusher.notified() => continue,
                _ = done.closed() => return,
            }
        }
        gather(&shared).await;
        // Tickets below `covered` were all taken before this flush starts.
        let covered = shared.next_ticket.load(Ordering::SeqCst) - 1;
        let db = db.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let flushed = db.flush();
            // The flush seals sled's log buffer (a 512 KiB allocation) on this thread, and
            // sled defers freeing the sealed one to crossbeam-epoch, which holds up to 64
            // deferred frees per thread before handing them on to be run. With a flush per
            // group commit, written buffers raised peak RSS under load by some 30 MB.
            crossbeam_epoch::pin().flush();
            flushed
        })
        .await;
        match result {
            Ok(Ok(_)) => {
                let metrics = crate::metrics::metrics();
                metrics.flush_batch_writers.observe((covered - flushed) as f64);
                metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
                flushed = covered;
                done.send_replace(Flushed::UpTo(flushed));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "database flush failed; refusing further writes");
                done.send_replace(Flushed::Failed(e.to_string()));
                return;
            }
            Err(e) => {
                done.send_replace(Flushed::Failed(e.to_string()));
                return;
            }
        }
    }
}

/// Waits, up to [`GATHER_WINDOW`], until no announced writer is still on its way.
async fn gather(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + GATHER_WINDOW;
    while shared.announced.load(Ordering::SeqCst) > 0 {
        tokio::select! {
            _ = shared.wake_flusher.notified() => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}
