//! Deleting and blocking rooms, for administrators.
//!
//! A deletion (Synapse's room deletion) blocks the room if asked, moves every local member
//! out of it (into a new room, with its local aliases, if asked), then purges it from the
//! store. It runs in the background; its progress is kept in memory for a day.
//!
//! A blocked room cannot be joined, knocked on or invited to by this server's users, and
//! other servers' invites into it are refused; it may be blocked before this server knows
//! it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState,
};
use serde_json::json;

use super::{CreateRoom, EventSpec, Preset, Rooms};
use crate::{
    error::{Error, Result},
    now_ms,
    storage::BlockedRoom,
};

/// How long a finished deletion's status stays to be asked for (Synapse's figure).
const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";
const DEFAULT_MESSAGE: &str =
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.";

/// What a deletion is asked to do.
#[derive(Debug, Clone)]
pub struct DeleteRoom {
    /// The administrator asking; `None` for the CLI.
    pub requester: Option<OwnedUserId>,
    /// A local user who creates a room the members are moved into.
    pub new_room_user_id: Option<OwnedUserId>,
    pub room_name: Option<String>,
    /// The first message in the new room.
    pub message: Option<String>,
    pub block: bool,
    pub purge: bool,
    /// Purge even if local users could not be moved out.
    pub force_purge: bool,
}

/// What moving the members out did.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub kicked_users: Vec<OwnedUserId>,
    pub failed_to_kick_users: Vec<OwnedUserId>,
    /// Local aliases taken from the room (and given to the new room, if any).
    pub local_aliases: Vec<OwnedRoomAliasId>,
    pub new_room_id: Option<OwnedRoomId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionStatus {
    Scheduled,
    Active,
    Complete,
    Failed(String),
}

/// One deletion and how far it has got.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub delete_id: String,
    pub room_id: OwnedRoomId,
    pub status: DeletionStatus,
    pub shutdown: Shutdown,
    finished: Option<Instant>,
}

/// The deletions of the last day.
#[derive(Default)]
pub struct Deletions(Mutex<HashMap<String, Deletion>>);

impl Deletions {
    fn update(&self, delete_id: &str, change: impl FnOnce(&mut Deletion)) {
        if let Some(deletion) = self.0.lock().expect("never poisoned").get_mut(delete_id) {
            change(deletion);
        }
    }

    /// The deletions still kept, forgetting those finished over a day ago.
    fn current(&self) -> Vec<Deletion> {
        let mut all = self.0.lock().expect("never poisoned");
        all.retain(|_, d| d.finished.is_none_or(|at| at.elapsed() < KEPT_FOR));
        all.values().cloned().collect()
    }
}

impl Rooms {
    /// Registers the deletion of a room this server has, to be run by
    /// [`Rooms::run_deletion`]; fails while another deletion of it is under way.
    pub fn schedule_deletion(&self, room_id: &RoomId) -> Result<String> {
        self.room(room_id)?;
        let mut all = self.deletions.0.lock().expect("never poisoned");
        if all.values().any(|d| d.room_id == room_id && d.finished.is_none()) {
            return Err(Error::InvalidParam(format!("{room_id} is already being deleted")));
        }
        let delete_id: String =
            rand::thread_rng().sample_iter(&Alphanumeric).take(16).map(char::from).collect();
        let deletion = Deletion {
            delete_id: delete_id.clone(),
            room_id: room_id.to_owned(),
            status: DeletionStatus::Scheduled,
            shutdown: Shutdown::default(),
            finished: None,
        };
        all.insert(delete_id.clone(), deletion);
        Ok(delete_id)
    }

    /// Runs a scheduled deletion to its end, recording each step.
    pub async fn run_deletion(&self, delete_id: &str, room_id: &RoomId, request: DeleteRoom) {
        self.deletions.update(delete_id, |d| d.status = DeletionStatus::Active);
        tracing::info!(%room_id, delete_id, by = ?request.requester, "room deletion started");
        let outcome = async {
            let shutdown = self.shut_down(room_id, &request).await?;
            self.deletions.update(delete_id, |d| d.shutdown = shutdown.clone());
            if request.purge {
                if !request.force_purge && !shutdown.failed_to_kick_users.is_empty() {
                    return Err(Error::InvalidParam(
                        "some local users could not be moved out of the room; purge with force_purge"
                            .to_owned(),
                    ));
                }
                self.purge(room_id).await?;
            }
            Ok(())
        }
        .await;
        let status = match outcome {
            Ok(()) => DeletionStatus::Complete,
            Err(e) => {
                tracing::warn!(%room_id, delete_id, error = %e, "room deletion failed");
                DeletionStatus::Failed(e.to_string())
            }
        };
        tracing::info!(%room_id, delete_id, ?status, "room deletion finished");
        self.deletions.update(delete_id, |d| {
            d.status = status;
            d.finished = Some(Instant::now());
        });
    }

