//! The domains of one running server (or of one CLI invocation on a stopped server),
//! wired together. Handlers receive an `Arc<Services>`.

use std::sync::{Arc, Mutex};

use ruma::OwnedServerName;
use tokio::sync::mpsc;

use crate::{
    account_data::AccountData,
    accounts::Accounts,
    config::Config,
    e2ee::E2ee,
    federation::{Federation, outbox::Outbox, signing_key::SigningKey},
    media::Media,
    presence::Presence,
    push::Push,
    rooms::Rooms,
    storage::Store,
    sync::{Sync, notifier::Notifier},
};

pub struct Services {
    pub config: Config,
    pub store: Arc<Store>,
    pub accounts: Accounts,
    pub rooms: Rooms,
    pub sync: Sync,
    pub account_data: Arc<AccountData>,
    pub push: Arc<Push>,
    pub e2ee: Arc<E2ee>,
    pub media: Media,
    pub presence: Arc<Presence>,
    /// The server's ed25519 key: signs every PDU and the published key list.
    pub signing_key: Arc<SigningKey>,
    pub federation: Federation,
    /// Wake-ups of the outbound queue, for the sender a running server starts (the CLI
    /// starts none: what it queues waits in the store for the server).
    pub outbound_wakeups: Mutex<Option<mpsc::UnboundedReceiver<OwnedServerName>>>,
}

impl Services {
    /// Wires the domains over an open store; loads (or creates) the signing key.
    pub fn new(config: Config, store: Arc<Store>) -> Result<Self, String> {
        let key = Arc::new(SigningKey::load_or_generate(&config.data_dir)?);
        let notifier = Arc::new(Notifier::default());
        let accounts = Accounts::new(
            store.clone(),
            notifier.clone(),
            config.server_name.clone(),
            config.registration.mode,
        );
        let account_data = Arc::new(AccountData::new(store.clone(), notifier.clone()));
        let push = Arc::new(Push::new(store.clone(), account_data.clone()));
        let (outbox, outbound_wakeups) =
            Outbox::new(store.clone(), config.server_name.clone(), config.federation.clone());
        let outbox = Arc::new(outbox);
        let rooms = Rooms::new(
            store.clone(),
            config.server_name.clone(),
            key.clone(),
            notifier.clone(),
            push.clone(),
            outbox.clone(),
        );
        let e2ee =
            Arc::new(E2ee::new(store.clone(), notifier.clone(), config.server_name.clone(), outbox.clone()));
        let federation = Federation::new(
            store.clone(),
            config.server_name.clone(),
            key.clone(),
            config.federation.clone(),
            outbox,
        );
        let presence = Arc::new(Presence::new(config.presence.enabled, store.clone(), notifier.clone()));
        let sync = Sync::new(
            store.clone(),
            notifier,
            account_data.clone(),
            push.clone(),
            e2ee.clone(),
            presence.clone(),
        );
        let media = Media::new(
            store.clone(),
            &config.data_dir,
            config.server_name.clone(),
            config.media.max_upload_bytes,
        );
        Ok(Self {
            config,
            store,
            accounts,
            rooms,
            sync,
            account_data,
            push,
            e2ee,
            media,
            presence,
            signing_key: key,
            federation,
            outbound_wakeups: Mutex::new(Some(outbound_wakeups)),
        })
    }
}
