//! The domains of one running server (or of one CLI invocation on a stopped server),
//! wired together. Handlers receive an `Arc<Services>`.

use std::sync::Arc;

use crate::{accounts::Accounts, config::Config, storage::Store};

pub struct Services {
    pub config: Config,
    pub store: Arc<Store>,
    pub accounts: Accounts,
}

impl Services {
    pub fn new(config: Config, store: Arc<Store>) -> Self {
        let accounts = Accounts::new(store.clone(), config.server_name.clone(), config.registration.mode);
        Self { config, store, accounts }
    }
}
