//! Which rooms a user has, which of them each list holds, and in which order.
//!
//! A list holds the user's joined, invited and knocked rooms that pass its filters, plus
//! rooms they left or were banned from since the connection's `pos` (sent once, so the
//! client drops them). The newest first: a joined room by its latest event, any other by
//! the event that set the user's membership. Each range of a list picks rooms by index,
//! both ends included.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    events::{StateEventType, room::member::MembershipState},
    room::RoomType,
};

use super::params::{Filters, ListParams, RoomConfig};
use crate::{
    account_data::AccountData,
    rooms::{Result, Rooms},
    storage::{RoomRecord, Store, UserRoom},
};

/// One of the user's rooms, as the lists see it.
pub struct Candidate {
    pub room_id: OwnedRoomId,
    pub entry: UserRoom,
    /// The room's record; `None` for an invite to a room only another server has.
    pub record: Option<RoomRecord>,
    /// The room's short id (what the connection remembers rooms by).
    pub short: Option<u64>,
    /// Newest first by this.
    pub sort_key: u64,
}

/// The user's rooms a list may hold, as of `upto`; not invites from users they ignore.
pub fn candidates(
    rooms: &Rooms,
    store: &Store,
    (user, ignored): (&UserId, &BTreeSet<OwnedUserId>),
    since: Option<u64>,
    upto: u64,
) -> Result<Vec<Candidate>> {
    let mut found = Vec::new();
    for (room_id, entry) in store.user_rooms(user)? {
        // A membership change still being written shows up in the next response.
        if entry.position > upto {
            continue;
        }
        let keep = match entry.membership {
            MembershipState::Join | MembershipState::Knock => true,
            MembershipState::Invite => {
                !rooms.inviter(user, &room_id)?.is_some_and(|by| ignored.contains(&by))
            }
            // Sent once after it happened; after that the room is gone from the lists.
            _ => since.is_some_and(|since| entry.position > since),
        };
        if !keep {
            continue;
        }
        let record = rooms.room(&room_id).ok();
        let sort_key = match (&record, &entry.membership) {
            (Some(record), MembershipState::Join) => record.last_position.min(upto),
            _ => entry.position,
        };
        let short = record.as_ref().map(|record| record.short);
        found.push(Candidate { room_id, entry, record, short, sort_key });
    }
    found.sort_by(|a, b| b.sort_key.cmp(&a.sort_key).then_with(|| a.room_id.cmp(&b.room_id)));
    Ok(found)
}

/// What the filters need to know beyond a room's own state: the user's direct chats.
pub struct FilterContext {
    direct_rooms: BTreeSet<OwnedRoomId>,
}

impl FilterContext {
    pub fn new(account_data: &AccountData, user: &UserId) -> Result<Self> {
        let direct = account_data.get(user, None, "m.direct").unwrap_or_default();
        let direct_rooms = direct
            .as_object()
            .into_iter()
            .flat_map(|by_user| by_user.values())
            .filter_map(|rooms| rooms.as_array())
            .flatten()
            .filter_map(|room| room.as_str().and_then(|room| OwnedRoomId::try_from(room).ok()))
            .collect();
        Ok(Self { direct_rooms })
    }

    pub fn is_dm(&self, room_id: &OwnedRoomId) -> bool {
        self.direct_rooms.contains(room_id)
    }
}

/// Whether `candidate` passes `filters`. A filter on room state the server does not have
/// (an invite from another server) keeps the room only when the invite says enough.
fn passes(filters: &Filters, candidate: &Candidate, context: &FilterContext, rooms: &Rooms) -> Result<bool> {
    if let Some(is_invite) = filters.is_invite
        && is_invite != (candidate.entry.membership == MembershipState::Invite)
    {
        return Ok(false);
    }
    if let Some(is_dm) = filters.is_dm
        && is_dm != context.is_dm(&candidate.room_id)
    {
        return Ok(false);
    }
    let state = |kind: StateEventType, field: &str| -> Result<Option<Option<String>>> {
        match &candidate.record {
            Some(_) => Ok(Some(
                rooms
                    .state_content(&candidate.room_id, &kind, "")?
                    .and_then(|content| content[field].as_str().map(str::to_owned)),
            )),
            None => Ok(None),
        }
    };
    if let Some(is_encrypted) = filters.is_encrypted {
        match state(StateEventType::RoomEncryption, "algorithm")? {
            Some(algorithm) if algorithm.is_some() == is_encrypted => {}
            _ => return Ok(false),
        }
    }
    if !filters.room_types.is_empty() || !filters.not_room_types.is_empty() {
        let Some(room_type) = state(StateEventType::RoomCreate, "type")? else { return Ok(false) };
        let room_type = room_type.map(|t| RoomType::from(t.as_str()));
        if !filters.room_types.is_empty() && !filters.room_types.contains(&room_type) {
            return Ok(false);
        }
        if filters.not_room_types.contains(&room_type) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What the lists hold: each list's count, the rooms its ranges pick (with the list's room
/// config), and every room any list holds, in range or not, with the names of its lists
/// (the rooms extensions report on).
pub struct Selection<'a> {
    pub counts: BTreeMap<String, usize>,
    pub picked: Vec<(&'a OwnedRoomId, &'a RoomConfig)>,
    pub listed: BTreeMap<&'a OwnedRoomId, Vec<&'a str>>,
}

pub fn select<'a>(
    lists: &'a BTreeMap<String, ListParams>,
    candidates: &'a [Candidate],
    context: &FilterContext,
    rooms: &Rooms,
) -> Result<Selection<'a>> {
    let mut selection = Selection { counts: BTreeMap::new(), picked: Vec::new(), listed: BTreeMap::new() };
    for (name, list) in lists {
        let mut members = Vec::new();
        for candidate in candidates {
            if passes(&list.filters, candidate, context, rooms)? {
                members.push(candidate);
                selection.listed.entry(&candidate.room_id).or_default().push(name);
            }
        }
        selection.counts.insert(name.clone(), members.len());
        for &(start, end) in &list.ranges {
            let end = end.min(members.len().saturating_sub(1));
            if start > end || start >= members.len() {
                continue;
            }
            selection
                .picked
                .extend(members[start..=end].iter().map(|candidate| (&candidate.room_id, &list.config)));
        }
    }
    Ok(selection)
}
