//! Application services (bridges and bots): who they are, what they may act as, and the
//! durable queue of what each is sent.
//!
//! A service is registered by a file listed in `app_service_config_files` (read at each
//! start) or at run time with `myelin appservice register` (kept in the store). It acts
//! with its `as_token` as any user in its user namespaces; exclusive namespaces are
//! reserved from everyone else. Whatever concerns it — events in rooms it is interested
//! in, and (when it asks for them) typing, receipts, presence and its users' to-device
//! messages — is queued in the store in the same flush as the write that caused it, and
//! [`delivery`] sends the queue in order, in transactions, retrying until the service
//! answers. The service's URL comes from the operator's own files, so it is not held to
//! `outbound.allowed_networks` (a bridge usually runs on the same machine).

mod delivery;
mod queries;
mod registration;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use ruma::{OwnedServerName, RoomAliasId, RoomId, UserId};
use serde_json::Value as JsonValue;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub use queries::{PingError, QueryError};
pub use registration::Registered;

use crate::storage::{AppserviceItem, StorageError, Store};

/// Why a registration cannot be added or removed.
#[derive(Debug)]
pub enum Error {
    Invalid(String),
    /// Another service has this id or token, or the service comes from the config file.
    Conflict(String),
    NotFound(String),
    Storage(StorageError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) | Self::Conflict(why) | Self::NotFound(why) => f.write_str(why),
            Self::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// One registered service, with where it came from.
pub struct Service {
    pub registered: Registered,
    /// The config file it was read from; `None` for one added at run time.
    pub file: Option<PathBuf>,
    as_token_digest: [u8; 32],
}

pub struct Appservices {
    store: Arc<Store>,
    server_name: OwnedServerName,
    /// Swapped whole when a service is added or removed at run time; readers hold an `Arc`
    /// of the list they looked at.
    services: RwLock<Arc<Vec<Arc<Service>>>>,
    /// Each service's wake-up, for its delivery worker (see [`delivery`]).
    wakeups: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
    queries: queries::Queries,
    /// Whether delivery workers run (a server) or not (the CLI on a stopped server).
    delivering: std::sync::OnceLock<Arc<Appservices>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Appservices {
    /// Reads the registration files and the registrations stored at run time. A broken
    /// file, or two services sharing an id or a token, stop the server from starting.
    pub fn load(store: Arc<Store>, server_name: OwnedServerName, files: &[PathBuf]) -> Result<Self, String> {
        let mut services = read_files(files, &server_name)?;
        for json in store.appservice_registrations().map_err(|e| e.to_string())? {
            let registered = Registered::from_json(json, &server_name)
                .map_err(|e| format!("a registration stored by `myelin appservice register`: {e}"))?;
            services.push(Self::service(registered, None));
        }
        check_clashes(&services)?;
        Ok(Self {
            store,
            server_name,
            services: RwLock::new(Arc::new(services)),
            wakeups: Default::default(),
            queries: queries::Queries::new(),
            delivering: Default::default(),
        })
    }

    fn service(registered: Registered, file: Option<PathBuf>) -> Arc<Service> {
        let as_token_digest = digest(&registered.registration.as_token);
        Arc::new(Service { registered, file, as_token_digest })
    }

    /// Every registered service.
    pub fn list(&self) -> Arc<Vec<Arc<Service>>> {
        self.services.read().expect("never poisoned").clone()
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<Service>> {
        self.list().iter().find(|s| s.registered.id() == id).cloned()
    }

    /// The service whose `as_token` this is. Compares digests, so the time taken says
    /// nothing about how much of a guess was right.
    pub fn by_as_token(&self, token: &str) -> Option<Arc<Service>> {
        let token = digest(token);
        self.list().iter().find(|s| s.as_token_digest == token).cloned()
    }

    /// The service that reserves `user`, if any.
    pub fn exclusive_owner_of_user(&self, user: &UserId) -> Option<Arc<Service>> {
        self.list().iter().find(|s| s.registered.claims_user_exclusively(user)).cloned()
    }

    /// The service that reserves `alias`, if any.
    pub fn exclusive_owner_of_alias(&self, alias: &RoomAliasId) -> Option<Arc<Service>> {
        self.list().iter().find(|s| s.registered.claims_alias_exclusively(alias)).cloned()
    }

    /// Whether `user`'s requests skip the per-user limits: a service's own user, or a user
    /// of a service registered with `rate_limited: false`.
    pub fn exempt_from_limits(&self, user: &UserId) -> bool {
        let services = self.list();
        services.iter().any(|s| s.registered.owns_user(user) && !s.registered.rate_limited(user))
    }

    /// The services an event concerns (the spec's "interested"): its sender or the user a
    /// membership event is about is in the service's user namespaces, the room is in its
    /// room namespaces, one of the room's aliases is in its alias namespaces, or one of
    /// `members` (the room's joined members) is its user. Services without a URL receive
    /// nothing. `aliases` is read only when some service has alias namespaces.
    pub fn interested_in(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        member: Option<&UserId>,
        members: &mut dyn Iterator<Item = &UserId>,
        aliases: impl FnOnce() -> Vec<ruma::OwnedRoomAliasId>,
    ) -> Vec<Arc<Service>> {
        let services = self.list();
        let mut candidates: Vec<&Arc<Service>> =
            services.iter().filter(|s| s.registered.url().is_some()).collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let mut interested = Vec::new();
        let mut decide = |candidates: &mut Vec<&Arc<Service>>, test: &dyn Fn(&Registered) -> bool| {
            candidates.retain(|s| {
                let yes = test(&s.registered);
                if yes {
                    interested.push(Arc::clone(s));
                }
                !yes
            });
        };
        decide(&mut candidates, &|r| {
            r.owns_user(sender) || member.is_some_and(|m| r.owns_user(m)) || r.owns_room(room_id)
        });
        if candidates.iter().any(|s| s.registered.has_alias_namespaces()) {
            let aliases = aliases();
            decide(&mut candidates, &|r| aliases.iter().any(|a| r.owns_alias(a)));
        }
        for user in members {
            if candidates.is_empty() {
                break;
            }
            decide(&mut candidates, &|r| r.owns_user(user));
        }
        interested
    }

    /// Queues `item` for each of `services`; durable with the caller's next
    /// `Store::durable`. Call [`Appservices::wake`] after that.
    pub fn queue(&self, services: &[Arc<Service>], item: &AppserviceItem) -> crate::storage::Result<()> {
        for service in services {
            self.store.enqueue_for_appservice(service.registered.id(), item)?;
        }
        Ok(())
    }

    /// Queues `item` for `services`, makes it durable and wakes their delivery.
    pub async fn send(&self, services: &[Arc<Service>], item: AppserviceItem) -> crate::storage::Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        self.queue(services, &item)?;
        self.store.durable().await?;
        self.wake(services);
        Ok(())
    }

    /// The services that asked for ephemeral events (MSC2409) and are interested in `room`
    /// through one of `members` or the room's id.
    pub fn wanting_ephemeral<'a>(
        &self,
        room_id: &RoomId,
        members: impl Iterator<Item = &'a UserId> + Clone,
    ) -> Vec<Arc<Service>> {
        self.list()
            .iter()
            .filter(|s| s.registered.receive_ephemeral && s.registered.url().is_some())
            .filter(|s| s.registered.owns_room(room_id) || members.clone().any(|u| s.registered.owns_user(u)))
            .cloned()
            .collect()
    }

