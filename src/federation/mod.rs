//! Federation: talking to other homeservers over the server-server API. This is the
//! transport that the domains use when they need another server; what those servers'
//! answers mean for rooms, keys and media is each domain's business.
//!
//! - [`client`]: outbound requests (X-Matrix signatures, ruma types), sent where
//!   [`discovery`] finds each server (`.well-known`, SRV, port 8448).
//! - [`keys`]: other servers' keys, fetched and cached, to verify what they signed.
//! - [`verify`]: the checks every PDU from another server passes (format, signatures,
//!   content hash) before a domain looks at it.
//! - [`sender`]: delivery of the durable outbound queue ([`crate::outbox`]).
//! - [`transactions`]: which inbound transactions were already handled.

pub mod client;
pub mod discovery;
pub mod keys;
pub mod sender;
pub mod transactions;
pub mod verify;

use std::sync::Arc;

use ruma::{OwnedServerName, ServerName};

use self::{client::FederationClient, keys::KeyRing, sender::Sender};
use crate::{config::FederationConfig, outbound::OutboundPolicy, signing_key::SigningKey, storage::Store};

pub use client::FederationError;
pub use verify::{CheckedPdu, event_id_of};

/// The federation parts of a running server.
pub struct Federation {
    pub client: Arc<FederationClient>,
    pub keys: KeyRing,
    pub sender: Arc<Sender>,
    pub transactions: transactions::InboundTransactions,
    config: FederationConfig,
}

impl Federation {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        config: FederationConfig,
        outbound: Arc<OutboundPolicy>,
    ) -> Self {
        let client = Arc::new(FederationClient::new(server_name, key.clone(), config.clone(), outbound));
        Self {
            keys: KeyRing::new(store.clone(), key),
            sender: Sender::new(store.clone(), client.clone()),
            transactions: transactions::InboundTransactions::new(store),
            client,
            config,
        }
    }

    /// Whether requests from `server` are accepted at all.
    pub fn accepts(&self, server: &ServerName) -> bool {
        self.config.allows(server)
    }
}
