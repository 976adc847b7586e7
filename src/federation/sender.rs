//! Delivers the outbound queue: one worker per destination with at most one transaction in
//! flight, PDUs and EDUs batched into `PUT /send/{txnId}`, exponential backoff while the
//! destination is down, and a fresh try as soon as that server contacts us.
//!
//! A transaction's id is the sequence number of its first item, so a retry after a crash
//! or a timeout reuses the id and the receiver can drop the duplicate.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName,
    api::federation::transactions::send_transaction_message, serde::Raw,
};
use tokio::sync::{Notify, mpsc};

use super::client::FederationClient;
use crate::storage::{Outgoing, Store};

/// The spec's limits per transaction.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Worker {
    /// New items were queued.
    queued: Notify,
    /// The destination contacted us: it is up again, skip the rest of the backoff.
    alive: Notify,
}

pub struct Sender {
    store: Arc<Store>,
    client: Arc<FederationClient>,
    workers: Mutex<HashMap<OwnedServerName, Arc<Worker>>>,
}

impl Sender {
    pub fn new(store: Arc<Store>, client: Arc<FederationClient>) -> Arc<Self> {
        Arc::new(Self { store, client, workers: Mutex::default() })
    }

    /// Resumes what was queued before the last stop, then serves wake-ups until the outbox
    /// goes away.
    pub async fn run(self: Arc<Self>, mut woken: mpsc::UnboundedReceiver<OwnedServerName>) {
        match self.store.destinations_with_outgoing() {
            Ok(pending) => {
                for destination in pending {
                    self.worker(&destination).queued.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbound queue"),
        }
        while let Some(destination) = woken.recv().await {
            self.worker(&destination).queued.notify_one();
        }
    }

    /// Called when `server` sends us a request: a worker backing off from it retries now.
    pub fn heard_from(&self, server: &ServerName) {
        if let Some(worker) = self.workers.lock().expect("never poisoned").get(server) {
            worker.alive.notify_one();
        }
    }

    fn worker(self: &Arc<Self>, destination: &ServerName) -> Arc<Worker> {
        let mut workers = self.workers.lock().expect("never poisoned");
        if let Some(worker) = workers.get(destination) {
            return worker.clone();
        }
        let worker = Arc::new(Worker::default());
        workers.insert(destination.to_owned(), worker.clone());
        tokio::spawn(self.clone().deliver(destination.to_owned(), worker.clone()));
        worker
    }

    async fn deliver(self: Arc<Self>, destination: OwnedServerName, worker: Arc<Worker>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let batch = match self.store.outgoing(&destination, MAX_PDUS + MAX_EDUS) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(%destination, error = %e, "cannot read the outbound queue");
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
            if batch.is_empty() {
                worker.queued.notified().await;
                continue;
            }
            match self.send_batch(&destination, &batch).await {
                Ok(sent) => {
                    backoff = FIRST_BACKOFF;
                    if let Err(e) = self.store.remove_outgoing(&destination, &sent).await {
                        tracing::error!(%destination, error = %e, "cannot drop delivered items");
                    }
                }
                Err(e) => {
                    tracing::warn!(%destination, error = %e, retry_in = ?backoff, "transaction not delivered");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = worker.alive.notified() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends one transaction of the oldest items; returns the sequence numbers it carried.
    async fn send_batch(
        &self,
        destination: &ServerName,
        batch: &[(u64, Outgoing)],
    ) -> Result<Vec<u64>, super::client::FederationError> {
        let mut pdus = Vec::new();
        let mut edus = Vec::new();
        let mut carried = Vec::new();
        for (seq, item) in batch {
            match item {
                Outgoing::Pdu(event_id) if pdus.len() < MAX_PDUS => {
                    // An event that is gone (never, today) has nothing left to send.
                    if let Ok(Some(stored)) = self.store.event(event_id) {
                        pdus.push(stored.pdu);
                    }
                }
                Outgoing::Edu(edu) if edus.len() < MAX_EDUS => {
                    if let Ok(raw) = serde_json::value::to_raw_value(edu) {
                        edus.push(Raw::from_json(raw));
                    }
                }
                _ => continue,
            }
            carried.push(*seq);
        }
        // The id names the first and the last item carried. A retry of the same items reuses
        // it, so a receiver that applied them before its answer was lost does not apply them
        // twice; a retry that carries more (queued meanwhile) has a new id, or the receiver
        // would take it for the one it has seen and drop the new items.
        let first = carried.first().copied().unwrap_or_default();
        let last = carried.last().copied().unwrap_or_default();
        let txn_id = OwnedTransactionId::from(format!("{first}-{last}"));
        let mut request = send_transaction_message::v1::Request::new(
            txn_id,
            self.client.server_name().to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus;
        request.edus = edus;
        let response = self.client.send(destination, request).await?;
        for (event_id, outcome) in response.pdus {
            if let Err(why) = outcome {
                tracing::warn!(%destination, %event_id, %why, "the destination refused an event");
            }
        }
        Ok(carried)
    }
}
