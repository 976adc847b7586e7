//! Building one `/sync` (v3) response for a user, from `since` up to the visible position.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::{
            UnreadNotificationsCount,
            v3::{
                Ephemeral, GlobalAccountData, InviteState, InvitedRoom, JoinedRoom, LeftRoom, Response,
                RoomAccountData, RoomSummary, Rooms as SyncRooms, State, StateEvents, Timeline,
            },
        },
    },
    events::{
        AnyGlobalAccountDataEvent, AnyRoomAccountDataEvent, StateEventType, TimelineEventType,
        room::member::MembershipState,
    },
    presence::PresenceState,
    serde::Raw,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use super::filter;
use crate::{
    account_data::AccountData,
    accounts::Session,
    e2ee::E2ee,
    presence::Presence,
    push::Push,
    rooms::{self, Events, Pdu, Result, Rooms},
    storage::{StateMap, Store, UserRoom},
};

/// What the client asked for.
pub struct SyncParams {
    pub since: Option<u64>,
    /// Presence to set for the user while they sync (`offline` leaves it alone).
    pub set_presence: PresenceState,
    pub full_state: bool,
    /// Boxed: a long-poll keeps its parameters for its whole wait, and a filter is 1 KiB inline.
    pub filter: Box<FilterDefinition>,
}

/// Timeline events when the filter sets no limit (Synapse uses the same).
const DEFAULT_TIMELINE_LIMIT: usize = 10;

fn raw<T>(value: JsonValue) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("JSON values serialise"))
}

pub struct Builder<'a> {
    pub store: &'a Store,
    pub rooms: &'a Rooms,
    pub account_data: &'a AccountData,
    pub push: &'a Push,
    pub e2ee: &'a E2ee,
    pub presence: &'a Presence,
    pub session: &'a Session,
    pub params: &'a SyncParams,
}