    pub fn deletion(&self, delete_id: &str) -> Option<Deletion> {
        self.deletions.current().into_iter().find(|d| d.delete_id == delete_id)
    }

    pub fn deletions_of(&self, room_id: &RoomId) -> Vec<Deletion> {
        self.deletions.current().into_iter().filter(|d| d.room_id == room_id).collect()
    }

    /// Blocks a room (`by` an administrator, or the CLI) or unblocks it.
    pub async fn set_blocked(&self, room_id: &RoomId, block: bool, by: Option<&UserId>) -> Result<()> {
        let record = block.then(|| BlockedRoom { blocked_by: by.map(UserId::to_owned), ts: now_ms() });
        self.store.set_room_blocked(room_id, record.as_ref()).await?;
        tracing::info!(%room_id, block, ?by, "room block changed");
        Ok(())
    }

    /// Whether the room is blocked, and by whom (`None` for the CLI).
    pub fn block_of(&self, room_id: &RoomId) -> Result<Option<Option<OwnedUserId>>> {
        Ok(self.store.room_blocked(room_id)?.map(|blocked| blocked.blocked_by))
    }

    /// Refuses a way into a blocked room.
    pub(super) fn check_not_blocked(&self, room_id: &RoomId) -> Result<()> {
        if self.store.room_blocked(room_id)?.is_some() {
            return Err(Error::Forbidden("this room has been blocked on this server".to_owned()));
        }
        Ok(())
    }

    /// Blocks the room if asked, and moves every local member and alias out of it.
    async fn shut_down(&self, room_id: &RoomId, request: &DeleteRoom) -> Result<Shutdown> {
        if request.block {
            self.set_blocked(room_id, true, request.requester.as_deref()).await?;
        }
        let mut shutdown = Shutdown::default();
        if let Some(creator) = &request.new_room_user_id {
            let new_room = self
                .create_room(CreateRoom {
                    creator: creator.clone(),
                    version: None,
                    // Public, so that the members moved can join; they may not speak.
                    preset: Some(Preset::PublicChat),
                    public: false,
                    name: Some(request.room_name.clone().unwrap_or_else(|| DEFAULT_ROOM_NAME.to_owned())),
                    topic: None,
                    canonical_alias: None,
                    invite: Vec::new(),
                    is_direct: false,
                    initial_state: Vec::new(),
                    creation_content: Default::default(),
                    power_level_content_override: Some(
                        json!({ "users_default": -10 }).as_object().cloned().unwrap_or_default(),
                    ),
                })
                .await?;
            let message = request.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.to_owned());
            let content = json!({ "msgtype": "m.text", "body": message });
            self.append(&new_room, creator, EventSpec::message("m.room.message", content), None).await?;
            shutdown.new_room_id = Some(new_room);
        }
        let local_members: Vec<OwnedUserId> = self
            .store
            .memberships(room_id)?
            .into_iter()
            .filter(|(user, membership)| {
                user.server_name() == self.server_name && *membership == MembershipState::Join
            })
            .map(|(user, _)| user)
            .collect();
        for user in local_members {
            let moved = async {
                self.leave(room_id, &user, Some("the room was shut down by an administrator")).await?;
                if let Some(new_room) = &shutdown.new_room_id {
                    self.join_here(new_room, &user, None).await?;
                }
                Ok::<_, Error>(())
            };
            match moved.await {
                Ok(()) => shutdown.kicked_users.push(user),
                Err(e) => {
                    tracing::warn!(%room_id, %user, error = %e, "could not move a member out of a room being deleted");
                    shutdown.failed_to_kick_users.push(user);
                }
            }
        }
        for alias in self.store.room_aliases(room_id)? {
            self.store.delete_alias(&alias).await?;
            if let (Some(new_room), Some(creator)) = (&shutdown.new_room_id, &request.new_room_user_id) {
                self.create_alias(&alias, new_room, creator).await?;
            }
            shutdown.local_aliases.push(alias);
        }
        self.store.set_published(room_id, false).await?;
        Ok(shutdown)
    }

    /// Removes the room from the store and from what is kept of it in memory.
    async fn purge(&self, room_id: &RoomId) -> Result<()> {
        let removed = self.store.purge_room(room_id).await?;
        self.events.forget(&removed);
        self.member_views.forget(room_id);
        tracing::info!(%room_id, events = removed.len(), "room purged");
        Ok(())
    }
}
