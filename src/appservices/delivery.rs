//! Sending each service its queue: one worker per service takes the oldest items, sends
//! them as one transaction (`PUT /_matrix/app/v1/transactions/{txnId}`), and drops them
//! only once the service answered 200. A service that is down is retried with growing
//! pauses, forever: the queue is in the store, so nothing is lost meanwhile, a restart
//! included, and nothing is sent out of order.

use std::{sync::Arc, time::Duration};

use ruma::{api::appservice::event::push_events::v1::Request, serde::Raw};

use super::{Appservices, Service, queries};
use crate::storage::AppserviceItem;

/// Items in one transaction (Synapse sends up to 100 events).
const BATCH: usize = 100;

/// A service slower than this to answer a transaction is treated as down.
const TIMEOUT: Duration = Duration::from_secs(60);

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// Starts the worker for `service`; it stops once the service is removed or replaced.
pub fn start(appservices: Arc<Appservices>, service: Arc<Service>) {
    if service.registered.url().is_none() {
        return;
    }
    tokio::spawn(async move { run(appservices, service).await });
}

async fn run(appservices: Arc<Appservices>, service: Arc<Service>) {
    let id = service.registered.id().to_owned();
    let wakeup = appservices.wakeup(&id);
    let mut pause = FIRST_RETRY;
    loop {
        let current = appservices.by_id(&id);
        if !current.is_some_and(|current| Arc::ptr_eq(&current, &service)) {
            return;
        }
        let items = match appservices.store.appservice_queue(&id, BATCH) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(appservice = %id, error = %e, "cannot read the appservice queue");
                tokio::time::sleep(LONGEST_RETRY).await;
                continue;
            }
        };
        if items.is_empty() {
            wakeup.notified().await;
            continue;
        }
        let seqs: Vec<u64> = items.iter().map(|(seq, _)| *seq).collect();
        let request = transaction(&seqs, items.into_iter().map(|(_, item)| item));
        let sent =
            queries::put_transaction(appservices.queries.http(), &service.registered, request, TIMEOUT).await;
        match sent {
            Ok(()) => {
                pause = FIRST_RETRY;
                if let Err(e) = appservices.store.remove_from_appservice_queue(&id, &seqs).await {
                    tracing::error!(appservice = %id, error = %e, "cannot drop delivered items");
                }
            }
            Err(e) => {
                tracing::warn!(appservice = %id, error = %e, retry_in = ?pause, "appservice transaction failed");
                // A new item does not cut the pause short; a removal of the service does.
                let _ = tokio::time::timeout(pause, async {
                    loop {
                        wakeup.notified().await;
                        if !appservices.by_id(&id).is_some_and(|current| Arc::ptr_eq(&current, &service)) {
                            return;
                        }
                    }
                })
                .await;
                pause = (pause * 2).min(LONGEST_RETRY);
            }
        }
    }
}

/// The transaction carrying `items`. Its id names the first and last item, so a retry of
/// the same items reuses it (and the service can tell it already has them), while a retry
/// that carries more is a new transaction.
fn transaction(seqs: &[u64], items: impl Iterator<Item = AppserviceItem>) -> Request {
    let first = seqs.first().copied().unwrap_or_default();
    let last = seqs.last().copied().unwrap_or_default();
    let mut request = Request::new(format!("{first}-{last}").into(), Vec::new());
    for item in items {
        match item {
            AppserviceItem::Event(event) => request.events.push(raw(&event)),
            AppserviceItem::Ephemeral(edu) => request.ephemeral.push(raw(&edu)),
            AppserviceItem::ToDevice(message) => request.to_device.push(raw(&message)),
        }
    }
    request
}

fn raw<T>(json: &serde_json::Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(json).expect("JSON values serialise"))
}
