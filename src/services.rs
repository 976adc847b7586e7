//! The domains of one running server (or of one CLI invocation on a stopped server),
//! wired together bottom-up: each domain gets the narrow handles it calls, never this
//! struct. Handlers receive an `Arc<Services>`.

use std::sync::{Arc, Mutex};

use ruma::OwnedServerName;
use tokio::sync::mpsc;

use crate::{
    account_data::AccountData,
    accounts::{AccountRules, Accounts},
    appservices::Appservices,
    archive::Archive,
    config::Config,
    e2ee::E2ee,
    federation::Federation,
    media::Media,
    notifier::Notifier,
    outbound::OutboundPolicy,
    outbox::Outbox,
    presence::Presence,
    push::Push,
    rooms::{Rooms, RoomsDeps},
    search::Search,
    signing_key::SigningKey,
    storage::Store,
    sync::Sync,
};

pub struct Services {
    pub config: Config,
    store: Arc<Store>,
    pub accounts: Arc<Accounts>,
    /// Bridges and bots: their tokens, namespaces and delivery queues.
    pub appservices: Arc<Appservices>,
    pub rooms: Arc<Rooms>,
    pub sync: Sync,
    pub search: Search,
    pub account_data: Arc<AccountData>,
    pub push: Arc<Push>,
    pub e2ee: Arc<E2ee>,
    pub media: Arc<Media>,
    /// Whole-server backups and the integrity checks.
    pub archive: Archive,
    pub presence: Arc<Presence>,
    /// The server's ed25519 key: signs every PDU and the published key list.
    pub signing_key: Arc<SigningKey>,
    pub federation: Arc<Federation>,
    /// Wake-ups of the outbound queue, for the sender a running server starts (the CLI
    /// starts none: what it queues waits in the store for the server).
    pub outbound_wakeups: Mutex<Option<mpsc::UnboundedReceiver<OwnedServerName>>>,
}

impl Services {
    /// Wires the domains over an open store; loads (or creates) the signing key.
    pub fn new(config: Config, store: Arc<Store>) -> Result<Self, String> {
        let server_name = &config.server_name;
        let key = Arc::new(SigningKey::load_or_generate(&config.data_dir)?);
        let notifier = Arc::new(Notifier::default());
        let outbound = Arc::new(OutboundPolicy::new(config.outbound.allowed_networks.clone()));
        let federation = Arc::new(Federation::new(
            store.clone(),
            server_name.clone(),
            key.clone(),
            config.federation.clone(),
            outbound.clone(),
        ));
        let (outbox, outbound_wakeups) =
            Outbox::new(store.clone(), server_name.clone(), config.federation.clone());
        let outbox = Arc::new(outbox);
        let appservices = Arc::new(Appservices::load(
            store.clone(),
            server_name.clone(),
            &config.app_service_config_files,
        )?);
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            notifier.clone(),
            server_name.clone(),
            AccountRules {
                registration: config.registration.mode,
                token_login: config.login.token_login,
                shared_secret: config.registration.shared_secret().map_err(|e| e.0)?,
                failed_login_limit: config.rate_limits.enabled.then_some(config.rate_limits.failed_login),
            },
            federation.clone(),
            appservices.clone(),
        ));
        let account_data = Arc::new(AccountData::new(store.clone(), notifier.clone()));
        let push =
            Arc::new(Push::new(store.clone(), account_data.clone(), config.push.clone(), outbound.clone()));
        let e2ee = Arc::new(E2ee::new(
            store.clone(),
            notifier.clone(),
            server_name.clone(),
            outbox.clone(),
            federation.clone(),
            accounts.clone(),
            appservices.clone(),
        ));
        let rooms = Rooms::new(
            server_name.clone(),
            key.clone(),
            RoomsDeps {
                store: store.clone(),
                notifier: notifier.clone(),
                push: push.clone(),
                outbox: outbox.clone(),
                federation: federation.clone(),
                accounts: accounts.clone(),
                account_data: account_data.clone(),
                appservices: appservices.clone(),
            },
        );
        let presence = Arc::new(Presence::new(
            config.presence.enabled,
            server_name.clone(),
            store.clone(),
            notifier.clone(),
            outbox.clone(),
        ));
        let sync = Sync::new(
            store.clone(),
            notifier,
            account_data.clone(),
            push.clone(),
            e2ee.clone(),
            presence.clone(),
            &config.sliding_sync,
        );
        let search = Search::new(store.clone(), rooms.clone());
        let media = Arc::new(Media::new(
            store.clone(),
            &config.data_dir,
            server_name.clone(),
            &config.media,
            federation.clone(),
            outbound,
        ));
        let archive = Archive::new(store.clone(), media.clone(), &config.data_dir, server_name.to_string());
        Ok(Self {
            config,
            store,
            accounts,
            appservices,
            rooms,
            sync,
            search,
            account_data,
            push,
            e2ee,
            media,
            archive,
            presence,
            signing_key: key,
            federation,
            outbound_wakeups: Mutex::new(Some(outbound_wakeups)),
        })
    }

    /// The database's size on disk; an error means it cannot be read at all (`/health`
    /// answers 503 then).
    pub fn database_size(&self) -> crate::storage::Result<u64> {
        self.store.size_on_disk()
    }
}
