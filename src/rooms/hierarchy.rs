//! Spaces (spec: "Spaces", "Discovering rooms within spaces"): walking a space's
//! `m.space.child` tree for `/hierarchy`, through the servers a child names when this server
//! is not in it, and answering other servers' `/hierarchy` requests.
//!
//! A walk is depth-first in the spec's child order, visits each room once (loops end
//! there) and shows only rooms the user may see. Pages are stateless: a `from` token
//! counts the rooms earlier pages returned, and the next page walks again and skips them;
//! other servers' answers are cached for a few minutes, so that walk asks nobody twice.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{
    EventEncryptionAlgorithm, OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId,
    api::federation::space::{SpaceHierarchyParentSummary, get_hierarchy},
    events::{room::member::MembershipState, space::child::HierarchySpaceChildEvent},
    room::{JoinRuleSummary, RestrictedSummary, RoomSummary, RoomType},
    serde::Raw,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Error, Pdu, Result, RoomSummary as StateSummary, Rooms};
use crate::storage::RoomRecord;

/// Rooms per page unless the client asks for fewer, and the most it may ask for.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 100;
/// How deep a walk goes, whatever the client asks.
const MAX_DEPTH: u64 = 32;
/// Rooms one request looks at, earlier pages included: bounds the work of a huge tree.
const MAX_VISITED: usize = 2000;
/// Children another server is told about per space (Synapse's limit).
const MAX_CHILDREN_PER_SPACE: usize = 50;
/// Servers of a child's `via` asked in turn, and how long each may take.
const MAX_VIAS: usize = 3;
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long and how many other servers' answers are kept.
const REMOTE_TTL: Duration = Duration::from_secs(300);
const REMOTE_ENTRIES: usize = 256;

/// A client's `/hierarchy` request.
pub struct HierarchyRequest<'a> {
    pub suggested_only: bool,
    pub max_depth: Option<u64>,
    pub limit: Option<u64>,
    pub from: Option<&'a str>,
}

/// One page of a space's tree, in the client API's shape.
pub struct HierarchyPage {
    pub rooms: Vec<ruma::api::client::space::SpaceHierarchyRoomsChunk>,
    pub next_batch: Option<String>,
}

/// A space and its children as another server may see them (the federation `/hierarchy`).
pub struct ServerHierarchy {
    pub room: SpaceHierarchyParentSummary,
    pub children: Vec<RoomSummary>,
    pub inaccessible_children: Vec<OwnedRoomId>,
}

/// A child a space lists with a non-empty `via`, as its stripped event and parsed.
struct Child {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
    event: Raw<HierarchySpaceChildEvent>,
}

/// A room as a walk sees it: its summary and, for a space, its children in the spec's order.
struct Node {
    summary: RoomSummary,
    children: Vec<Child>,
}

/// The valid children among `m.space.child` events (a non-empty `via`; suggested ones
/// only, if asked), ordered as the spec says (`order`, then timestamp, then room id).
fn children_of(
    events: impl IntoIterator<Item = Raw<HierarchySpaceChildEvent>>,
    suggested_only: bool,
) -> Vec<Child> {
    let mut parsed: Vec<(HierarchySpaceChildEvent, Raw<HierarchySpaceChildEvent>)> = events
        .into_iter()
        .filter_map(|raw| Some((raw.deserialize().ok()?, raw)))
        .filter(|(event, _)| !event.content.via.is_empty() && (!suggested_only || event.content.suggested))
        .collect();
    parsed.sort_by(|(a, _), (b, _)| a.cmp(b));
    parsed
        .into_iter()
        .map(|(parsed, event)| Child { room_id: parsed.state_key, via: parsed.content.via, event })
        .collect()
}

/// An `m.space.child` event as a stripped state event with its timestamp.
fn stripped_child(pdu: &Pdu) -> Raw<HierarchySpaceChildEvent> {
    let event = json!({
        "type": "m.space.child",
        "state_key": pdu.state_key,
        "content": pdu.content_json(),
        "sender": pdu.sender,
        "origin_server_ts": pdu.origin_server_ts,
    });
    Raw::from_json(serde_json::value::to_raw_value(&event).expect("JSON values serialise"))
}