    /// The service, if it asked for ephemeral events, whose user `user` is.
    pub fn wanting_to_device(&self, user: &UserId) -> Vec<Arc<Service>> {
        self.list()
            .iter()
            .filter(|s| s.registered.receive_ephemeral && s.registered.url().is_some())
            .filter(|s| s.registered.owns_user(user))
            .cloned()
            .collect()
    }

    /// Tells the delivery of `services` that they have new items.
    pub fn wake(&self, services: &[Arc<Service>]) {
        for service in services {
            self.wakeup(service.registered.id()).notify_one();
        }
    }

    fn wakeup(&self, id: &str) -> Arc<Notify> {
        self.wakeups.lock().expect("never poisoned").entry(id.to_owned()).or_default().clone()
    }

    /// Adds (or replaces) a run-time registration from its YAML or JSON text.
    pub async fn register(&self, text: &str) -> Result<Arc<Service>, Error> {
        let registered = Registered::from_yaml(text, &self.server_name).map_err(Error::Invalid)?;
        let id = registered.id().to_owned();
        if let Some(existing) = self.by_id(&id)
            && let Some(file) = &existing.file
        {
            return Err(Error::Conflict(format!(
                "application service {id:?} comes from {}: change that file instead",
                file.display()
            )));
        }
        let service = Self::service(registered, None);
        if let Some(clash) = self.list().iter().find(|s| s.registered.id() != id && clashes(s, &service)) {
            return Err(Error::Conflict(format!(
                "application service {:?} already uses one of these tokens",
                clash.registered.id()
            )));
        }
        self.store.store_appservice_registration(&id, &service.registered.to_json()).await?;
        self.replace(&id, Some(service.clone()));
        Ok(service)
    }

