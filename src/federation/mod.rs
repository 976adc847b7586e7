//! Federation: talking to other homeservers over the server-server API.
//!
//! - [`signing_key`]: our ed25519 key, which signs every PDU and every outbound request.
//! - [`client`]: outbound requests (X-Matrix signatures, ruma types), sent where
//!   [`discovery`] finds each server (`.well-known`, SRV, port 8448).
//! - [`keys`]: other servers' keys, fetched and cached, to verify what they signed.
//! - [`outbox`] and [`sender`]: the durable outbound queue and its delivery.
//! - [`inbound`]: checking what other servers send (signatures, hashes, auth) and applying
//!   it: PDUs through `rooms`, EDUs to typing, receipts, to-device and device lists.
//! - [`membership`]: joins and invites that cross servers.
//! - [`media`]: other servers' files, fetched once and cached.
//! - [`directory`]: other servers' public room directories.
//! - [`e2ee`]: other servers' users' keys, and to-device messages for them.

pub mod client;
pub mod directory;
pub mod discovery;
pub mod e2ee;
pub mod inbound;
pub mod keys;
pub mod media;
pub mod membership;
pub mod outbox;
pub mod sender;
pub mod signing_key;

use std::sync::Arc;

use ruma::ServerName;

use self::{client::FederationClient, keys::KeyRing, sender::Sender};
use crate::{config::FederationConfig, storage::Store};

/// The federation parts of a running server.
pub struct Federation {
    pub client: Arc<FederationClient>,
    /// The outbound queue, shared with the domains that queue PDUs and EDUs.
    pub outbox: Arc<outbox::Outbox>,
    pub keys: KeyRing,
    pub sender: Arc<Sender>,
    pub config: FederationConfig,
}

impl Federation {
    pub fn new(
        store: Arc<Store>,
        server_name: ruma::OwnedServerName,
        key: Arc<signing_key::SigningKey>,
        config: FederationConfig,
        outbox: Arc<outbox::Outbox>,
    ) -> Self {
        let client = Arc::new(FederationClient::new(server_name, key.clone(), config.clone()));
        Self {
            outbox,
            keys: KeyRing::new(store.clone(), key),
            sender: Sender::new(store, client.clone()),
            client,
            config,
        }
    }

    /// Whether requests from `server` are accepted at all.
    pub fn accepts(&self, server: &ServerName) -> bool {
        self.config.allows(server)
    }
}
