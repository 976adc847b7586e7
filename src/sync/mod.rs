//! Sync: the stream clients read. `/sync` responses ([`v3`]) shaped by [`filter`]s, and
//! [`sliding`] sync, both from the pieces in [`room_view`], and the [`SyncToken`]s `/sync`
//! hands out.
//! Long-polls wait on the [`crate::notifier`].

pub mod filter;
pub mod room_view;
pub mod sliding;
mod token;
mod v3;

use std::{sync::Arc, time::Duration};

use ruma::{
    api::client::filter::FilterDefinition, api::client::sync::sync_events::v3::Response,
    presence::PresenceState,
};

pub use token::SyncToken;
pub use v3::SyncParams;

use crate::{
    account_data::AccountData,
    accounts::Session,
    config::SlidingSyncConfig,
    e2ee::E2ee,
    notifier::Notifier,
    presence::Presence,
    push::Push,
    rooms::{Error, Result, Rooms},
    storage::Store,
};

pub struct Sync {
    store: Arc<Store>,
    /// What each sliding sync connection has sent.
    connections: sliding::connections::Connections,
    notifier: Arc<Notifier>,
    account_data: Arc<AccountData>,
    push: Arc<Push>,
    e2ee: Arc<E2ee>,
    presence: Arc<Presence>,
}

impl Sync {
    pub fn new(
        store: Arc<Store>,
        notifier: Arc<Notifier>,
        account_data: Arc<AccountData>,
        push: Arc<Push>,
        e2ee: Arc<E2ee>,
        presence: Arc<Presence>,
        sliding_config: &SlidingSyncConfig,
    ) -> Self {
        let connections = sliding::connections::Connections::new(
            sliding_config.max_connections,
            Duration::from_secs(sliding_config.idle_expiry_secs),
        );
        Self { store, connections, notifier, account_data, push, e2ee, presence }
    }

    /// Answers a `/sync`: at once if there is anything new since `params.since`, otherwise
    /// when something arrives for this user or `timeout` passes.
    ///
    /// Syncing from a token proves the client received the response that handed it out, so
    /// the to-device messages that response carried are deleted first; building the
    /// response itself only reads.
    pub async fn sync(
        &self,
        rooms: &Rooms,
        session: &Session,
        params: SyncParams,
        timeout: Duration,
    ) -> Result<Response> {
        if params.set_presence != PresenceState::Offline {
            self.presence.set(&session.user_id, params.set_presence.clone(), None)?;
        }
        if let Some(since) = &params.since {
            let through = since.to_device_through().min(self.store.visible_position());
            self.e2ee.acknowledge_to_device(&session.user_id, &session.device_id, through)?;
        }
        let builder = v3::Builder {
            store: &self.store,
            rooms,
            account_data: &self.account_data,
            push: &self.push,
            e2ee: &self.e2ee,
            presence: &self.presence,
            session,
            params: &params,
        };
        // An initial sync answers at once, even when it is empty.
        let timeout = if params.since.is_none() { Duration::ZERO } else { timeout };
        self.long_poll(session, timeout, || builder.build(), |result| result.as_ref().is_ok_and(v3::is_empty))
            .await
    }

    /// Runs `read` until it has something or `timeout` passes, reading again whenever the
    /// user is notified. The subscription is taken before the first read, so nothing
    /// written between a read and the wait is missed (see [`crate::notifier`]).
    async fn long_poll<T>(
        &self,
        session: &Session,
        timeout: Duration,
        read: impl FnMut() -> T,
        is_empty: impl Fn(&T) -> bool,
    ) -> T {
        let subscription = self.notifier.subscribe(&session.user_id);
        let waiting = &crate::metrics::metrics().sync_waiting;
        waiting.inc();
        let result =
            subscription.read_or_wait(timeout, self.store.watch_visible_position(), read, is_empty).await;
        waiting.dec();
        result
    }

    /// Stores a filter; returns its id.
    pub async fn create_filter(&self, user: &ruma::UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_vec(filter).map_err(|e| Error::BadJson(e.to_string()))?;
        Ok(self.store.create_filter(user, &json).await?)
    }

    /// A stored filter; `NotFound` for unknown ids, as clients expect in order to re-upload.
    pub fn filter(&self, user: &ruma::UserId, id: &str) -> Result<FilterDefinition> {
        let json = self.store.filter(user, id)?.ok_or_else(|| Error::NotFound(format!("no filter {id}")))?;
        serde_json::from_slice(&json).map_err(|e| Error::Internal(format!("stored filter {id}: {e}")))
    }
}