/// A summary read from this server's state, in the wire format.
pub(super) fn wire_summary(summary: StateSummary) -> RoomSummary {
    let join_rule = match summary.join_rule.as_deref() {
        Some("public") => JoinRuleSummary::Public,
        Some("knock") => JoinRuleSummary::Knock,
        Some("private") => JoinRuleSummary::Private,
        Some("restricted") => JoinRuleSummary::Restricted(RestrictedSummary::new(summary.allowed_room_ids)),
        Some("knock_restricted") => {
            JoinRuleSummary::KnockRestricted(RestrictedSummary::new(summary.allowed_room_ids))
        }
        // No join rules, or ones this server does not know: nobody joins uninvited.
        _ => JoinRuleSummary::Invite,
    };
    let mut wire = RoomSummary::new(
        summary.room_id,
        join_rule,
        summary.guest_can_join,
        ruma::UInt::new_saturating(summary.joined_members),
        summary.world_readable,
    );
    wire.canonical_alias = summary.canonical_alias.and_then(|a| a.try_into().ok());
    wire.name = summary.name;
    wire.topic = summary.topic;
    wire.avatar_url = summary.avatar_url.map(Into::into);
    wire.room_type = summary.room_type.as_deref().map(RoomType::from);
    wire.encryption = summary.encryption.as_deref().map(EventEncryptionAlgorithm::from);
    wire.room_version = Some(summary.version);
    wire
}

/// Whether anyone may look into the room: world-readable history, or a join rule that
/// lets anyone join or knock.
pub(super) fn open_to_anyone(summary: &RoomSummary) -> bool {
    summary.world_readable
        || matches!(
            summary.join_rule,
            JoinRuleSummary::Public | JoinRuleSummary::Knock | JoinRuleSummary::KnockRestricted(_)
        )
}

/// The rooms whose members may join a restricted room.
fn allowed_rooms(summary: &RoomSummary) -> &[OwnedRoomId] {
    match &summary.join_rule {
        JoinRuleSummary::Restricted(r) | JoinRuleSummary::KnockRestricted(r) => &r.allowed_room_ids,
        _ => &[],
    }
}

/// A `from` token: how many rooms earlier pages returned, and the request they answered.
#[derive(Debug, PartialEq, Eq)]
struct PageToken {
    skip: usize,
    max_depth: Option<u64>,
    suggested_only: bool,
    /// The first hex digits of the root room's SHA-256.
    room: String,
}

impl PageToken {
    fn first(room_id: &RoomId, request: &HierarchyRequest<'_>) -> Self {
        let room = hex::encode(&Sha256::digest(room_id.as_bytes())[..4]);
        Self { skip: 0, max_depth: request.max_depth, suggested_only: request.suggested_only, room }
    }

    fn encode(&self) -> String {
        let depth = self.max_depth.map(|d| d.to_string()).unwrap_or_default();
        format!("{}_{depth}_{}_{}", self.skip, u8::from(self.suggested_only), self.room)
    }

    fn decode(token: &str) -> Option<Self> {
        let mut parts = token.split('_');
        let skip = parts.next()?.parse().ok()?;
        let max_depth = match parts.next()? {
            "" => None,
            depth => Some(depth.parse().ok()?),
        };
        let suggested_only = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let room = parts.next()?.to_owned();
        parts.next().is_none().then_some(Self { skip, max_depth, suggested_only, room })
    }

    /// How many rooms to skip for `from`, which must continue the same request.
    fn skip_for(&self, from: &str) -> Result<usize> {
        let from = Self::decode(from)
            .ok_or_else(|| Error::InvalidParam("from is not a token this server handed out".to_owned()))?;
        if from.room != self.room {
            return Err(Error::InvalidParam("from is a token for another room".to_owned()));
        }
        if (from.max_depth, from.suggested_only) != (self.max_depth, self.suggested_only) {
            return Err(Error::InvalidParam(
                "suggested_only and max_depth cannot change while paginating".to_owned(),
            ));
        }
        Ok(from.skip)
    }
}

/// Other servers' answers to `/hierarchy`, kept a few minutes (the spec asks that they be
/// cached): by room and `suggested_only`.
#[derive(Default)]
pub(super) struct RemoteHierarchies(Mutex<RemoteMap>);

type RemoteMap = HashMap<(OwnedRoomId, bool), (Instant, Arc<get_hierarchy::v1::Response>)>;

