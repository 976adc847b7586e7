//! A sliding sync request, checked and reduced to what the builder reads. Limits keep one
//! request from asking for unbounded work: at most [`MAX_LISTS`] lists of
//! [`MAX_RANGES`] ranges, [`MAX_SUBSCRIPTIONS`] room subscriptions, [`MAX_REQUIRED_STATE`]
//! required-state entries per list or subscription, and timelines of at most
//! [`MAX_TIMELINE_LIMIT`] events.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    OwnedRoomId, UserId,
    api::client::sync::sync_events::v5::{Request, request},
    directory::RoomTypeFilter,
    events::StateEventType,
    presence::PresenceState,
    room::RoomType,
};

use super::connections::Pos;
use crate::{
    e2ee::TO_DEVICE_PER_SYNC,
    rooms::{Error, Result},
};

pub const MAX_LISTS: usize = 100;
pub const MAX_RANGES: usize = 100;
pub const MAX_SUBSCRIPTIONS: usize = 1000;
pub const MAX_REQUIRED_STATE: usize = 1000;
pub const MAX_TIMELINE_LIMIT: u32 = 1000;
/// matrix-sdk uses at most 16 characters.
pub const MAX_CONN_ID_LEN: usize = 64;

/// A request, checked.
pub struct SlidingParams {
    pub pos: Option<Pos>,
    pub conn_id: String,
    pub set_presence: PresenceState,
    pub lists: BTreeMap<String, ListParams>,
    pub room_subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    pub extensions: Extensions,
}

pub struct ListParams {
    /// Inclusive index ranges into the list's sorted rooms.
    pub ranges: Vec<(usize, usize)>,
    pub config: RoomConfig,
    pub filters: Filters,
}

/// Which rooms a list holds (every filter given must hold).
#[derive(Default)]
pub struct Filters {
    pub is_dm: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub is_invite: Option<bool>,
    /// Room types to keep (`None` inside: rooms without a type); empty keeps all.
    pub room_types: Vec<Option<RoomType>>,
    pub not_room_types: Vec<Option<RoomType>>,
}

/// What to send of one room: its newest events and which of its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomConfig {
    pub timeline_limit: u32,
    pub required_state: RequiredState,
}

impl RoomConfig {
    /// A room in several lists or subscriptions gets the most each asks for.
    pub fn merge(&mut self, other: &RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        self.required_state.merge(&other.required_state);
    }
}

/// Which state events to send: `[type, state_key]` pairs, where `*` stands for any type or
/// any state key, `$ME` for the user, and `["m.room.member", "$LAZY"]` for the members
/// whose events the timeline shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequiredState {
    pub everything: bool,
    /// Types of which every state key is wanted.
    pub whole_types: BTreeSet<String>,
    /// State keys wanted of any type.
    pub any_type_keys: BTreeSet<String>,
    pub exact: BTreeSet<(String, String)>,
    pub lazy_members: bool,
}

impl RequiredState {
    fn from_pairs(pairs: &[(StateEventType, String)], user: &UserId) -> Result<Self> {
        if pairs.len() > MAX_REQUIRED_STATE {
            return Err(Error::InvalidParam(format!("at most {MAX_REQUIRED_STATE} required_state entries")));
        }
        let mut wanted = Self::default();
        for (kind, state_key) in pairs {
            let kind = kind.to_string();
            let state_key = if state_key == "$ME" { user.to_string() } else { state_key.clone() };
            match (kind.as_str(), state_key.as_str()) {
                ("*", "*") => wanted.everything = true,
                ("m.room.member", "$LAZY") => wanted.lazy_members = true,
                (_, "$LAZY") => {}
                ("*", _) => {
                    wanted.any_type_keys.insert(state_key);
                }
                (_, "*") => {
                    wanted.whole_types.insert(kind);
                }
                _ => {
                    wanted.exact.insert((kind, state_key));
                }
            }
        }
        Ok(wanted)
    }

    fn merge(&mut self, other: &RequiredState) {
        self.everything |= other.everything;
        self.lazy_members |= other.lazy_members;
        self.whole_types.extend(other.whole_types.iter().cloned());
        self.any_type_keys.extend(other.any_type_keys.iter().cloned());
        self.exact.extend(other.exact.iter().cloned());
    }

    /// Whether the state event `(kind, state_key)` is wanted (lazy members aside).
    pub fn wants(&self, kind: &str, state_key: &str) -> bool {
        self.everything
            || self.whole_types.contains(kind)
            || self.any_type_keys.contains(state_key)
            || self.exact.contains(&(kind.to_owned(), state_key.to_owned()))
    }

    /// A fingerprint: the connection remembers it, and a room whose config changes is
    /// sent again with the state it now asks for.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// The extensions a request turned on.
#[derive(Default)]
pub struct Extensions {
    pub to_device: Option<ToDevice>,
    pub e2ee: bool,
    pub account_data: Option<RoomSelection>,
    pub receipts: Option<RoomSelection>,
    pub typing: Option<RoomSelection>,
}

pub struct ToDevice {
    /// The extension's own token from the last response: what the client has.
    pub since: Option<u64>,
    pub limit: usize,
}

/// Which rooms an extension covers: those of the named lists (all lists when `None`) and
/// the named subscriptions (`All`: every room in the response's lists and subscriptions).
pub struct RoomSelection {
    pub lists: Option<Vec<String>>,
    pub rooms: Option<Rooms>,
}

pub enum Rooms {
    All,
    Some(BTreeSet<OwnedRoomId>),
}

impl RoomSelection {
    fn from(lists: Option<Vec<String>>, rooms: Option<Vec<request::ExtensionRoomConfig>>) -> Self {
        let rooms = rooms.map(|rooms| {
            if rooms.iter().any(|room| matches!(room, request::ExtensionRoomConfig::AllSubscribed)) {
                return Rooms::All;
            }
            Rooms::Some(
                rooms
                    .into_iter()
                    .filter_map(|room| match room {
                        request::ExtensionRoomConfig::Room(id) => Some(id),
                        _ => None,
                    })
                    .collect(),
            )
        });
        Self { lists, rooms }
    }

