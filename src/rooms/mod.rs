//! Rooms: building and signing PDUs, event authorization, state, timelines, membership,
//! spaces and upgrades.
//!
//! Every new event goes through [`Rooms::append`]: under the room's append lock it picks
//! `prev_events` (the forward extremities) and `auth_events` (by the auth rules), signs
//! the draft ([`builder`]), checks it with `ruma::state_res` against its auth events and the
//! current state ([`auth`]), and stores it with its state and membership changes in one
//! transaction. Appends to different rooms run in parallel; one room's are ordered.

mod access;
mod admin_view;
mod auth;
mod builder;
mod client_view;
mod create;
mod deletion;
mod directory;
mod ephemeral;
mod event_cache;
mod federated;
mod hierarchy;
mod history_purge;
mod inbound;
mod member_view;
mod membership;
mod power;
mod redaction;
mod relations;
mod remote_invites;
mod remote_membership;
mod reports;
mod restricted;
mod retention;
mod room_summary;
mod server_acl;
mod shadow_ban;
mod state;
mod state_snapshots;
mod threads;
mod timeline;
mod upgrade;
mod user_directory;
mod visibility;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use ruma::{
    DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
};
use serde_json::Value as JsonValue;

pub use crate::pdu::Pdu;
pub use access::Reader;
pub use admin_view::RoomDetails;
pub use create::{CreateRoom, DEFAULT_VERSION, Preset, SUPPORTED_VERSIONS};
pub use deletion::{DeleteRoom, Deletion, DeletionStatus, Shutdown};
pub use directory::{PublicRoomsPage, RoomSummary};
pub use event_cache::Event;
pub use federated::{Added, INVITE_STATE_TYPES, stripped};
pub use hierarchy::{HierarchyPage, HierarchyRequest, ServerHierarchy};
pub use history_purge::{HistoryPurge, PurgePoint, PurgeStatus};
pub use member_view::MemberView;
pub use membership::MemberProfile;
pub use relations::RelationFilter;
pub use reports::{EventReport, FiledReport, ReportTarget};
pub use retention::RetentionPass;
pub use user_directory::FoundUser;

use crate::{
    account_data::AccountData,
    accounts::Accounts,
    appservices::{self, Appservices},
    federation::Federation,
    notifier::Notifier,
    outbox::Outbox,
    push::{Push, RoomContext},
    signing_key::SigningKey,
    storage::{
        Announced, AppserviceItem, NewEvent, NewRelation, Outgoing, Placement, PositionGuard, RoomRecord,
        Store,
    },
};

pub use crate::error::{Error, Result};

/// Event types that move a room up a client's room list: what people say to each other,
/// not reactions, receipts or state changes (the list Synapse uses for `bump_stamp`).
const BUMPING_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// Events with their storage records, in timeline order.
pub type Events = Vec<Arc<Event>>;

/// A new event as a client or the server asks for it.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: JsonValue,
}

impl EventSpec {
    pub fn state(
        kind: impl Into<TimelineEventType>,
        state_key: impl Into<String>,
        content: JsonValue,
    ) -> Self {
        Self { kind: kind.into(), state_key: Some(state_key.into()), content }
    }

    pub fn message(kind: impl Into<TimelineEventType>, content: JsonValue) -> Self {
        Self { kind: kind.into(), state_key: None, content }
    }
}

/// Where a new event goes: its room, the room's rules, its parents and its depth.
#[derive(Clone, Copy)]
struct Position<'a> {
    room_id: &'a RoomId,
    rules: &'a RoomVersionRules,
    prev_events: &'a [OwnedEventId],
    depth: u64,
}

/// A PDU as stored, for inspection.
#[derive(Debug, Clone)]
pub struct StoredPdu {
    pub room_id: OwnedRoomId,
    pub room_version: ruma::RoomVersionId,
    pub pdu: JsonValue,
    pub redacted_because: Option<OwnedEventId>,
}

/// An event written but not yet durable or visible; see [`Rooms::finish_append`].
struct Staged {
    /// The room as it is after the event.
    room: RoomRecord,
    guard: PositionGuard,
    /// For member events: whose membership changed, and to what.
    member: Option<(OwnedUserId, MembershipState)>,
    /// The thread the event is in (`None`: the main timeline), for its notifications.
    thread: Option<OwnedEventId>,
}

/// A client's transaction id for idempotent sends, scoped to its device.
#[derive(Debug, Clone, Copy)]
pub struct Txn<'a> {
    pub device_id: &'a DeviceId,
    pub txn_id: &'a str,
}