impl RemoteHierarchies {
    fn get(&self, room_id: &RoomId, suggested_only: bool) -> Option<Arc<get_hierarchy::v1::Response>> {
        let map = self.0.lock().expect("never poisoned");
        let (at, answer) = map.get(&(room_id.to_owned(), suggested_only))?;
        (at.elapsed() < REMOTE_TTL).then(|| answer.clone())
    }

    fn put(&self, room_id: &RoomId, suggested_only: bool, answer: Arc<get_hierarchy::v1::Response>) {
        let mut map = self.0.lock().expect("never poisoned");
        map.retain(|_, (at, _)| at.elapsed() < REMOTE_TTL);
        if map.len() >= REMOTE_ENTRIES
            && let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(key, _)| key.clone())
        {
            map.remove(&oldest);
        }
        map.insert((room_id.to_owned(), suggested_only), (Instant::now(), answer));
    }
}

impl Rooms {
    /// One page of the tree under `room_id` for `user` (`GET /hierarchy`). The root must be
    /// a room the user may see, else `Forbidden` (also for a room this server does not know).
    pub async fn space_hierarchy(
        &self,
        user: &UserId,
        room_id: &RoomId,
        request: HierarchyRequest<'_>,
    ) -> Result<HierarchyPage> {
        let limit = match request.limit {
            Some(0) => return Err(Error::InvalidParam("limit must be greater than zero".to_owned())),
            Some(limit) => limit.min(MAX_LIMIT),
            None => DEFAULT_LIMIT,
        } as usize;
        let token = PageToken::first(room_id, &request);
        let skip = request.from.map(|from| token.skip_for(from)).transpose()?.unwrap_or(0);
        let max_depth = request.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);

