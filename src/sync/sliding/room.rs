//! One room of a sliding sync response.
//!
//! A room is sent in full (its newest events, and all the state the client asked for) the
//! first time on a connection and when the user (re)joins it; after that only what changed
//! since the client last had it. matrix-sdk reads room state only from `required_state`
//! and treats it as the state *after* the timeline, so every state change the client asked
//! for goes there, even when the event is in the timeline too. A left room carries the
//! user's own leave, so the client stops showing it as joined.

use std::collections::BTreeSet;

use ruma::{
    JsOption, OwnedEventId, OwnedMxcUri, OwnedUserId, UInt,
    api::client::sync::sync_events::{UnreadNotificationsCount, v5::response},
    events::{StateEventType, room::member::MembershipState},
    serde::Raw,
};
use serde_json::Value as JsonValue;

use super::{Builder, connections::RoomSent, lists::Candidate, params::RoomConfig};
use crate::{
    rooms::{Events, Result},
    storage::StateMap,
    sync::room_view,
};

/// How a room is sent this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Never sent on this connection, or (re)joined since: everything.
    Full,
    /// Sent before: what happened after `after`. `newest` asks for the newest events
    /// whatever the client has (it raised the timeline limit), `state` for all the state
    /// the config asks for (it changed the config).
    Since { after: u64, newest: bool, state: bool },
}

/// A sent room: the response part, what the connection remembers, and the ids of its
/// timeline events (receipts on them go with a room sent in full).
pub struct SentRoom {
    pub room: response::Room,
    pub remember: RoomSent,
    pub timeline: Vec<OwnedEventId>,
    pub full: bool,
}

fn raw<T>(value: &JsonValue) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).expect("JSON values serialise"))
}

fn count(n: u64) -> Option<UInt> {
    Some(UInt::new_saturating(n))
}