pub struct Rooms {
    store: Arc<Store>,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    notifier: Arc<Notifier>,
    push: Arc<Push>,
    typing: Arc<ephemeral::Typing>,
    /// Where local users' events go to the other servers in their rooms.
    outbox: Arc<Outbox>,
    /// Asks other servers for what this one does not have: joins, invites, missing events.
    federation: Arc<Federation>,
    /// Who exists here, and their profiles (which member events carry).
    accounts: Arc<Accounts>,
    /// Whom each reader ignores, for what `client_view` bundles.
    account_data: Arc<AccountData>,
    /// Bridges and bots, sent the events of the rooms they are interested in.
    appservices: Arc<Appservices>,
    member_views: member_view::MemberViews,
    events: event_cache::EventCache,
    state_snapshots: state_snapshots::StateSnapshots,
    /// Other servers' answers about spaces this server is not in.
    remote_hierarchies: hierarchy::RemoteHierarchies,
    /// One async lock per room, held while an event is built and stored.
    append_locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// Room deletions of the last day, with their progress.
    deletions: deletion::Deletions,
    /// Admin history purges of the last day, with their status.
    purges: history_purge::Purges,
    /// This service itself, for the work it hands to a task of its own (see
    /// [`Rooms::publish_staged`]).
    me: Weak<Rooms>,
}

fn rules_of(room: &RoomRecord) -> Result<RoomVersionRules> {
    room.version.rules().ok_or_else(|| {
        Error::UnsupportedRoomVersion(format!("room version {} is not supported", room.version))
    })
}

/// What [`Rooms`] calls below itself, handed in explicitly.
pub struct RoomsDeps {
    pub store: Arc<Store>,
    pub notifier: Arc<Notifier>,
    pub push: Arc<Push>,
    pub outbox: Arc<Outbox>,
    pub federation: Arc<Federation>,
    pub accounts: Arc<Accounts>,
    pub account_data: Arc<AccountData>,
    pub appservices: Arc<Appservices>,
}

impl Rooms {
    pub fn new(server_name: OwnedServerName, key: Arc<SigningKey>, deps: RoomsDeps) -> Arc<Self> {
        let RoomsDeps { store, notifier, push, outbox, federation, accounts, account_data, appservices } =
            deps;
        Arc::new_cyclic(|me| Self {
            store,
            server_name,
            key,
            notifier,
            push,
            outbox,
            federation,
            accounts,
            account_data,
            appservices,
            member_views: Default::default(),
            events: Default::default(),
            state_snapshots: Default::default(),
            remote_hierarchies: Default::default(),
            typing: Arc::default(),
            append_locks: Mutex::new(HashMap::new()),
            deletions: Default::default(),
            purges: Default::default(),
            me: me.clone(),
        })
    }

    fn append_lock(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        self.append_locks
            .lock()
            .expect("lock map is never poisoned")
            .entry(room_id.to_owned())
            .or_default()
            .clone()
    }

    pub fn room(&self, room_id: &RoomId) -> Result<RoomRecord> {
        self.store.room(room_id)?.ok_or_else(|| Error::NotFound(format!("unknown room {room_id}")))
    }

    /// The room's version; `NotFound` for a room this server does not have.
    pub fn version(&self, room_id: &RoomId) -> Result<ruma::RoomVersionId> {
        Ok(self.room(room_id)?.version)
    }

    /// Builds, signs, authorizes and stores an event from a local user. With a transaction
    /// id already used by this device, returns the earlier event instead.
    pub async fn append(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        spec: EventSpec,
        txn: Option<Txn<'_>>,
    ) -> Result<OwnedEventId> {
        // Announced before queueing for the room: sends to a busy room then share flushes.
        let write = self.store.announce_write();
        let lock = self.append_lock(room_id);
        let room_guard = lock.lock().await;
        if let Some(txn) = txn
            && let Some(event_id) = self.store.txn_event(sender, txn.device_id, txn.txn_id)?
        {
            drop(room_guard);
            drop(write);
            // The first send may still be flushing: answer the retry only once it is durable.
            self.store.durable().await?;
            return Ok(event_id);
        }
        let room = self.room(room_id)?;
        let (pdu, staged) = self.stage_new(&room, sender, spec, txn)?;
        // The next event of this room may be built while this one is flushed: concurrent
        // sends share a flush instead of queueing for one each.
        drop(room_guard);
        let event_id = pdu.event_id.clone();
        self.publish_staged(room, pdu, staged, Some(write)).await?;
        Ok(event_id)
    }

