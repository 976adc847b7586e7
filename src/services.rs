//! The domains of one running server (or of one CLI invocation on a stopped server),
//! wired together. Handlers receive an `Arc<Services>`.

use std::sync::Arc;

use crate::{
    accounts::Accounts, config::Config, federation::signing_key::SigningKey, rooms::Rooms, storage::Store,
};

pub struct Services {
    pub config: Config,
    pub store: Arc<Store>,
    pub accounts: Accounts,
    pub rooms: Rooms,
    /// The server's ed25519 key: signs every PDU and the published key list.
    pub signing_key: Arc<SigningKey>,
}

impl Services {
    /// Wires the domains over an open store; loads (or creates) the signing key.
    pub fn new(config: Config, store: Arc<Store>) -> Result<Self, String> {
        let key = Arc::new(SigningKey::load_or_generate(&config.data_dir)?);
        let accounts = Accounts::new(store.clone(), config.server_name.clone(), config.registration.mode);
        let rooms = Rooms::new(store.clone(), config.server_name.clone(), key.clone());
        Ok(Self { config, store, accounts, rooms, signing_key: key })
    }
}