impl Builder<'_> {
    /// The room as this response sends it, or `None` when the client has it all.
    pub(super) fn room(
        &self,
        candidate: &Candidate,
        config: &RoomConfig,
        had: Option<RoomSent>,
        is_dm: bool,
        upto: u64,
    ) -> Result<Option<SentRoom>> {
        let entry = &candidate.entry;
        let remember = RoomSent {
            upto,
            membership_position: entry.position,
            timeline_limit: config.timeline_limit,
            required_state: config.required_state.fingerprint(),
        };
        let membership_changed = had.is_some_and(|had| had.membership_position != entry.position);
        if matches!(entry.membership, MembershipState::Invite | MembershipState::Knock) {
            return if had.is_some() && !membership_changed {
                Ok(None)
            } else {
                self.invited(candidate, remember).map(Some)
            };
        }
        let Some(record) = &candidate.record else { return Ok(None) };
        let joined = entry.membership == MembershipState::Join;
        // Nothing after the user left is theirs to see.
        let room_upto = if joined { upto } else { entry.position.min(upto) };
        let mode = match had {
            None => Mode::Full,
            Some(_) if membership_changed && joined => Mode::Full,
            Some(had) => {
                let newest = config.timeline_limit > had.timeline_limit;
                let state = remember.required_state != had.required_state;
                let has_events = record.last_position.min(room_upto) > had.upto;
                if !(newest || state || membership_changed || has_events) {
                    return Ok(None);
                }
                Mode::Since { after: had.upto, newest, state }
            }
        };
        let user = &self.session.user_id;
        let room_id = &candidate.room_id;
        let (after, whole_state) = match mode {
            Mode::Full => (0, true),
            Mode::Since { after, newest, state } => {
                (if newest { 0 } else { after }, state || membership_changed)
            }
        };
        let limit = config.timeline_limit as usize;
        let (events, limited) = if limit == 0 {
            (Events::new(), false)
        } else {
            let ignored = self.sync.account_data.ignored_users(user)?;
            room_view::timeline(self.rooms, room_id, user, (after, room_upto), limit, |pdu| {
                !crate::account_data::hidden_by_ignoring(pdu, &ignored)
            })?
        };

        // The state after the timeline, read whole only when the room is sent whole or its
        // state changed; otherwise the few member events needed are looked up one by one.
        let state_changed = |after: u64| record.last_state_change == 0 || record.last_state_change > after;
        let now = match mode {
            Mode::Since { after, .. } if !whole_state && !state_changed(after) => None,
            _ => Some(self.rooms.state_at_position(room_id, room_upto)?),
        };
        let lookup = |kind: &str, state_key: &str| -> Result<Option<OwnedEventId>> {
            match &now {
                Some(now) => Ok(now.get(&(kind.to_owned(), state_key.to_owned())).cloned()),
                None => self.rooms.current_state_event_id(room_id, kind, state_key),
            }
        };
        let wanted = &config.required_state;
        let changed_keys = match (mode, &now) {
            (Mode::Since { after, .. }, Some(now)) if !whole_state => {
                Some(self.changed_state(room_id, after, now)?)
            }
            (Mode::Since { .. }, None) => Some(BTreeSet::new()),
            _ => None,
        };
        let mut state_ids: BTreeSet<OwnedEventId> = BTreeSet::new();
        // A room the user is not in shows them only their own membership: what they may see
        // of it is in the timeline, which history visibility filters.
        if let (true, Some(now)) = (joined, &now) {
            for ((kind, state_key), id) in now {
                let in_scope = changed_keys
                    .as_ref()
                    .is_none_or(|changed| changed.contains(&(kind.clone(), state_key.clone())));
                // Member changes in the range go too when members are lazy-loaded and nothing
                // was left out, so the client can keep its member list whole.
                let lazy_change =
                    wanted.lazy_members && changed_keys.is_some() && !limited && kind == "m.room.member";
                if in_scope && (wanted.wants(kind, state_key) || lazy_change) {
                    state_ids.insert(id.clone());
                }
            }
        }
        if joined && wanted.lazy_members {
            for event in &events {
                state_ids.extend(lookup("m.room.member", event.pdu.sender.as_str())?);
                if event.pdu.kind.to_string() == "m.room.member"
                    && let Some(target) = &event.pdu.state_key
                {
                    state_ids.extend(lookup("m.room.member", target)?);
                }
            }
        }
        if !joined || membership_changed {
            state_ids.extend(lookup("m.room.member", user.as_str())?);
        }

        let mut room = response::Room::new();
        room.initial = (mode == Mode::Full).then_some(true);
        room.timeline = events
            .iter()
            .map(|event| Ok(Raw::from_json(self.client_event(event)?)))
            .collect::<Result<_>>()?;
        room.required_state = self.state_events(&state_ids)?;
        room.limited = limited;
        if limit > 0 {
            room.prev_batch = room_view::prev_batch(&events, room_upto);
            room.num_live = count(
                self.since
                    .map_or(0, |since| events.iter().filter(|event| event.stored.position > since).count())
                    as u64,
            );
        }
        let state_content = |kind: StateEventType| -> Result<Option<JsonValue>> {
            match lookup(&kind.to_string(), "")? {
                Some(id) => Ok(self.rooms.event(&id)?.map(|event| event.pdu.content_json())),
                None => Ok(None),
            }
        };
        let name_or_avatar_changed = joined
            && changed_keys.as_ref().is_none_or(|changed| {
                changed
                    .iter()
                    .any(|(kind, key)| key.is_empty() && (kind == "m.room.name" || kind == "m.room.avatar"))
            });
        if name_or_avatar_changed {
            let name = state_content(StateEventType::RoomName)?;
            room.name = name.and_then(|c| c["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned));
            let avatar = state_content(StateEventType::RoomAvatar)?;
            room.avatar = match avatar.and_then(|c| c["url"].as_str().map(OwnedMxcUri::from)) {
                Some(url) => JsOption::Some(url),
                None if mode == Mode::Full => JsOption::Undefined,
                None => JsOption::Null,
            };
        }
        if joined {
            let summary = room_view::summary(self.rooms, room_id, user)?;
            room.joined_count = count(summary.joined);
            room.invited_count = count(summary.invited);
            if !summary.heroes.is_empty() {
                let hero =
                    |user_id: &OwnedUserId| self.hero(user_id, lookup("m.room.member", user_id.as_str())?);
                room.heroes = Some(summary.heroes.iter().map(hero).collect::<Result<_>>()?);
            }
            let counts = self.sync.push.unread_counts(user, room_id, entry.position, upto)?.total();
            let mut unread = UnreadNotificationsCount::new();
            unread.notification_count = count(counts.notifications);
            unread.highlight_count = count(counts.highlights);
            room.unread_notifications = unread;
        }
        room.bump_stamp = count(match joined {
            true if record.last_bump > 0 => record.last_bump.min(upto),
            true => record.last_position.min(upto),
            false => entry.position,
        });
        room.is_dm = is_dm.then_some(true);
        let timeline = events.iter().map(|event| event.pdu.event_id.clone()).collect();
        let remember = RoomSent { upto: room_upto, ..remember };
        Ok(Some(SentRoom { room, remember, timeline, full: mode == Mode::Full }))
    }

    /// An invite (or knock): what the inviting server says of the room, sent once per change.
    fn invited(&self, candidate: &Candidate, remember: RoomSent) -> Result<SentRoom> {
        let stripped = self.rooms.stripped_state_for(&self.session.user_id, &candidate.room_id)?;
        let mut room = response::Room::new();
        room.initial = Some(true);
        room.invite_state = Some(stripped.iter().map(raw).collect());
        room.bump_stamp = count(candidate.entry.position);
        Ok(SentRoom { room, remember, timeline: Vec::new(), full: true })
    }

    /// The state keys whose event changed between `after` and `now`.
    fn changed_state(
        &self,
        room_id: &ruma::RoomId,
        after: u64,
        now: &StateMap,
    ) -> Result<BTreeSet<(String, String)>> {
        let before = self.rooms.state_at_position(room_id, after)?;
        Ok(now.iter().filter(|(key, id)| before.get(*key) != Some(*id)).map(|(key, _)| key.clone()).collect())
    }

    fn state_events<T>(&self, ids: &BTreeSet<OwnedEventId>) -> Result<Vec<Raw<T>>> {
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(event) = self.rooms.event(id)? {
                events.push(Raw::from_json(self.client_event(&event)?));
            }
        }
        Ok(events)
    }

    fn client_event(&self, event: &crate::rooms::Event) -> Result<Box<serde_json::value::RawValue>> {
        self.rooms.client_event(event, Some((&self.session.user_id, &self.session.device_id)))
    }

    /// A hero with the display name and avatar of their member event.
    fn hero(&self, user_id: &OwnedUserId, member_event: Option<OwnedEventId>) -> Result<response::Hero> {
        let mut hero = response::Hero::new(user_id.clone());
        if let Some(id) = member_event
            && let Some(event) = self.rooms.event(&id)?
        {
            let content = event.pdu.content_json();
            hero.name = content["displayname"].as_str().map(str::to_owned);
            hero.avatar = content["avatar_url"].as_str().map(OwnedMxcUri::from);
        }
        Ok(hero)
    }
}
