//! Rooms shared with other servers: events that arrive from elsewhere (or that are not on
//! top of our view of the room), state resolution where branches of the room's graph meet,
//! and the resident server's side of a join (the template, and the state it hands over).
//!
//! Signatures and content hashes are checked before anything reaches this module
//! (`federation::verify`); here events are checked against the room's rules the way the
//! spec lists: against their auth events, against the state before them, and against the
//! room's current state (a failure there "soft-fails" the event: it is not stored).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ruma::{
    EventId, OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    state_res::{
        self, StateMap, check_state_dependent_auth_rules, check_state_independent_auth_rules,
        utils::event_id_set::EventIdSet,
    },
};
use serde_json::{Value as JsonValue, json};

use super::{Error, EventSpec, Pdu, Result, Rooms, restricted::AUTHORISING_USER, rules_of};
use crate::storage::{Placement, RoomRecord, StateKey};

/// What became of an event handed to [`Rooms::add_event`].
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Stored,
    AlreadyKnown,
    /// Authorized by its own history but not by the room's current state: not stored.
    SoftFailed,
}

/// State types a server describes a room with to someone invited to it.
pub const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

fn forbidden(reason: String) -> Error {
    Error::Forbidden(format!("The room's rules refuse this event: {reason}"))
}

impl Rooms {
    /// Stores an event whose signatures were checked, wherever it sits in the room's graph.
    /// Events it names as `prev_events` that this server does not have are left out of the
    /// state computation (the caller fetches what it can first).
    pub async fn add_event(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        pdu_json: JsonValue,
    ) -> Result<Added> {
        let lock = self.append_lock(room_id);
        let guard = lock.lock().await;
        if self.store.event(event_id)?.is_some_and(|stored| stored.position != 0) {
            return Ok(Added::AlreadyKnown);
        }
        let room = self.room(room_id)?;
        let rules = rules_of(&room)?;
        let pdu = Pdu::from_json(event_id.to_owned(), room_id, &pdu_json).map_err(Error::BadJson)?;
        check_state_independent_auth_rules(&rules.authorization, &pdu, |id| self.pdu(id).ok().flatten())
            .map_err(forbidden)?;

        let known_prevs: Vec<OwnedEventId> =
            pdu.prev_events.iter().filter(|id| self.has_timeline_event(id)).cloned().collect();
        let on_tip = !known_prevs.is_empty() && same_set(&known_prevs, &room.extremities);
        let staged = if on_tip {
            // The usual case: the state before the event is the current state, looked up
            // key by key as for a local event rather than read whole.
            check_state_dependent_auth_rules(
                &rules.authorization,
                &pdu,
                |kind: &StateEventType, key: &str| self.current_state_pdu(&room, kind, key),
            )
            .map_err(forbidden)?;
            self.stage(&room, &pdu, pdu_json, None, Placement::Tip)?
        } else {
            let states = known_prevs.iter().map(|id| self.state_after(id)).collect::<Result<Vec<_>>>()?;
            let before = self.resolve(&rules, states, None)?;
            self.check_against(&rules, &pdu, &before).map_err(forbidden)?;
            let current = self.store.current_state(&room)?;
            if let Err(why) = self.check_against(&rules, &pdu, &current) {
                tracing::info!(%event_id, %why, "soft-failed an event: the room's current state refuses it");
                return Ok(Added::SoftFailed);
            }
            let mut extremities: Vec<OwnedEventId> =
                room.extremities.iter().filter(|id| !pdu.prev_events.contains(id)).cloned().collect();
            extremities.push(event_id.to_owned());
            let mut after_event = before.clone();
            if let Some(state_key) = &pdu.state_key {
                after_event.insert((pdu.kind.to_string(), state_key.clone()), event_id.to_owned());
            }
            let after = if extremities.len() == 1 {
                after_event.clone()
            } else {
                let mut states = vec![after_event.clone()];
                for id in extremities.iter().filter(|id| *id != event_id) {
                    states.push(self.state_after(id)?);
                }
                // The new event is in one of the states but not stored yet.
                self.resolve(&rules, states, Some(&pdu))?
            };
            let memberships = self.membership_changes(&room, &after)?;
            let placement = Placement::Resolved { before: &before, after: &after, extremities, memberships };
            self.stage(&room, &pdu, pdu_json, None, placement)?
        };
        drop(guard);
        self.publish_staged(room, pdu, staged, None).await?;
        Ok(Added::Stored)
    }

