//! The durable outbound queue's front door: domains put PDUs and EDUs for other servers
//! here, in the same flush as the write that caused them, and federation's sender delivers
//! them. Nothing queued is lost on a crash: the queue lives in the store and the sender
//! resumes it on start. It sits below the domains, so `rooms` and `e2ee` can queue without
//! knowing how delivery works.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{OwnedServerName, ServerName};
use tokio::sync::mpsc;

use crate::{
    config::FederationConfig,
    storage::{Outgoing, Result, Store},
};

pub struct Outbox {
    store: Arc<Store>,
    own: OwnedServerName,
    config: FederationConfig,
    /// Destinations with new items; the sender's receiver. Closed when no sender runs
    /// (the CLI on a stopped server): the items wait in the store for the next start.
    wake: mpsc::UnboundedSender<OwnedServerName>,
}

impl Outbox {
    pub fn new(
        store: Arc<Store>,
        own: OwnedServerName,
        config: FederationConfig,
    ) -> (Self, mpsc::UnboundedReceiver<OwnedServerName>) {
        let (wake, woken) = mpsc::unbounded_channel();
        (Self { store, own, config, wake }, woken)
    }

    /// The other servers among `servers` that federation may reach.
    pub fn remote<'a>(&self, servers: impl IntoIterator<Item = &'a ServerName>) -> BTreeSet<OwnedServerName> {
        servers
            .into_iter()
            .filter(|server| *server != self.own && self.config.allows(server))
            .map(ToOwned::to_owned)
            .collect()
    }

    /// Queues `item` for each destination. The write becomes durable with the caller's next
    /// `Store::durable`; call [`Outbox::wake`] after that.
    pub fn queue(&self, destinations: &BTreeSet<OwnedServerName>, item: Outgoing) -> Result<()> {
        for destination in destinations {
            self.store.enqueue_outgoing(destination, std::slice::from_ref(&item))?;
        }
        Ok(())
    }

    /// Tells the sender that `destinations` have new items.
    pub fn wake(&self, destinations: impl IntoIterator<Item = OwnedServerName>) {
        for destination in destinations {
            let _ = self.wake.send(destination);
        }
    }

    /// Queues an EDU and wakes the sender once it is durable.
    pub async fn send_edu(
        &self,
        destinations: BTreeSet<OwnedServerName>,
        edu: serde_json::Value,
    ) -> Result<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        self.queue(&destinations, Outgoing::Edu(edu))?;
        self.store.durable().await?;
        self.wake(destinations);
        Ok(())
    }
}
