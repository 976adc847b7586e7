//! Room administration: the list of every room with search, filters and order.

use super::{Error, Page};
use crate::{rooms::RoomDetails, services::Services};

/// What the room list is sorted by (Synapse's `order_by`). Counts sort largest first,
/// text alphabetically, as Synapse does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoomOrder {
    #[default]
    Name,
    CanonicalAlias,
    JoinedMembers,
    JoinedLocalMembers,
    Version,
    Creator,
    Encryption,
    Federatable,
    Public,
    JoinRules,
    GuestAccess,
    HistoryVisibility,
    StateEvents,
}

/// Which rooms to list, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct RoomQuery {
    /// Only rooms whose name or canonical alias's localpart contains this (case-insensitive),
    /// or whose id contains it (case-sensitive).
    pub search_term: Option<String>,
    /// Only published rooms (`Some(true)`) or only the others (`Some(false)`).
    pub public: Option<bool>,
    /// Only rooms nobody is in (`Some(true)`) or only the others (`Some(false)`).
    pub empty: Option<bool>,
    pub order: RoomOrder,
    pub descending: bool,
    pub from: usize,
    pub limit: usize,
}

pub fn list_rooms(services: &Services, query: &RoomQuery) -> Result<Page<RoomDetails>, Error> {
    let matches = |room: &RoomDetails| {
        let Some(term) = query.search_term.as_deref() else { return true };
        let lower = term.to_lowercase();
        let alias_localpart = room
            .canonical_alias
            .as_deref()
            .and_then(|a| a.strip_prefix('#'))
            .and_then(|a| a.split(':').next());
        room.room_id.as_str().contains(term)
            || room.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&lower))
            || alias_localpart.is_some_and(|a| a.to_lowercase().contains(&lower))
    };
    let mut rooms: Vec<RoomDetails> = services
        .rooms
        .all_room_details()?
        .into_iter()
        .filter(|room| query.public.is_none_or(|public| room.public == public))
        .filter(|room| query.empty.is_none_or(|empty| (room.joined_members == 0) == empty))
        .filter(matches)
        .collect();
    // Ties in room id order, so pages do not shift between requests.
    rooms.sort_by(|a, b| a.room_id.cmp(&b.room_id));
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    match query.order {
        RoomOrder::Name => rooms.sort_by_key(|r| text(&r.name)),
        RoomOrder::CanonicalAlias => rooms.sort_by_key(|r| text(&r.canonical_alias)),
        RoomOrder::JoinedMembers => rooms.sort_by_key(|r| std::cmp::Reverse(r.joined_members)),
        RoomOrder::JoinedLocalMembers => rooms.sort_by_key(|r| std::cmp::Reverse(r.joined_local_members)),
        RoomOrder::Version => {
            rooms.sort_by_key(|r| std::cmp::Reverse(r.version.as_str().parse::<u32>().unwrap_or(0)))
        }
        RoomOrder::Creator => {
            rooms.sort_by_key(|r| r.creator.as_ref().map(|c| c.to_string()).unwrap_or_default())
        }
        RoomOrder::Encryption => rooms.sort_by_key(|r| text(&r.encryption)),
        RoomOrder::Federatable => rooms.sort_by_key(|r| std::cmp::Reverse(r.federatable)),
        RoomOrder::Public => rooms.sort_by_key(|r| std::cmp::Reverse(r.public)),
        RoomOrder::JoinRules => rooms.sort_by_key(|r| text(&r.join_rules)),
        RoomOrder::GuestAccess => rooms.sort_by_key(|r| text(&r.guest_access)),
        RoomOrder::HistoryVisibility => rooms.sort_by_key(|r| text(&r.history_visibility)),
        RoomOrder::StateEvents => rooms.sort_by_key(|r| std::cmp::Reverse(r.state_events)),
    }
    if query.descending {
        rooms.reverse();
    }
    Ok(Page::of(rooms, query.from, query.limit))
}

/// Starts deleting a room in the background; returns the id its progress is asked by.
pub fn delete_room(
    services: &std::sync::Arc<Services>,
    room_id: &ruma::RoomId,
    request: crate::rooms::DeleteRoom,
) -> Result<String, Error> {
    let delete_id = services.rooms.schedule_deletion(room_id)?;
    let (services, id, room) = (services.clone(), delete_id.clone(), room_id.to_owned());
    tokio::spawn(async move { services.rooms.run_deletion(&id, &room, request).await });
    Ok(delete_id)
}

/// Deletes a room and answers when done, with what moving its members out did.
pub async fn delete_room_now(
    services: &Services,
    room_id: &ruma::RoomId,
    request: crate::rooms::DeleteRoom,
) -> Result<crate::rooms::Shutdown, Error> {
    let rooms = &services.rooms;
    let delete_id = rooms.schedule_deletion(room_id)?;
    rooms.run_deletion(&delete_id, room_id, request).await;
    let deletion = rooms.deletion(&delete_id).expect("a deletion is kept for a day");
    match deletion.status {
        crate::rooms::DeletionStatus::Failed(why) => Err(crate::error::Error::InvalidParam(why).into()),
        _ => Ok(deletion.shutdown),
    }
}
