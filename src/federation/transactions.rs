//! Inbound transactions (`PUT /send/{txnId}`) are handled once: a server that retries a
//! transaction it already sent (after a timeout, say) gets the answer without the PDUs
//! and EDUs being applied again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedServerName, ServerName};

use crate::storage::{Result, Store};

pub struct InboundTransactions {
    store: Arc<Store>,
    /// One lock per origin. A server sends one transaction at a time (the spec asks it to),
    /// so this costs nothing in the normal case and makes "seen? then handle, then mark"
    /// atomic when a retry races the original.
    origins: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
}

impl InboundTransactions {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, origins: Mutex::default() }
    }

    /// Runs `handle` for the transaction unless it was handled before; `None` then.
    pub async fn handle_once<T>(
        &self,
        origin: &ServerName,
        txn_id: &str,
        handle: impl Future<Output = T>,
    ) -> Result<Option<T>> {
        let lock = self.origins.lock().expect("never poisoned").entry(origin.to_owned()).or_default().clone();
        let _serialised = lock.lock().await;
        if self.store.inbound_txn_seen(origin, txn_id)? {
            return Ok(None);
        }
        let outcome = handle.await;
        self.store.mark_inbound_txn(origin, txn_id).await?;
        Ok(Some(outcome))
    }
}