impl Builder<'_> {
    pub fn build(&self) -> Result<Response> {
        let upto = self.store.visible_position();
        let since = self.params.since.map(|s| s.min(upto));
        let mut rooms = SyncRooms::new();
        let room_filter = &self.params.filter.room;
        let mut room_account_data: BTreeMap<OwnedRoomId, Vec<Raw<AnyRoomAccountDataEvent>>> = BTreeMap::new();
        let mut global_account_data: Vec<Raw<AnyGlobalAccountDataEvent>> = Vec::new();
        let global_filter = &self.params.filter.account_data;
        for (room, kind, record) in self.account_data.changed(&self.session.user_id, since, upto)? {
            let wanted = match &room {
                Some(room) => {
                    filter::allows_room(&room_filter.account_data, room)
                        && filter::allows_type(&room_filter.account_data, &kind)
                }
                None => filter::global_allows_type(global_filter, &kind),
            };
            if !wanted {
                continue;
            }
            let event = json!({"type": kind, "content": record.content});
            match room {
                Some(room) => room_account_data.entry(room).or_default().push(raw(event)),
                None => global_account_data.push(raw(event)),
            }
        }
        // Clients read their push rules from here; before any change they are the defaults.
        if since.is_none()
            && filter::global_allows_type(global_filter, "m.push_rules")
            && self.store.account_data(&self.session.user_id, None, "m.push_rules")?.is_none()
        {
            let content = self.push.rules_content(&self.session.user_id)?;
            let event = format!(r#"{{"type":"m.push_rules","content":{}}}"#, content.get());
            global_account_data.push(Raw::from_json(
                RawJsonValue::from_string(event).expect("an object around valid JSON is valid JSON"),
            ));
        }
        for (room_id, entry) in self.store.user_rooms(&self.session.user_id)? {
            // A membership change still being written shows up in the next sync.
            if entry.position > upto
                || room_filter.not_rooms.contains(&room_id)
                || room_filter.rooms.as_ref().is_some_and(|only| !only.contains(&room_id))
            {
                continue;
            }
            let changed_since = since.is_none_or(|s| entry.position > s);
            match entry.membership {
                MembershipState::Join => {
                    let account_data = room_account_data.remove(&room_id).unwrap_or_default();
                    if let Some(joined) = self.joined(&room_id, since, upto, &entry, account_data)? {
                        rooms.join.insert(room_id, joined);
                    }
                }
                MembershipState::Invite if changed_since => {
                    rooms.invite.insert(room_id.clone(), self.invited(&room_id)?);
                }
                MembershipState::Leave | MembershipState::Ban
                    if since.is_some() && changed_since || since.is_none() && room_filter.include_leave =>
                {
                    // A rejected invite from another server: nothing of the room is here.
                    let left = match self.rooms.room(&room_id) {
                        Ok(_) => self.left(&room_id, since, &entry)?,
                        Err(_) => LeftRoom::new(),
                    };
                    rooms.leave.insert(room_id.clone(), left);
                }
                _ => {}
            }
        }
        let mut response = Response::new(upto.to_string());
        response.rooms = rooms;
        response.account_data = GlobalAccountData::new();
        response.account_data.events = global_account_data;
        let (user, device) = (&self.session.user_id, &self.session.device_id);
        response.presence.events =
            self.presence.events_for(user, since, upto)?.into_iter().map(raw).collect();
        response.to_device.events =
            self.e2ee.to_device_for_sync(user, device, since, upto)?.into_iter().map(raw).collect();
        if let Some(since) = since {
            let changes = self.e2ee.device_list_changes(user, since, upto)?;
            response.device_lists.changed = changes.changed.into_iter().collect();
            response.device_lists.left = changes.left.into_iter().collect();
        }
        // Clients take a missing count as "the server has no keys for me" and a missing list
        // as "no fallback key support", so both are always present.
        let mut counts: BTreeMap<_, _> = self
            .e2ee
            .one_time_key_counts(user, device)?
            .into_iter()
            .map(|(algorithm, n)| (algorithm.as_str().into(), UInt::new_saturating(n)))
            .collect();
        counts.entry("signed_curve25519".into()).or_insert(UInt::MIN);
        response.device_one_time_keys_count = counts;
        response.device_unused_fallback_key_types = Some(
            self.e2ee.unused_fallback_algorithms(user, device)?.iter().map(|a| a.as_str().into()).collect(),
        );
        Ok(response)
    }

    /// The newest events in `(after, upto]` that pass the timeline filter and that the user
    /// may see, oldest first, and whether older ones were left out.
    fn timeline(&self, room_id: &RoomId, upto: u64, after: u64) -> Result<(Events, bool)> {
        let timeline_filter = &self.params.filter.room.timeline;
        let limit = timeline_filter
            .limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .max(1);
        let mut visibility = self.rooms.visibility(room_id, &self.session.user_id)?;
        let mut events = Vec::new();
        let mut limited = false;
        for event in self.rooms.events_before(room_id, upto, after)? {
            let event = event?;
            if !filter::matches(timeline_filter, &event.pdu) || !visibility.can_see(&event)? {
                continue;
            }
            if events.len() == limit {
                limited = true;
                break;
            }
            events.push(event);
        }
        events.reverse();
        Ok((events, limited))
    }

    fn client_events<T>(&self, events: &Events) -> Vec<Raw<T>> {
        events
            .iter()
            .map(|event| {
                let client =
                    self.rooms.client_event(event, Some((&self.session.user_id, &self.session.device_id)));
                Raw::from_json(filter::shape(&self.params.filter, client, &event.stored.pdu))
            })
            .collect()
    }

    fn lazy_members(&self) -> bool {
        !self.params.filter.room.state.lazy_load_options.is_disabled()
    }

    /// State events from `state` (minus those in the timeline) that pass the state filter,
    /// keeping only the members the client needs when it lazy-loads them: the timeline's
    /// senders, the user, and the summary's `heroes` (the spec says their member events MUST
    /// be sent, or clients cannot name the room).
    fn state_events<T>(
        &self,
        state: &StateMap,
        timeline: &Events,
        heroes: &[OwnedUserId],
    ) -> Result<Vec<Raw<T>>> {
        let lazy = self.lazy_members();
        let in_timeline: BTreeSet<&OwnedEventId> = timeline.iter().map(|event| &event.pdu.event_id).collect();
        let needed_members: BTreeSet<&str> = timeline
            .iter()
            .map(|event| event.pdu.sender.as_str())
            .chain(std::iter::once(self.session.user_id.as_str()))
            .chain(heroes.iter().map(|hero| hero.as_str()))
            .collect();
        let ids = state.iter().filter(|((kind, state_key), id)| {
            !in_timeline.contains(id)
                && (!lazy || kind != "m.room.member" || needed_members.contains(state_key.as_str()))
        });
        let state_filter = &self.params.filter.room.state;
        let mut events = Vec::new();
        for (_, id) in ids {
            let Some(event) = self.rooms.event(id)? else { continue };
            if filter::matches(state_filter, &event.pdu) {
                let client = event.pdu.client_event().to_raw_json();
                events.push(Raw::from_json(filter::shape(&self.params.filter, client, &event.stored.pdu)));
            }
        }
        Ok(events)
    }

    fn joined(
        &self,
        room_id: &RoomId,
        since: Option<u64>,
        upto: u64,
        entry: &UserRoom,
        account_data: Vec<Raw<AnyRoomAccountDataEvent>>,
    ) -> Result<Option<JoinedRoom>> {
        let newly_joined = since.is_some_and(|s| entry.position > s);
        let initial = since.is_none() || newly_joined || self.params.full_state;
        let after = if since.is_none() || newly_joined { 0 } else { since.unwrap_or(0) };
        let (timeline, limited) = self.timeline(room_id, upto, after)?;
        let ephemeral_since = if newly_joined { None } else { since };
        let ephemeral_filter = &self.params.filter.room.ephemeral;
        let wants = |kind: &str| {
            filter::allows_room(ephemeral_filter, room_id) && filter::allows_type(ephemeral_filter, kind)
        };
        let mut ephemeral = Vec::new();
        if wants("m.typing")
            && let Some(typing) = self.rooms.typing_event(room_id, ephemeral_since, upto)
        {
            ephemeral.push(raw(typing));
        }
        if wants("m.receipt")
            && let Some(receipts) =
                self.rooms.receipt_event(room_id, &self.session.user_id, ephemeral_since, upto)?
        {
            ephemeral.push(raw(receipts));
        }
        if !initial && timeline.is_empty() && ephemeral.is_empty() && account_data.is_empty() {
            return Ok(None);
        }
        let state_at_start = match timeline.first() {
            Some(first) => self.rooms.state_before(&first.stored)?,
            None => Arc::new(self.rooms.state_at_position(room_id, upto)?),
        };
        let summary = self.summary(room_id)?;
        let state = if initial {
            self.state_events(&state_at_start, &timeline, &summary.heroes)?
        } else {
            let mut wanted = BTreeMap::new();
            if limited {
                // What changed across the gap the client will not see.
                let at_since = self.rooms.state_at_position(room_id, since.unwrap_or(0))?;
                wanted.extend(state_at_start.iter().filter(|(key, id)| at_since.get(*key) != Some(*id)));
            }
            if self.lazy_members() {
                // A lazy-loading client may never have been sent a sender's member event, and
                // which ones it has is not tracked: send them all (the spec allows redundancy).
                for event in &timeline {
                    let key = ("m.room.member".to_owned(), event.pdu.sender.to_string());
                    if let Some((key, id)) = state_at_start.get_key_value(&key) {
                        wanted.insert(key, id);
                    }
                }
            }
            let wanted = wanted.into_iter().map(|(key, id)| (key.clone(), id.clone())).collect();
            // Heroes' member events went with the initial sync, or arrive in the timeline or
            // the gap's state above when they change.
            self.state_events(&wanted, &timeline, &summary.heroes)?
        };

        let mut joined = JoinedRoom::new();
        joined.timeline = Timeline::new();
        joined.timeline.limited = limited;
        joined.timeline.prev_batch = prev_batch(&timeline, upto);
        joined.timeline.events = self.client_events(&timeline);
        joined.state = State::Before(StateEvents::with_events(state));
        joined.summary = summary;
        let counts = self.push.unread_counts(&self.session.user_id, room_id, entry.position, upto)?;
        let mut unread = UnreadNotificationsCount::new();
        unread.highlight_count = Some(UInt::new_saturating(counts.highlights));
        unread.notification_count = Some(UInt::new_saturating(counts.notifications));
        joined.unread_notifications = unread;
        joined.ephemeral = Ephemeral::new();
        joined.ephemeral.events = ephemeral;
        joined.account_data = RoomAccountData::new();
        joined.account_data.events = account_data;
        Ok(Some(joined))
    }

    /// Heroes and member counts, as the spec's room summary defines them. Heroes are only
    /// for naming a room without a name or canonical alias (as Synapse does): lazy-loading
    /// clients must then be sent their member events, which a named room can spare.
    fn summary(&self, room_id: &RoomId) -> Result<RoomSummary> {
        let view = self.rooms.current_members(room_id)?;
        let members = &view.members;
        let count =
            |m: MembershipState| members.iter().filter(|(_, membership)| *membership == m).count() as u64;
        let is_set = |kind: StateEventType, field: &str| -> Result<bool> {
            Ok(self
                .rooms
                .state_content(room_id, &kind, "")?
                .is_some_and(|content| content[field].as_str().is_some_and(|v| !v.is_empty())))
        };
        let mut heroes: Vec<OwnedUserId> = Vec::new();
        if !is_set(StateEventType::RoomName, "name")? && !is_set(StateEventType::RoomCanonicalAlias, "alias")?
        {
            heroes = members
                .iter()
                .filter(|(user, m)| {
                    matches!(m, MembershipState::Join | MembershipState::Invite)
                        && *user != self.session.user_id
                })
                .map(|(user, _)| user.clone())
                .collect();
            heroes.truncate(5);
        }
        let mut summary = RoomSummary::new();
        summary.heroes = heroes;
        summary.joined_member_count = Some(UInt::new_saturating(count(MembershipState::Join)));
        summary.invited_member_count = Some(UInt::new_saturating(count(MembershipState::Invite)));
        Ok(summary)
    }

    fn invited(&self, room_id: &RoomId) -> Result<InvitedRoom> {
        let user = &self.session.user_id;
        // An invite from another server: the room exists here only as what it sent.
        if let Some(invite) = self.store.remote_invite(user, room_id)? {
            let events = invite.invite_state.into_iter().map(raw).collect::<Vec<_>>();
            return Ok(InvitedRoom::from(InviteState::from(events)));
        }
        let mut events = Vec::new();
        for pdu in self.rooms.current_state(room_id)? {
            let kind = pdu.kind.to_string();
            let is_my_invite =
                pdu.kind == TimelineEventType::RoomMember && pdu.state_key.as_deref() == Some(user.as_str());
            if rooms::INVITE_STATE_TYPES.contains(&kind.as_str())
                || is_my_invite
                || self.is_inviter_member(&pdu, room_id, user)?
            {
                events.push(raw(rooms::stripped(&pdu)));
            }
        }
        Ok(InvitedRoom::from(InviteState::from(events)))
    }

    /// Whether `pdu` is the member event of whoever invited `user`.
    fn is_inviter_member(&self, pdu: &Pdu, room_id: &RoomId, user: &UserId) -> Result<bool> {
        if pdu.kind != TimelineEventType::RoomMember {
            return Ok(false);
        }
        let invite = self.rooms.current_state(room_id)?.into_iter().find(|p| {
            p.kind == TimelineEventType::RoomMember && p.state_key.as_deref() == Some(user.as_str())
        });
        Ok(invite.is_some_and(|invite| {
            pdu.state_key.as_deref() == Some(invite.sender.as_str()) && invite.sender != user
        }))
    }

    fn left(&self, room_id: &RoomId, since: Option<u64>, entry: &UserRoom) -> Result<LeftRoom> {
        let (timeline, limited) = self.timeline(room_id, entry.position, since.unwrap_or(0))?;
        let state_at_start = match timeline.first() {
            Some(first) => self.rooms.state_before(&first.stored)?,
            None => Arc::new(self.rooms.state_at_position(room_id, entry.position)?),
        };
        let mut left = LeftRoom::new();
        left.timeline = Timeline::new();
        left.timeline.limited = limited;
        left.timeline.prev_batch = prev_batch(&timeline, entry.position);
        left.state =
            State::Before(StateEvents::with_events(self.state_events(&state_at_start, &timeline, &[])?));
        left.timeline.events = self.client_events(&timeline);
        Ok(left)
    }
}

/// Where `/messages` continues backwards from a timeline: just before its first event, or
/// `upto` when it is empty. Omitted when the timeline starts with the room's creation, as the
/// spec allows when no earlier events exist: clients such as Hydrogen otherwise show a gap
/// to fill above the start of every new room.
fn prev_batch(timeline: &Events, upto: u64) -> Option<String> {
    match timeline.first() {
        Some(first) if first.pdu.kind == TimelineEventType::RoomCreate => None,
        Some(first) => Some(first.stored.position.saturating_sub(1).to_string()),
        None => Some(upto.to_string()),
    }
}

/// Whether a response carries nothing for the client, so a long-poll should keep waiting.
pub fn is_empty(response: &Response) -> bool {
    response.rooms.is_empty()
        && response.account_data.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
        && response.presence.is_empty()
}
