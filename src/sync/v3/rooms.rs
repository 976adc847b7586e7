//! The `rooms` section of a `/sync` response: joined, invited, knocked and left rooms.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt,
    api::client::sync::sync_events::{
        UnreadNotificationsCount,
        v3::{
            Ephemeral, InviteState, InvitedRoom, JoinedRoom, KnockedRoom, LeftRoom, RoomAccountData,
            RoomSummary, Rooms as SyncRooms, State, StateEvents, Timeline,
        },
    },
    events::{AnyRoomAccountDataEvent, room::member::MembershipState},
    serde::Raw,
};

use super::{Builder, raw};
use crate::{
    rooms::{Events, Result},
    storage::{StateMap, UnreadCounts, UserRoom},
    sync::{filter, room_view},
};

/// Timeline events when the filter sets no limit (Synapse uses the same).
const DEFAULT_TIMELINE_LIMIT: usize = 10;

impl Builder<'_> {
    /// The user's rooms with what changed in them since `since`. Each joined room takes its
    /// account data out of `account_data`.
    pub(super) fn rooms(
        &self,
        since: Option<u64>,
        upto: u64,
        account_data: &mut BTreeMap<OwnedRoomId, Vec<Raw<AnyRoomAccountDataEvent>>>,
    ) -> Result<SyncRooms> {
        let room_filter = &self.params.filter.room;
        let ignored = self.account_data.ignored_users(&self.session.user_id)?;
        let mut rooms = SyncRooms::new();
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
                    let account_data = account_data.remove(&room_id).unwrap_or_default();
                    if let Some(joined) = self.joined(&room_id, since, upto, &entry, account_data)? {
                        rooms.join.insert(room_id, joined);
                    }
                }
                MembershipState::Invite if changed_since => {
                    let inviter = self.rooms.inviter(&self.session.user_id, &room_id)?;
                    if !inviter.is_some_and(|inviter| ignored.contains(&inviter)) {
                        let state = self.stripped_state(&room_id)?;
                        rooms.invite.insert(room_id, InvitedRoom::from(InviteState::from(state)));
                    }
                }
                MembershipState::Knock if changed_since => {
                    let mut knocked = KnockedRoom::new();
                    knocked.knock_state.events = self.stripped_state(&room_id)?;
                    rooms.knock.insert(room_id, knocked);
                }
                MembershipState::Leave | MembershipState::Ban
                    if since.is_some() && changed_since || since.is_none() && room_filter.include_leave =>
                {
                    // An invite or knock ended in a room only another server has: nothing of
                    // the room is here.
                    let left = match self.rooms.room(&room_id) {
                        Ok(_) => self.left(&room_id, since, &entry)?,
                        Err(_) => LeftRoom::new(),
                    };
                    rooms.leave.insert(room_id.clone(), left);
                }
                _ => {}
            }
        }
        Ok(rooms)
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
        let ignored = self.account_data.ignored_users(&self.session.user_id)?;
        room_view::timeline(self.rooms, room_id, &self.session.user_id, (after, upto), limit, |pdu| {
            filter::matches(timeline_filter, pdu) && !crate::account_data::hidden_by_ignoring(pdu, &ignored)
        })
    }

    fn client_events<T>(&self, events: &Events) -> Result<Vec<Raw<T>>> {
        events
            .iter()
            .map(|event| {
                let client =
                    self.rooms.client_event(event, Some((&self.session.user_id, &self.session.device_id)))?;
                Ok(Raw::from_json(filter::shape(&self.params.filter, client, &event.stored.pdu)))
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
        joined.timeline.prev_batch = room_view::prev_batch(&timeline, upto);
        joined.timeline.events = self.client_events(&timeline)?;
        joined.state = State::Before(StateEvents::with_events(state));
        joined.summary = summary;
        let counts = self.push.unread_counts(&self.session.user_id, room_id, entry.position, upto)?;
        // A client that asks for threads' counts apart gets the main timeline's in the room's.
        if self.params.filter.room.timeline.unread_thread_notifications {
            joined.unread_notifications = unread_count(counts.main);
            joined.unread_thread_notifications =
                counts.threads.iter().map(|(root, counts)| (root.clone(), unread_count(*counts))).collect();
        } else {
            joined.unread_notifications = unread_count(counts.total());
        }
        joined.ephemeral = Ephemeral::new();
        joined.ephemeral.events = ephemeral;
        joined.account_data = RoomAccountData::new();
        joined.account_data.events = account_data;
        Ok(Some(joined))
    }

    fn summary(&self, room_id: &RoomId) -> Result<RoomSummary> {
        let found = room_view::summary(self.rooms, room_id, &self.session.user_id)?;
        let mut summary = RoomSummary::new();
        summary.heroes = found.heroes;
        summary.joined_member_count = Some(UInt::new_saturating(found.joined));
        summary.invited_member_count = Some(UInt::new_saturating(found.invited));
        Ok(summary)
    }

    /// What an invited or knocking user is shown of the room.
    fn stripped_state<T>(&self, room_id: &RoomId) -> Result<Vec<Raw<T>>> {
        Ok(self.rooms.stripped_state_for(&self.session.user_id, room_id)?.into_iter().map(raw).collect())
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
        left.timeline.prev_batch = room_view::prev_batch(&timeline, entry.position);
        left.state =
            State::Before(StateEvents::with_events(self.state_events(&state_at_start, &timeline, &[])?));
        left.timeline.events = self.client_events(&timeline)?;
        Ok(left)
    }
}

fn unread_count(counts: UnreadCounts) -> UnreadNotificationsCount {
    let mut unread = UnreadNotificationsCount::new();
    unread.highlight_count = Some(UInt::new_saturating(counts.highlights));
    unread.notification_count = Some(UInt::new_saturating(counts.notifications));
    unread
}
