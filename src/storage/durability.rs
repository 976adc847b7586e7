//! Group commit: many writers, one fsync.
//!
//! A writer that needs its data on disk takes a ticket (a number that only grows) and waits
//! until a flush that *started after* the ticket was taken has finished. One background
//! task runs flushes back to back: each flush covers every ticket handed out before it
//! began. So 32 concurrent writers cost about one or two fsyncs, not 32, and no writer is
//! answered before its data is durable.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{Notify, watch};

use super::{Result, StorageError};

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
    wake_flusher: Notify,
}

impl GroupCommit {
    /// Starts the flusher on the current tokio runtime when there is one. Without a runtime
    /// (a synchronous caller), `wait` is never used and nothing is started.
    pub fn new(db: sled::Db) -> Self {
        let shared = Arc::new(Shared { next_ticket: AtomicU64::new(1), wake_flusher: Notify::new() });
        let (done_tx, done) = watch::channel(Flushed::UpTo(0));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flusher(db, shared.clone(), done_tx));
        }
        Self { shared, done }
    }

    pub async fn wait(&self) -> Result<()> {
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::SeqCst);
        self.shared.wake_flusher.notify_one();
        let mut done = self.done.clone();
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
}

async fn flusher(db: sled::Db, shared: Arc<Shared>, done: watch::Sender<Flushed>) {
    let mut flushed = 0;
    loop {
        // Tickets below `covered` were all taken before this flush starts.
        let covered = shared.next_ticket.load(Ordering::SeqCst) - 1;
        if covered == flushed {
            tokio::select! {
                _ = shared.wake_flusher.notified() => continue,
                _ = done.closed() => return,
            }
        }
        let db = db.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || db.flush()).await;
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