    fn has_timeline_event(&self, event_id: &EventId) -> bool {
        self.store.event(event_id).ok().flatten().is_some_and(|stored| stored.position != 0)
    }

    /// The state-dependent auth rules against a given state.
    fn check_against(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state: &BTreeMap<StateKey, OwnedEventId>,
    ) -> std::result::Result<(), String> {
        check_state_dependent_auth_rules(&rules.authorization, pdu, |kind: &StateEventType, key: &str| {
            state.get(&(kind.to_string(), key.to_owned())).and_then(|id| self.pdu(id).ok().flatten())
        })
    }

    /// Members whose membership in `state` differs from what the store says.
    fn membership_changes(
        &self,
        room: &RoomRecord,
        state: &BTreeMap<StateKey, OwnedEventId>,
    ) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        let stored: HashMap<OwnedUserId, MembershipState> =
            self.store.memberships(&room.room_id)?.into_iter().collect();
        let mut changes = Vec::new();
        for ((kind, state_key), id) in state {
            if kind != "m.room.member" {
                continue;
            }
            let Ok(user) = UserId::parse(state_key.as_str()) else { continue };
            let Some(pdu) = self.pdu(id)? else { continue };
            let Some(membership) = pdu.membership() else { continue };
            if stored.get(&user) != Some(&membership) {
                changes.push((user, membership));
            }
        }
        Ok(changes)
    }

    /// State resolution (the room version's algorithm, through `ruma::state_res`) of several
    /// states of one room. `pending` is an event the states may contain that is not stored
    /// yet.
    fn resolve(
        &self,
        rules: &RoomVersionRules,
        states: Vec<BTreeMap<StateKey, OwnedEventId>>,
        pending: Option<&Pdu>,
    ) -> Result<BTreeMap<StateKey, OwnedEventId>> {
        let fetch = |id: &EventId| match pending {
            Some(pdu) if pdu.event_id == id => Some(pdu.clone()),
            _ => self.pdu(id).ok().flatten(),
        };
        match states.len() {
            0 => return Ok(BTreeMap::new()),
            1 => return Ok(states.into_iter().next().expect("one state")),
            _ => {}
        }
        let maps: Vec<StateMap<OwnedEventId>> = states
            .iter()
            .map(|state| {
                state
                    .iter()
                    .map(|((kind, key), id)| ((StateEventType::from(kind.as_str()), key.clone()), id.clone()))
                    .collect()
            })
            .collect();
        let auth_chains: Vec<EventIdSet<OwnedEventId>> = states
            .iter()
            .map(|state| auth_chain(&fetch, state.values().cloned()).into_iter().collect())
            .collect();
        let state_res_rules = rules.state_res.v2_rules().ok_or_else(|| {
            Error::UnsupportedRoomVersion("state resolution v1 is not supported".to_owned())
        })?;
        let resolved = state_res::resolve(
            &rules.authorization,
            state_res_rules,
            &maps,
            auth_chains,
            &fetch,
            |conflicted| Some(conflicted_subgraph(&fetch, conflicted).into_iter().collect()),
        )
        .map_err(|e| Error::Internal(format!("state resolution failed: {e}")))?;
        Ok(resolved.into_iter().map(|((kind, key), id)| ((kind.to_string(), key), id)).collect())
    }

    /// The template of a join, knock or leave event another server's user asks to sign
    /// (`make_join`, `make_knock`, `make_leave`), refused here already when the room's rules
    /// would refuse it. A join the join rules restrict names the user of ours who vouches
    /// for it.
    pub async fn membership_template(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership: MembershipState,
    ) -> Result<(RoomVersionId, JsonValue)> {
        let lock = self.append_lock(room_id);
        let _guard = lock.lock().await;
        let room = self.room(room_id)?;
        let rules = rules_of(&room)?;
        let mut content = json!({"membership": membership});
        if membership == MembershipState::Join
            && let Some(authoriser) = self.join_authoriser(&room, user)?
        {
            content[AUTHORISING_USER] = json!(authoriser);
        }
        let spec = EventSpec::state(TimelineEventType::RoomMember, user.as_str(), content);
        // Built and checked like a local event; the user's server signs its own copy.
        let (_, mut template) = self.prepare_at_tip(&room, &rules, user, spec)?;
        if let Some(object) = template.as_object_mut() {
            object.remove("signatures");
            object.remove("hashes");
        }
        Ok((room.version, template))
    }

    /// The state before an event and the auth chain of that state and the event, as PDUs:
    /// what a resident server hands a server that joined, and answers `/state` with.
    pub fn state_with_auth_chain(&self, event_id: &EventId) -> Result<(Vec<JsonValue>, Vec<JsonValue>)> {
        let event =
            self.event(event_id)?.ok_or_else(|| Error::NotFound(format!("unknown event {event_id}")))?;
        let state = self.state_before(&event.stored)?;
        let mut wanted: Vec<OwnedEventId> = state.values().cloned().collect();
        wanted.push(event_id.to_owned());
        let chain = auth_chain(&|id: &EventId| self.pdu(id).ok().flatten(), wanted);
        let pdus = |ids: &mut dyn Iterator<Item = &OwnedEventId>| -> Result<Vec<JsonValue>> {
            ids.map(|id| {
                self.store
                    .event(id)?
                    .map(|stored| stored.pdu_json())
                    .ok_or_else(|| Error::Internal(format!("event {id} missing")))
            })
            .collect()
        };
        Ok((pdus(&mut state.values())?, pdus(&mut chain.iter())?))
    }

    /// An event's auth chain, as PDUs (`/event_auth`).
    pub fn auth_chain_of(&self, event_id: &EventId) -> Result<Vec<JsonValue>> {
        let chain = auth_chain(&|id: &EventId| self.pdu(id).ok().flatten(), [event_id.to_owned()]);
        chain
            .iter()
            .map(|id| {
                self.store
                    .event(id)?
                    .map(|stored| stored.pdu_json())
                    .ok_or_else(|| Error::Internal(format!("event {id} missing")))
            })
            .collect()
    }

    /// Builds, signs and authorizes a local user's event without storing it (an invite to
    /// another server's user, which that server signs too before it is stored).
    pub async fn prepare_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        spec: EventSpec,
    ) -> Result<(RoomVersionId, OwnedEventId, JsonValue)> {
        let lock = self.append_lock(room_id);
        let _guard = lock.lock().await;
        let room = self.room(room_id)?;
        let rules = rules_of(&room)?;
        let (pdu, json) = self.prepare_at_tip(&room, &rules, sender, spec)?;
        Ok((room.version, pdu.event_id, json))
    }

    /// The room described for another server's user invited to it or knocking on it: a few
    /// current state events, as the full PDUs the spec (since v1.16) asks for.
    pub fn invite_state(&self, room_id: &RoomId) -> Result<Vec<JsonValue>> {
        let mut events = Vec::new();
        for pdu in self.current_state(room_id)? {
            if INVITE_STATE_TYPES.contains(&pdu.kind.to_string().as_str())
                && let Some(stored) = self.store.event(&pdu.event_id)?
            {
                events.push(stored.pdu_json());
            }
        }
        Ok(events)
    }

    /// Starts this server's copy of a room another server let one of our users join: the
    /// state and auth events it sent are stored aside, and the join event goes into the
    /// timeline on top of that state.
    pub async fn adopt_joined_room(
        &self,
        room_id: &RoomId,
        version: RoomVersionId,
        join: (&EventId, JsonValue),
        state: Vec<(OwnedEventId, JsonValue)>,
        auth_chain: Vec<(OwnedEventId, JsonValue)>,
    ) -> Result<()> {
        let lock = self.append_lock(room_id);
        let guard = lock.lock().await;
        if self.store.room(room_id)?.is_some() {
            return Err(Error::Forbidden(format!("this server already has room {room_id}")));
        }
        let room = self.store.new_room_record(room_id.to_owned(), version)?;
        let rules = rules_of(&room)?;
        for (id, pdu) in auth_chain.into_iter().chain(state.iter().cloned()) {
            self.store.store_outlier(room_id, &id, pdu)?;
        }
        let mut before = BTreeMap::new();
        for (id, json) in &state {
            let pdu = Pdu::from_json(id.clone(), room_id, json).map_err(Error::BadJson)?;
            if let Some(state_key) = pdu.state_key {
                before.insert((pdu.kind.to_string(), state_key), id.clone());
            }
        }
        let (join_id, join_json) = join;
        let pdu = Pdu::from_json(join_id.to_owned(), room_id, &join_json).map_err(Error::BadJson)?;
        check_state_independent_auth_rules(&rules.authorization, &pdu, |id| self.pdu(id).ok().flatten())
            .map_err(forbidden)?;
        self.check_against(&rules, &pdu, &before).map_err(forbidden)?;
        let mut after = before.clone();
        if let Some(state_key) = &pdu.state_key {
            after.insert((pdu.kind.to_string(), state_key.clone()), join_id.to_owned());
        }
        let memberships = self.membership_changes(&room, &after)?;
        let mut room = room;
        room.depth = pdu.depth.into();
        let placement = Placement::Resolved {
            before: &before,
            after: &after,
            extremities: vec![join_id.to_owned()],
            memberships,
        };
        let staged = self.stage(&room, &pdu, join_json, None, placement)?;
        drop(guard);
        self.publish_staged(room, pdu, staged, None).await
    }

    /// Servers with a joined member in the room.
    pub fn servers_in_room(&self, room_id: &RoomId) -> Result<BTreeSet<ruma::OwnedServerName>> {
        Ok(self
            .members(room_id)?
            .into_iter()
            .filter(|(_, m)| *m == MembershipState::Join)
            .map(|(user, _)| user.server_name().to_owned())
            .collect())
    }
}