        let mut walk = Walk {
            rooms: self,
            suggested_only: request.suggested_only,
            remote_children: HashMap::new(),
            inaccessible: HashSet::new(),
        };
        let mut root = match walk.node(room_id, &[]).await? {
            Some(node) if self.user_may_see(user, &node.summary)? => Some(node),
            _ => {
                return Err(Error::Forbidden(format!("{user} may not see room {room_id}, or it is unknown")));
            }
        };
        let mut pending: Vec<(OwnedRoomId, Vec<OwnedServerName>, u64)> =
            vec![(room_id.to_owned(), Vec::new(), 0)];
        let mut seen = HashSet::new();
        let (mut rooms, mut walked) = (Vec::new(), 0);
        while rooms.len() < limit
            && let Some((id, via, depth)) = pending.pop()
        {
            if !seen.insert(id.clone()) {
                continue;
            }
            if seen.len() > MAX_VISITED {
                pending.clear();
                break;
            }
            let node = match root.take() {
                Some(node) => node,
                None => match walk.node(&id, &via).await? {
                    Some(node) if self.user_may_see(user, &node.summary)? => node,
                    _ => continue,
                },
            };
            if depth < max_depth {
                // Reversed: the first child is popped next.
                pending.extend(
                    node.children.iter().rev().map(|c| (c.room_id.clone(), c.via.clone(), depth + 1)),
                );
            }
            walked += 1;
            if walked > skip {
                let children = node.children.into_iter().map(|c| c.event).collect();
                rooms.push(ruma::api::client::space::SpaceHierarchyRoomsChunk::new(node.summary, children));
            }
        }
        pending.retain(|(id, ..)| !seen.contains(id));
        let next_batch =
            (!pending.is_empty()).then(|| PageToken { skip: skip + rooms.len(), ..token }.encode());
        Ok(HierarchyPage { rooms, next_batch })
    }

    /// A space and its children for another server (federation `/hierarchy`): `NotFound`
    /// unless this server is in the room and `origin` could peek into or join it. Children
    /// this server is not in are left out; those `origin` could not join are listed as
    /// inaccessible.
    pub fn server_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<ServerHierarchy> {
        let not_found = || Error::NotFound(format!("room {room_id} is unknown here or closed to {origin}"));
        if !self.is_resident(room_id)? {
            return Err(not_found());
        }
        let node = self.local_node(room_id, suggested_only)?;
        if !self.server_may_see(origin, &node.summary)? {
            return Err(not_found());
        }
        let (mut children, mut inaccessible_children) = (Vec::new(), Vec::new());
        for child in node.children.iter().take(MAX_CHILDREN_PER_SPACE) {
            if !self.is_resident(&child.room_id)? {
                continue;
            }
            let summary = wire_summary(self.summary(&child.room_id)?);
            if self.server_may_see(origin, &summary)? {
                children.push(summary);
            } else {
                inaccessible_children.push(child.room_id.clone());
            }
        }
        let children_state = node.children.into_iter().map(|c| c.event).collect();
        Ok(ServerHierarchy {
            room: SpaceHierarchyParentSummary::new(node.summary, children_state),
            children,
            inaccessible_children,
        })
    }

    /// Whether a user of this server is in the room, so that its state here is current.
    pub(super) fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        let Some(room) = self.store.room(room_id)? else { return Ok(false) };
        Ok(self.member_view(&room)?.joined().any(|user| user.server_name() == self.server_name))
    }

    /// A room as this server's state describes it; children only for a space.
    fn local_node(&self, room_id: &RoomId, suggested_only: bool) -> Result<Node> {
        let summary = wire_summary(self.summary(room_id)?);
        let children = if summary.room_type == Some(RoomType::Space) {
            let events = self.space_child_events(&self.room(room_id)?)?;
            children_of(events.iter().map(stripped_child), suggested_only)
        } else {
            Vec::new()
        };
        Ok(Node { summary, children })
    }

    /// The room's current `m.space.child` events, whatever their content.
    pub(super) fn space_child_events(&self, room: &RoomRecord) -> Result<Vec<Pdu>> {
        let kind = "m.space.child".to_owned();
        let state = self.store.current_state(room)?;
        let ids = state
            .range((kind.clone(), String::new())..)
            .take_while(|((event_type, _), _)| *event_type == kind)
            .map(|(_, id)| id.clone());
        self.pdus(ids)
    }

    /// Whether the spec lets `/hierarchy` show the room to a user: they are joined or
    /// invited, could join or knock, or its history is world-readable. Banned users are not
    /// shown it.
    pub(super) fn user_may_see(&self, user: &UserId, summary: &RoomSummary) -> Result<bool> {
        match self.membership(&summary.room_id, user)? {
            Some(MembershipState::Join | MembershipState::Invite) => return Ok(true),
            Some(MembershipState::Ban) => return Ok(false),
            _ => {}
        }
        if open_to_anyone(summary) {
            return Ok(true);
        }
        for allowed in allowed_rooms(summary) {
            if self.membership(allowed, user)? == Some(MembershipState::Join) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `server` could peek into or join the room: it is open to anyone, one of the
    /// server's users is joined or invited, or (restricted) is in one of the allowed rooms.
    fn server_may_see(&self, server: &ServerName, summary: &RoomSummary) -> Result<bool> {
        if open_to_anyone(summary) {
            return Ok(true);
        }
        let has_member = self.members(&summary.room_id)?.iter().any(|(user, membership)| {
            user.server_name() == server
                && matches!(membership, MembershipState::Join | MembershipState::Invite)
        });
        if has_member {
            return Ok(true);
        }
        for allowed in allowed_rooms(summary) {
            if self.servers_in_room(allowed)?.contains(server) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Another server's answer about a room, from the cache or asked of the servers in
    /// `via` in turn; `None` if none of them answers.
    pub(super) async fn remote_hierarchy(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> Option<Arc<get_hierarchy::v1::Response>> {
        if let Some(answer) = self.remote_hierarchies.get(room_id, suggested_only) {
            return Some(answer);
        }
        for server in via.iter().filter(|server| **server != self.server_name).take(MAX_VIAS) {
            let mut request = get_hierarchy::v1::Request::new(room_id.to_owned());
            request.suggested_only = suggested_only;
            match tokio::time::timeout(REMOTE_TIMEOUT, self.federation.client.send(server, request)).await {
                Ok(Ok(answer)) if answer.room.summary.room_id == room_id => {
                    let answer = Arc::new(answer);
                    self.remote_hierarchies.put(room_id, suggested_only, answer.clone());
                    return Some(answer);
                }
                Ok(Ok(_)) => tracing::warn!(%server, %room_id, "hierarchy answered for another room"),
                Ok(Err(e)) => tracing::debug!(%server, %room_id, error = %e, "no hierarchy from this server"),
                Err(_) => tracing::debug!(%server, %room_id, "hierarchy request timed out"),
            }
        }
        None
    }
}

/// What one `/hierarchy` walk learned from other servers along the way.
struct Walk<'a> {
    rooms: &'a Rooms,
    suggested_only: bool,
    /// Children other servers described with the space that lists them.
    remote_children: HashMap<OwnedRoomId, RoomSummary>,
    /// Children other servers said this server's users cannot reach.
    inaccessible: HashSet<OwnedRoomId>,
}

impl Walk<'_> {
    /// A room as this walk sees it: from this server's state if one of its users is in the
    /// room, else from another server (the room's `via`, or what a server said about it
    /// with its parent), else from what this server last knew; `None` if nobody can tell.
    async fn node(&mut self, room_id: &RoomId, via: &[OwnedServerName]) -> Result<Option<Node>> {
        let rooms = self.rooms;
        if rooms.is_resident(room_id)? {
            return rooms.local_node(room_id, self.suggested_only).map(Some);
        }
        if self.inaccessible.contains(room_id) {
            return Ok(None);
        }
        // A room's own summary is all a walk needs of a child that is not a space.
        if let Some(summary) = self.remote_children.get(room_id)
            && summary.room_type != Some(RoomType::Space)
        {
            return Ok(Some(Node { summary: summary.clone(), children: Vec::new() }));
        }
        if let Some(answer) = rooms.remote_hierarchy(room_id, via, self.suggested_only).await {
            let children = children_of(answer.room.children_state.iter().cloned(), self.suggested_only);
            let listed = |id: &RoomId| children.iter().any(|child| child.room_id == id);
            for child in answer.children.iter().filter(|child| listed(&child.room_id)) {
                self.remote_children.insert(child.room_id.clone(), child.clone());
            }
            self.inaccessible.extend(answer.inaccessible_children.iter().filter(|id| listed(id)).cloned());
            return Ok(Some(Node { summary: answer.room.summary.clone(), children }));
        }
        if rooms.store.room(room_id)?.is_some() {
            return rooms.local_node(room_id, self.suggested_only).map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_changed_requests() {
        let room = RoomId::parse("!space:example.org").unwrap();
        let request = |max_depth, suggested_only| HierarchyRequest {
            suggested_only,
            max_depth,
            limit: None,
            from: None,
        };
        let first = PageToken::first(&room, &request(Some(3), true));
        let next = PageToken { skip: 20, ..PageToken::first(&room, &request(Some(3), true)) }.encode();
        assert_eq!(first.skip_for(&next).unwrap(), 20);
        assert!(PageToken::first(&room, &request(Some(4), true)).skip_for(&next).is_err());
        assert!(PageToken::first(&room, &request(Some(3), false)).skip_for(&next).is_err());
        let other = RoomId::parse("!other:example.org").unwrap();
        assert!(PageToken::first(&other, &request(Some(3), true)).skip_for(&next).is_err());
        let unbounded = PageToken { skip: 5, ..PageToken::first(&room, &request(None, false)) }.encode();
        assert_eq!(PageToken::first(&room, &request(None, false)).skip_for(&unbounded).unwrap(), 5);
        for bad in ["", "x", "1_2_3", "1__2_abcd", "1__0_abcd_more", "-1__0_abcd"] {
            assert!(PageToken::decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn children_need_a_via_and_follow_the_spec_order() {
        let event = |room: &str, content: serde_json::Value, ts: u64| {
            let event = json!({"type": "m.space.child", "state_key": room, "content": content,
                "sender": "@a:example.org", "origin_server_ts": ts});
            Raw::from_json(serde_json::value::to_raw_value(&event).unwrap())
        };
        let events = vec![
            event("!late:x", json!({"via": ["x"]}), 30),
            event("!early:x", json!({"via": ["x"], "suggested": true}), 10),
            event("!ordered:x", json!({"via": ["x"], "order": "a"}), 50),
            event("!removed:x", json!({}), 1),
            event("!empty:x", json!({"via": []}), 2),
        ];
        let ids =
            |children: Vec<Child>| children.into_iter().map(|c| c.room_id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(children_of(events.clone(), false)), ["!ordered:x", "!early:x", "!late:x"]);
        assert_eq!(ids(children_of(events, true)), ["!early:x"]);
    }
}
