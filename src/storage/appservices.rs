//! Application services: the registrations added at run time (`myelin appservice
//! register`; those listed in the config file are read from their files at each start),
//! and each service's durable queue of what it is to be sent.
//!
//! Trees and keys:
//! - `appservice_registrations`: service id → the registration as JSON
//! - `appservice_queue`: service id, `0xff`, sequence (big-endian) → [`AppserviceItem`]

use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, Store, composite_key, decode, encode, positioned, prefix_of};

/// One thing waiting to go to an application service in a transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AppserviceItem {
    /// A room event in the client-server API's format, as it goes in `events`. Kept whole
    /// rather than by id: the queue is short-lived, and the service is sent the event as
    /// it was when it happened, even if the room is purged meanwhile.
    Event(JsonValue),
    /// Typing, a receipt or presence, as it goes in `ephemeral` (MSC2409).
    Ephemeral(JsonValue),
    /// A to-device message for one of the service's users, as it goes in
    /// `de.sorunome.msc2409.to_device` (MSC4203).
    ToDevice(JsonValue),
}

impl Store {
    /// Registrations added at run time, as JSON.
    pub fn appservice_registrations(&self) -> Result<Vec<JsonValue>> {
        self.appservice_registrations
            .iter()
            .values()
            .map(|value| decode("appservice registration", &value?))
            .collect()
    }

    /// Adds or replaces a run-time registration, durably.
    pub async fn store_appservice_registration(&self, id: &str, registration: &JsonValue) -> Result<()> {
        self.appservice_registrations.insert(id.as_bytes(), encode(registration))?;
        self.durable().await
    }

    /// Removes a run-time registration and drops whatever was queued for it, durably.
    /// Answers whether there was one.
    pub async fn remove_appservice_registration(&self, id: &str) -> Result<bool> {
        let existed = self.appservice_registrations.remove(id.as_bytes())?.is_some();
        self.clear_appservice_queue(id).await?;
        Ok(existed)
    }

    /// Queues items for service `id`; durable with the caller's next [`Store::durable`].
    pub fn enqueue_for_appservice(&self, id: &str, item: &AppserviceItem) -> Result<()> {
        let seq = self.db.generate_id()?;
        self.appservice_queue.insert(composite_key(&[id.as_bytes(), &seq.to_be_bytes()]), encode(item))?;
        Ok(())
    }

    /// The oldest queued items for service `id`, with their sequence numbers.
    pub fn appservice_queue(&self, id: &str, limit: usize) -> Result<Vec<(u64, AppserviceItem)>> {
        self.appservice_queue
            .scan_prefix(prefix_of(id.as_bytes()))
            .take(limit)
            .map(|item| positioned("appservice item", item))
            .collect()
    }

    /// Drops items the service acknowledged.
    pub async fn remove_from_appservice_queue(&self, id: &str, seqs: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(composite_key(&[id.as_bytes(), &seq.to_be_bytes()]));
        }
        self.appservice_queue.apply_batch(batch)?;
        self.durable().await
    }

    /// Drops everything queued for service `id` (it was removed).
    pub async fn clear_appservice_queue(&self, id: &str) -> Result<()> {
        let mut batch = sled::Batch::default();
        for key in self.appservice_queue.scan_prefix(prefix_of(id.as_bytes())).keys() {
            batch.remove(key?);
        }
        self.appservice_queue.apply_batch(batch)?;
        self.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queues_are_per_service_and_in_order() {
        let dir = super::super::scratch_dir("appservice-queue");
        let store = Store::open(&dir, 8).unwrap();
        for n in 0..3 {
            store
                .enqueue_for_appservice("irc", &AppserviceItem::Event(serde_json::json!({ "n": n })))
                .unwrap();
        }
        store.enqueue_for_appservice("ir", &AppserviceItem::Event(serde_json::json!({ "n": 9 }))).unwrap();
        let queued = store.appservice_queue("irc", 10).unwrap();
        let numbers: Vec<_> = queued
            .iter()
            .map(|(_, item)| match item {
                AppserviceItem::Event(event) => event["n"].as_u64().unwrap(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(numbers, [0, 1, 2], "only irc's items, oldest first");
        store.remove_from_appservice_queue("irc", &[queued[0].0]).await.unwrap();
        assert_eq!(store.appservice_queue("irc", 10).unwrap().len(), 2);
        store.clear_appservice_queue("irc").await.unwrap();
        assert!(store.appservice_queue("irc", 10).unwrap().is_empty());
        assert_eq!(store.appservice_queue("ir", 10).unwrap().len(), 1, "another service's queue stays");
        std::fs::remove_dir_all(dir).ok();
    }
}