    /// Finishes a staged event — flush, notifications, federation queue, redaction, then
    /// visibility to syncs — on a task of its own. A request can be dropped at any await
    /// (the client goes away, an HTTP/2 stream is reset): once an event is written, the rest
    /// happens whether or not anyone still waits for it, or the event would be stored
    /// without its unread counts, unsent, or shown to syncs before it is durable.
    async fn publish_staged(
        &self,
        room: RoomRecord,
        pdu: Pdu,
        staged: Staged,
        write: Option<Announced>,
    ) -> Result<()> {
        let rooms = self.me.upgrade().expect("Rooms is only used while the server holds it");
        let task = tokio::spawn(async move {
            rooms.finish_append(&room, &pdu, staged, write).await?;
            if pdu.kind == TimelineEventType::RoomRedaction
                && let Some(target) = &pdu.redacts
            {
                rooms.apply_redaction(&room, target, &pdu.event_id).await?;
            }
            Ok(())
        });
        task.await.map_err(|e| Error::Internal(format!("publishing an event failed: {e}")))?
    }

    /// Builds, authorizes and writes (not yet durably) a new event; the caller holds the
    /// room's append lock.
    fn stage_new(
        &self,
        room: &RoomRecord,
        sender: &UserId,
        spec: EventSpec,
        txn: Option<Txn<'_>>,
    ) -> Result<(Pdu, Staged)> {
        let rules = rules_of(room)?;
        if spec.kind == TimelineEventType::RoomRedaction {
            self.check_may_redact(room, sender, &spec.content)?;
        }
        self.check_new_relation(&room.room_id, sender, &spec.kind, &spec.content)?;
        let (pdu, pdu_json) = self.prepare_at_tip(room, &rules, sender, spec)?;
        let staged = self.stage(room, &pdu, pdu_json, txn.map(|t| (sender, t)), Placement::Tip)?;
        Ok((pdu, staged))
    }

    /// [`Rooms::prepare`] on top of the room's forward extremities and current state.
    fn prepare_at_tip(
        &self,
        room: &RoomRecord,
        rules: &RoomVersionRules,
        sender: &UserId,
        spec: EventSpec,
    ) -> Result<(Pdu, JsonValue)> {
        let position =
            Position { room_id: &room.room_id, rules, prev_events: &room.extremities, depth: room.depth + 1 };
        self.prepare(
            position,
            sender,
            spec,
            |id| self.pdu(id).ok().flatten(),
            |kind, key| self.current_state_pdu(room, kind, key),
        )
    }