    /// Removes a run-time registration and what was queued for it.
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let Some(existing) = self.by_id(id) else {
            return Err(Error::NotFound(format!("no application service {id:?}")));
        };
        if let Some(file) = &existing.file {
            return Err(Error::Conflict(format!(
                "application service {id:?} comes from {}: remove it from app_service_config_files",
                file.display()
            )));
        }
        self.replace(id, None);
        self.store.remove_appservice_registration(id).await?;
        Ok(())
    }

    /// Swaps service `id` in the list for `with` (or drops it), and starts or stops its
    /// delivery.
    fn replace(&self, id: &str, with: Option<Arc<Service>>) {
        {
            let mut services = self.services.write().expect("never poisoned");
            let mut list: Vec<Arc<Service>> =
                services.iter().filter(|s| s.registered.id() != id).cloned().collect();
            list.extend(with.clone());
            *services = Arc::new(list);
        }
        // A worker notices on its next turn that its service changed, and stops.
        self.wakeup(id).notify_one();
        if let (Some(service), Some(me)) = (with, self.delivering.get()) {
            delivery::start(me.clone(), service);
        }
    }

    /// Starts delivering to every service (a running server does this once).
    pub fn start_delivery(self: &Arc<Self>) {
        if self.delivering.set(self.clone()).is_err() {
            return;
        }
        for service in self.list().iter() {
            delivery::start(self.clone(), service.clone());
        }
    }

    /// Asks the service that owns `alias` (by its alias namespaces) to create it; answers
    /// whether one said it did.
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        for service in self.list().iter().filter(|s| s.registered.owns_alias(alias)) {
            if self.queries.room_alias(&service.registered, alias).await {
                return true;
            }
        }
        false
    }

    /// `POST /_matrix/app/v1/ping` to the service, for its own `/appservice/{id}/ping`.
    pub async fn ping(&self, service: &Service, transaction_id: Option<&str>) -> Result<u64, PingError> {
        self.queries.ping(&service.registered, transaction_id).await
    }

    /// A third-party lookup (`/_matrix/app/v1/thirdparty/...`) answered by the services
    /// that handle `protocol` (every service for lookups by Matrix id), results joined.
    pub async fn third_party(
        &self,
        protocol: Option<&str>,
        path_and_query: &str,
    ) -> Result<Vec<JsonValue>, QueryError> {
        let services = self.list();
        let handling = services.iter().filter(|s| match protocol {
            Some(protocol) => {
                s.registered.registration.protocols.as_ref().is_some_and(|p| p.iter().any(|p| p == protocol))
            }
            None => true,
        });
        let mut answers = Vec::new();
        let mut any = false;
        for service in handling {
            any = true;
            answers.push(self.queries.get_json(&service.registered, path_and_query).await);
        }
        if !any {
            return Err(QueryError::NoService);
        }
        queries::join_answers(answers)
    }
}

/// Reads and checks registration files, for a start and for `myelin config check`.
pub fn check_files(files: &[PathBuf], server_name: &ruma::ServerName) -> Result<usize, String> {
    let services = read_files(files, server_name)?;
    check_clashes(&services)?;
    Ok(services.len())
}

fn read_files(files: &[PathBuf], server_name: &ruma::ServerName) -> Result<Vec<Arc<Service>>, String> {
    files
        .iter()
        .map(|file| Ok(Appservices::service(Registered::from_file(file, server_name)?, Some(file.clone()))))
        .collect()
}

/// Refuses two services with the same id or a token in common, naming where each is from.
fn check_clashes(services: &[Arc<Service>]) -> Result<(), String> {
    let origin = |service: &Service| match &service.file {
        Some(file) => format!("{:?} ({})", service.registered.id(), file.display()),
        None => format!("{:?} (added with `myelin appservice register`)", service.registered.id()),
    };
    for (i, service) in services.iter().enumerate() {
        if let Some(clash) = services[..i].iter().find(|other| clashes(other, service)) {
            return Err(format!(
                "application services {} and {} share an id or a token",
                origin(clash),
                origin(service)
            ));
        }
    }
    Ok(())
}

/// Whether two services could be mistaken for each other: same id, or a token in common.
fn clashes(a: &Service, b: &Service) -> bool {
    let (a, b) = (&a.registered.registration, &b.registered.registration);
    a.id == b.id
        || a.as_token == b.as_token
        || a.as_token == b.hs_token
        || a.hs_token == b.as_token
        || a.hs_token == b.hs_token
}