/// Every event reachable from `events` through `auth_events`, the events excluded.
fn auth_chain(
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
    events: impl IntoIterator<Item = OwnedEventId>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<OwnedEventId> =
        events.into_iter().filter_map(|id| fetch(&id)).flat_map(|pdu| pdu.auth_events).collect();
    while let Some(id) = todo.pop() {
        if chain.insert(id.clone())
            && let Some(pdu) = fetch(&id)
        {
            todo.extend(pdu.auth_events);
        }
    }
    chain
}

/// The conflicted state subgraph (room version 12): the conflicted events, and every event
/// on an auth path between two of them.
fn conflicted_subgraph(
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
    conflicted: &StateMap<Vec<OwnedEventId>>,
) -> HashSet<OwnedEventId> {
    let conflicted: HashSet<OwnedEventId> = conflicted.values().flatten().cloned().collect();
    let ancestors = auth_chain(fetch, conflicted.iter().cloned());
    let mut subgraph = conflicted.clone();
    for id in ancestors {
        if !auth_chain(fetch, [id.clone()]).is_disjoint(&conflicted) {
            subgraph.insert(id);
        }
    }
    subgraph
}

fn same_set(a: &[OwnedEventId], b: &[OwnedEventId]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}

/// An event as shown to someone who cannot see the room yet.
pub fn stripped(pdu: &Pdu) -> JsonValue {
    json!({
        "type": pdu.kind.to_string(),
        "state_key": pdu.state_key,
        "content": pdu.content_json(),
        "sender": pdu.sender,
    })
}