    /// Builds, signs and authorizes an event at `position` without storing it. `fetch_event`
    /// and `fetch_state` answer from the room as it will be when the event is stored.
    fn prepare(
        &self,
        position: Position<'_>,
        sender: &UserId,
        spec: EventSpec,
        fetch_event: impl Fn(&EventId) -> Option<Pdu>,
        fetch_state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
    ) -> Result<(Pdu, JsonValue)> {
        let rules = position.rules;
        if !spec.content.is_object() {
            return Err(Error::BadJson("event content must be a JSON object".to_owned()));
        }
        let content_raw =
            serde_json::value::to_raw_value(&spec.content).map_err(|e| Error::BadJson(e.to_string()))?;
        let auth_types = ruma::state_res::auth_types_for_event(
            &spec.kind,
            sender,
            spec.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(Error::BadJson)?;
        let auth_events: Vec<OwnedEventId> = auth_types
            .into_iter()
            .filter_map(|(kind, state_key)| fetch_state(&kind, &state_key).map(|pdu| pdu.event_id))
            .collect();
        let kind = spec.kind.to_string();
        let mut content = spec.content;
        // Room versions 11 and later carry a redaction's target in the content.
        let redacts_top_level = match (&spec.kind, rules.redaction.content_field_redacts) {
            (TimelineEventType::RoomRedaction, false) => content
                .as_object_mut()
                .and_then(|c| c.remove("redacts"))
                .and_then(|r| r.as_str().and_then(|s| EventId::parse(s).ok())),
            _ => None,
        };
        let draft = builder::Draft {
            room_id: Some(position.room_id),
            sender,
            kind: &kind,
            state_key: spec.state_key.as_deref(),
            content,
            redacts: redacts_top_level.as_deref(),
            prev_events: position.prev_events,
            auth_events: &auth_events,
            depth: position.depth,
        };
        let (event_id, pdu_json) = builder::sign(draft, rules, &self.server_name, &self.key)?;
        let pdu = Pdu::from_json(event_id, position.room_id, &pdu_json).map_err(Error::Internal)?;
        auth::authorize(&rules.authorization, &pdu, fetch_event, fetch_state)?;
        Ok((pdu, pdu_json))
    }

    /// Stores an event and publishes it: [`Rooms::stage`] then [`Rooms::publish_staged`].
    async fn store_event(
        &self,
        room: &RoomRecord,
        pdu: &Pdu,
        pdu_json: JsonValue,
        txn: Option<(&UserId, Txn<'_>)>,
    ) -> Result<RoomRecord> {
        let staged = self.stage(room, pdu, pdu_json, txn, Placement::Tip)?;
        let updated = staged.room.clone();
        self.publish_staged(room.clone(), pdu.clone(), staged, None).await?;
        Ok(updated)
    }

    /// Writes an event with its state, membership and relation changes (not yet durably).
    fn stage(
        &self,
        room: &RoomRecord,
        pdu: &Pdu,
        pdu_json: JsonValue,
        txn: Option<(&UserId, Txn<'_>)>,
        placement: Placement<'_>,
    ) -> Result<Staged> {
        let kind = pdu.kind.to_string();
        let member = match (&pdu.kind, &pdu.state_key) {
            (TimelineEventType::RoomMember, Some(state_key)) => {
                let user = UserId::parse(state_key.as_str())
                    .map_err(|e| Error::BadJson(format!("member state key: {e}")))?;
                let membership = pdu.membership().ok_or_else(|| {
                    Error::BadJson(format!("member event {} has no membership", pdu.event_id))
                })?;
                Some((user, membership))
            }
            _ => None,
        };
        let relates_to = relations::relates_to(&pdu.content_json());
        let thread = self.thread_of_relation(relates_to.as_ref())?;
        let event = NewEvent {
            relation: relates_to.as_ref().map(|relation| NewRelation {
                parent: &relation.parent,
                rel_type: &relation.rel_type,
                kind: &kind,
                sender: &pdu.sender,
            }),
            thread_reply_to: relates_to
                .as_ref()
                .filter(|relation| relation.rel_type == relations::THREAD)
                .map(|relation| &*relation.parent),
            event_id: &pdu.event_id,
            pdu: pdu_json,
            depth: pdu.depth.into(),
            state: pdu.state_key.as_deref().map(|key| (kind.as_str(), key)),
            membership: member.as_ref().map(|(user, membership)| (&**user, membership)),
            txn: txn.map(|(user, t)| (user, t.device_id, t.txn_id)),
            bumps: BUMPING_TYPES.contains(&kind.as_str()),
        };
        let (updated, stored, guard) = self.store.stage_event(room, event, placement)?;
        // An outlier joining the timeline is replaced, so this is a `put` even for new events.
        self.events.put(Arc::new(Event { pdu: pdu.clone(), stored }));
        Ok(Staged { room: updated, guard, member, thread })
    }

    /// Makes a staged event durable, records its notifications, and only then lets syncs
    /// see it and wakes them. `room` is the room as it was before the event; `write`, the
    /// writer's announcement if it made one.
    async fn finish_append(
        &self,
        room: &RoomRecord,
        pdu: &Pdu,
        staged: Staged,
        write: Option<Announced>,
    ) -> Result<()> {
        let Staged { room: after, guard, member, thread } = staged;
        // The room's members as the event leaves them.
        let members = self.member_view(&after)?;
        let destinations = self.destinations_of(pdu, &members, member.as_ref().map(|(user, _)| &**user));
        self.outbox.queue(&destinations, Outgoing::Pdu(pdu.event_id.clone()))?;
        let appservices =
            self.queue_for_appservices(pdu, &members, member.as_ref().map(|(user, _)| &**user))?;
        let position = guard.position();
        let member = member.as_ref().map(|(user, m)| (&**user, m));
        let notified = self.push_event(room, pdu, position, &members, member, thread).await?;
        // One flush makes the event, its queue entries and its notifications durable.
        match write {
            Some(write) => write.durable().await?,
            None => self.store.durable().await?,
        }
        self.outbox.wake(destinations);
        self.appservices.wake(&appservices);
        // Before the position is visible: pushers deliver in stream order (push::delivery).
        self.push.deliver(&room.room_id, position, notified);
        self.store.settle_event(position)?;
        // Only now may syncs see the event: its unread counts are recorded with it.
        drop(guard);
        let present = members
            .members
            .iter()
            .filter(|(_, m)| matches!(m, MembershipState::Join | MembershipState::Invite))
            .map(|(u, _)| &**u);
        self.notifier.notify(present.chain(member.map(|(user, _)| user)), position);
        Ok(())
    }

    /// Queues the event for the application services interested in it (not yet durably)
    /// and returns them, to wake once it is.
    fn queue_for_appservices(
        &self,
        pdu: &Pdu,
        members: &member_view::MemberView,
        member: Option<&UserId>,
    ) -> Result<Vec<Arc<appservices::Service>>> {
        let interested = self.appservices.interested_in(
            &pdu.room_id,
            &pdu.sender,
            member,
            &mut members.joined().map(|user| &**user),
            || self.store.room_aliases(&pdu.room_id).unwrap_or_default(),
        );
        if !interested.is_empty() {
            let event = AppserviceItem::Event(pdu.client_event().to_json());
            self.appservices.queue(&interested, &event)?;
        }
        Ok(interested)
    }

    /// The other servers a local user's event goes to: those with a member in the room (after
    /// the event), and the server of a member the event concerns. Events from elsewhere are
    /// their origin's to send.
    fn destinations_of(
        &self,
        pdu: &Pdu,
        members: &member_view::MemberView,
        member: Option<&UserId>,
    ) -> std::collections::BTreeSet<OwnedServerName> {
        if pdu.sender.server_name() != self.server_name {
            return Default::default();
        }
        let joined = members.joined().map(|user| user.server_name());
        self.outbox.remote(joined.chain(member.map(UserId::server_name)))
    }

    /// Evaluates push rules for the room's local members (and a local invitee) and records
    /// the notifications, before anyone's sync can see the event. Returns whom it notifies.
    async fn push_event(
        &self,
        room: &RoomRecord,
        pdu: &Pdu,
        position: u64,
        members: &member_view::MemberView,
        member: Option<(&UserId, &MembershipState)>,
        thread: Option<OwnedEventId>,
    ) -> Result<Vec<OwnedUserId>> {
        let joined: Vec<&OwnedUserId> = members.joined().collect();
        let invitee = member.filter(|(_, m)| **m == MembershipState::Invite).map(|(u, _)| u.to_owned());
        let mut recipients = Vec::new();
        for user in joined.iter().map(|u| (*u).clone()).chain(invitee) {
            if user.server_name() != self.server_name {
                continue;
            }
            let display_name = members.display_name(&user);
            recipients.push((user, display_name));
        }
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let context = RoomContext {
            room_id: room.room_id.clone(),
            member_count: joined.len() as u64,
            power_levels: members.power_levels.clone(),
            recipients,
            thread,
        };
        let client_event = pdu.client_event().to_json();
        self.push.process(pdu, &client_event, position, context).await
    }

    /// Rewrites the target of a redaction with the room version's redaction algorithm, so
    /// every later read serves the redacted form.
    async fn apply_redaction(&self, room: &RoomRecord, target: &EventId, because: &EventId) -> Result<()> {
        let Some(stored) = self.store.event(target)? else { return Ok(()) };
        if stored.room_id != room.room_id || stored.redacted_because.is_some() {
            return Ok(());
        }
        let rules = rules_of(room)?;
        let JsonValue::Object(map) = stored.pdu_json() else { return Ok(()) };
        let object =
            ruma::canonical_json::try_from_json_map(map).map_err(|e| Error::Internal(e.to_string()))?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let redacted = serde_json::to_value(&redacted).map_err(|e| Error::Internal(e.to_string()))?;
        // After the write: a reader that saw the old form meanwhile cannot cache it now.
        if let Some(stored) = self.store.store_redacted(target, redacted, because).await? {
            self.events.put(Arc::new(Event::parse(target, stored).map_err(Error::Internal)?));
        }
        Ok(())
    }

    /// The user's membership in the room, if any event ever set one.
    pub fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<MembershipState>> {
        Ok(self.store.membership(room_id, user_id)?)
    }

    /// Members of a room with their membership.
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        Ok(self.store.memberships(room_id)?)
    }

    /// The room's members, display names and power levels now, shared with every other
    /// reader until the room's state changes.
    pub fn current_members(&self, room_id: &RoomId) -> Result<Arc<MemberView>> {
        self.member_view(&self.room(room_id)?)
    }

    /// Rooms the user is joined to.
    pub fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .store
            .user_rooms(user_id)?
            .into_iter()
            .filter(|(_, m)| m.membership == MembershipState::Join)
            .map(|(r, _)| r)
            .collect())
    }

    /// An event with its storage record, if it exists: from the cache, or loaded into it.
    pub fn event(&self, event_id: &EventId) -> Result<Option<Arc<Event>>> {
        let miss = match self.events.get(event_id) {
            Ok(event) => return Ok(Some(event)),
            Err(miss) => miss,
        };
        let Some(stored) = self.store.event(event_id)? else { return Ok(None) };
        let event = Arc::new(Event::parse(event_id, stored).map_err(Error::Internal)?);
        self.events.keep(miss, event.clone());
        Ok(Some(event))
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }
}
