//! Presence: online, unavailable or offline, with a status message. Kept in memory (it is
//! ephemeral by nature) but ordered by stream positions so `/sync` sends only changes, and
//! shared only with people who share a room.
//!
//! Across servers: a local user's change goes as an `m.presence` EDU to every server with a
//! member in one of their rooms; another server's EDUs set its users' presence here, for
//! the local users who share a room with them.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use ruma::{
    OwnedServerName, OwnedUserId, UserId, events::room::member::MembershipState, presence::PresenceState,
};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    notifier::Notifier,
    outbox::Outbox,
    storage::Store,
};

#[derive(Clone)]
struct Entry {
    state: PresenceState,
    status_msg: Option<String>,
    last_active: Instant,
    position: u64,
    /// What another server says; a local user's is worked out from `last_active`.
    currently_active: Option<bool>,
}

/// What a user's presence looks like to others.
pub struct PresenceView {
    pub state: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago_ms: u64,
    pub currently_active: bool,
}

/// A user's presence as another server reported it.
pub struct RemotePresence {
    pub user_id: OwnedUserId,
    pub state: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago_ms: u64,
    pub currently_active: bool,
}

pub struct Presence {
    enabled: bool,
    server_name: OwnedServerName,
    store: Arc<Store>,
    notifier: Arc<Notifier>,
    outbox: Arc<Outbox>,
    users: Mutex<HashMap<OwnedUserId, Entry>>,
}

impl Presence {
    pub fn new(
        enabled: bool,
        server_name: OwnedServerName,
        store: Arc<Store>,
        notifier: Arc<Notifier>,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self { enabled, server_name, store, notifier, outbox, users: Mutex::new(HashMap::new()) }
    }

    /// Users sharing a joined room with `user`, `user` included.
    fn peers(&self, user: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let mut peers = BTreeSet::from([user.to_owned()]);
        for (room, entry) in self.store.user_rooms(user)? {
            if entry.membership == MembershipState::Join {
                peers.extend(
                    self.store
                        .memberships(&room)?
                        .into_iter()
                        .filter(|(_, m)| *m == MembershipState::Join)
                        .map(|(u, _)| u),
                );
            }
        }
        Ok(peers)
    }

    /// Sets a user's presence. Re-stating the same presence only refreshes its activity.
    pub fn set(&self, user: &UserId, state: PresenceState, status_msg: Option<String>) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let changed = {
            let users = self.users.lock().expect("presence lock is never poisoned");
            users
                .get(user)
                .is_none_or(|e| e.state != state || (status_msg.is_some() && e.status_msg != status_msg))
        };
        let mut users = self.users.lock().expect("presence lock is never poisoned");
        let previous = users.get(user).cloned();
        let position = if changed {
            self.store.begin_position()?.position()
        } else {
            previous.as_ref().map_or(0, |e| e.position)
        };
        let status_msg = status_msg.or_else(|| previous.and_then(|e| e.status_msg));
        let entry =
            Entry { state, status_msg, last_active: Instant::now(), position, currently_active: None };
        users.insert(user.to_owned(), entry.clone());
        drop(users);
        if changed {
            let peers = self.peers(user)?;
            self.notifier.notify(peers.iter().map(|u| &**u), position);
            if user.server_name() == self.server_name {
                self.tell_other_servers(user, &entry, &peers);
            }
        }
        Ok(())
    }

    /// Sends a local user's new presence to the servers of the people they share a room
    /// with. In the background: presence is best effort, and the caller is a sync.
    fn tell_other_servers(&self, user: &UserId, entry: &Entry, peers: &BTreeSet<OwnedUserId>) {
        let servers = self.outbox.remote(peers.iter().map(|peer| peer.server_name()));
        if servers.is_empty() {
            return;
        }
        let view = view(entry);
        let mut update = json!({
            "user_id": user,
            "presence": view.state.as_str(),
            "last_active_ago": view.last_active_ago_ms,
            "currently_active": view.currently_active,
        });
        if let Some(msg) = view.status_msg {
            update["status_msg"] = json!(msg);
        }
        let edu = json!({"edu_type": "m.presence", "content": {"push": [update]}});
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            if let Err(e) = outbox.send_edu(servers, edu).await {
                tracing::warn!(error = %e, "could not queue a presence update for other servers");
            }
        });
    }

    /// Presence another server reports for its users (the caller checked that it may speak
    /// for them).
    pub fn receive_remote(&self, updates: Vec<RemotePresence>) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        for update in updates {
            let position = self.store.begin_position()?.position();
            let last_active = Instant::now()
                .checked_sub(std::time::Duration::from_millis(update.last_active_ago_ms))
                .unwrap_or_else(Instant::now);
            let entry = Entry {
                state: update.state,
                status_msg: update.status_msg,
                last_active,
                position,
                currently_active: Some(update.currently_active),
            };
            self.users.lock().expect("presence lock is never poisoned").insert(update.user_id.clone(), entry);
            let peers = self.peers(&update.user_id)?;
            self.notifier.notify(peers.iter().map(|u| &**u), position);
        }
        Ok(())
    }

    /// A user's presence as `viewer` may see it. With presence turned off everyone is
    /// offline (as in Synapse), so clients that ask anyway are not shown errors.
    pub fn get(&self, viewer: &UserId, user: &UserId) -> Result<PresenceView> {
        let offline = PresenceView {
            state: PresenceState::Offline,
            status_msg: None,
            last_active_ago_ms: 0,
            currently_active: false,
        };
        if !self.enabled {
            return Ok(offline);
        }
        if viewer != user && !self.peers(viewer)?.contains(user) {
            return Err(Error::Forbidden("you do not share a room with this user".to_owned()));
        }
        let users = self.users.lock().expect("presence lock is never poisoned");
        Ok(users.get(user).map_or(offline, view))
    }

    /// `m.presence` events of `viewer`'s peers that changed after `after` (all with `None`).
    pub fn events_for(&self, viewer: &UserId, after: Option<u64>, upto: u64) -> Result<Vec<JsonValue>> {
        if !self.enabled {
            return Ok(vec![]);
        }
        let peers = self.peers(viewer)?;
        let users = self.users.lock().expect("presence lock is never poisoned");
        Ok(peers
            .iter()
            .filter_map(|peer| users.get(peer).map(|entry| (peer, entry)))
            .filter(|(_, entry)| after.is_none_or(|a| entry.position > a) && entry.position <= upto)
            .map(|(peer, entry)| {
                let view = view(entry);
                let mut content = json!({
                    "presence": view.state.as_str(),
                    "last_active_ago": view.last_active_ago_ms,
                    "currently_active": view.currently_active,
                });
                if let Some(msg) = view.status_msg {
                    content["status_msg"] = json!(msg);
                }
                json!({"type": "m.presence", "sender": peer, "content": content})
            })
            .collect())
    }
}

fn view(entry: &Entry) -> PresenceView {
    let ago = entry.last_active.elapsed();
    PresenceView {
        state: entry.state.clone(),
        status_msg: entry.status_msg.clone(),
        last_active_ago_ms: ago.as_millis() as u64,
        currently_active: entry
            .currently_active
            .unwrap_or(entry.state == PresenceState::Online && ago.as_secs() < 60),
    }
}