    /// Whether the extension covers a room that is in `in_lists` (by name) or subscribed.
    pub fn covers(&self, room_id: &OwnedRoomId, in_lists: &[&str], subscribed: bool) -> bool {
        let by_list = match &self.lists {
            None => !in_lists.is_empty(),
            Some(names) => in_lists.iter().any(|list| names.iter().any(|name| name == list || name == "*")),
        };
        let by_room = match &self.rooms {
            None => subscribed,
            Some(Rooms::All) => subscribed || !in_lists.is_empty(),
            Some(Rooms::Some(ids)) => ids.contains(room_id),
        };
        by_list || by_room
    }
}

fn enabled(flag: Option<bool>) -> bool {
    flag == Some(true)
}

fn room_config(details: (&[(StateEventType, String)], ruma::UInt), user: &UserId) -> Result<RoomConfig> {
    let (required_state, timeline_limit) = details;
    Ok(RoomConfig {
        timeline_limit: u32::try_from(u64::from(timeline_limit)).unwrap_or(u32::MAX).min(MAX_TIMELINE_LIMIT),
        required_state: RequiredState::from_pairs(required_state, user)?,
    })
}

fn room_type_filter(filters: Vec<RoomTypeFilter>) -> Vec<Option<RoomType>> {
    filters.into_iter().map(|filter| filter.as_str().map(RoomType::from)).collect()
}

impl SlidingParams {
    /// Checks a request: its `pos` must be one of ours, ranges must run forwards, and the
    /// sizes must stay within the limits above. `user` stands for `$ME`.
    pub fn check(request: Request, user: &UserId) -> Result<Self> {
        let pos = request
            .pos
            .as_deref()
            .map(|pos| {
                Pos::parse(pos)
                    .ok_or_else(|| Error::UnknownPos(format!("{pos:?} is not a pos of this server")))
            })
            .transpose()?;
        let conn_id = request.conn_id.unwrap_or_default();
        if conn_id.len() > MAX_CONN_ID_LEN {
            return Err(Error::InvalidParam(format!("conn_id is longer than {MAX_CONN_ID_LEN} bytes")));
        }
        if request.lists.len() > MAX_LISTS {
            return Err(Error::InvalidParam(format!("at most {MAX_LISTS} lists")));
        }
        if request.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
            return Err(Error::InvalidParam(format!("at most {MAX_SUBSCRIPTIONS} room subscriptions")));
        }
        let mut lists = BTreeMap::new();
        for (name, list) in request.lists {
            if list.ranges.len() > MAX_RANGES {
                return Err(Error::InvalidParam(format!("list {name}: at most {MAX_RANGES} ranges")));
            }
            let mut ranges = Vec::with_capacity(list.ranges.len());
            for (start, end) in list.ranges {
                if start > end {
                    return Err(Error::InvalidParam(format!(
                        "list {name}: range [{start}, {end}] runs backwards"
                    )));
                }
                let index = |i: ruma::UInt| usize::try_from(u64::from(i)).unwrap_or(usize::MAX);
                ranges.push((index(start), index(end)));
            }
            let details = &list.room_details;
            let config = room_config((&details.required_state, details.timeline_limit), user)?;
            let filters = list.filters.map_or_else(Filters::default, |f| Filters {
                is_dm: f.is_dm,
                is_encrypted: f.is_encrypted,
                is_invite: f.is_invite,
                room_types: room_type_filter(f.room_types),
                not_room_types: room_type_filter(f.not_room_types),
            });
            lists.insert(name, ListParams { ranges, config, filters });
        }
        let mut room_subscriptions = BTreeMap::new();
        for (room_id, subscription) in request.room_subscriptions {
            let config = room_config((&subscription.required_state, subscription.timeline_limit), user)?;
            room_subscriptions.insert(room_id, config);
        }
        let ext = request.extensions;
        let to_device = if enabled(ext.to_device.enabled) {
            let since = ext
                .to_device
                .since
                .as_deref()
                .map(|since| {
                    since.parse::<u64>().map_err(|_| {
                        Error::InvalidParam(
                            "extensions.to_device.since is not a token of this server".to_owned(),
                        )
                    })
                })
                .transpose()?;
            let limit = ext.to_device.limit.map_or(TO_DEVICE_PER_SYNC, |limit| {
                usize::try_from(u64::from(limit)).unwrap_or(usize::MAX).clamp(1, TO_DEVICE_PER_SYNC)
            });
            Some(ToDevice { since, limit })
        } else {
            None
        };
        let selection = |enabled_flag: Option<bool>, lists, rooms| {
            enabled(enabled_flag).then(|| RoomSelection::from(lists, rooms))
        };
        let extensions = Extensions {
            to_device,
            e2ee: enabled(ext.e2ee.enabled),
            account_data: selection(ext.account_data.enabled, ext.account_data.lists, ext.account_data.rooms),
            receipts: selection(ext.receipts.enabled, ext.receipts.lists, ext.receipts.rooms),
            typing: selection(ext.typing.enabled, ext.typing.lists, ext.typing.rooms),
        };
        Ok(Self { pos, conn_id, set_presence: request.set_presence, lists, room_subscriptions, extensions })
    }
}
