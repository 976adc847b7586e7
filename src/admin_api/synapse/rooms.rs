//! Rooms: list (search, filters, order, paging), details, members, state, and making a
//! user a room admin.

use std::sync::Arc;

use http::Method;
use ruma::{OwnedRoomId, OwnedRoomOrAliasId};
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, json};

use super::call::{self, AdminCall};
use crate::{
    admin::rooms::{self as admin_rooms, RoomOrder, RoomQuery},
    http::{ApiError, Response, router::Router},
    rooms::RoomDetails,
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, "/_synapse/admin/v1/rooms", list);
    call::route(router, Method::GET, "/_synapse/admin/v1/rooms/{room_id}", details);
    call::route(router, Method::GET, "/_synapse/admin/v1/rooms/{room_id}/members", members);
    call::route(router, Method::GET, "/_synapse/admin/v1/rooms/{room_id}/state", state);
    call::route(router, Method::POST, "/_synapse/admin/v1/rooms/{room_id}/make_room_admin", make_room_admin);
}

/// A room as Synapse lists it; `details` adds what only the single-room answer has.
#[derive(Serialize)]
struct RoomJson {
    room_id: OwnedRoomId,
    name: Option<String>,
    canonical_alias: Option<String>,
    joined_members: u64,
    joined_local_members: u64,
    version: String,
    creator: Option<String>,
    encryption: Option<String>,
    federatable: bool,
    public: bool,
    join_rules: Option<String>,
    guest_access: Option<String>,
    history_visibility: Option<String>,
    state_events: u64,
    room_type: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<DetailsJson>,
}

#[derive(Serialize)]
struct DetailsJson {
    topic: Option<String>,
    avatar: Option<String>,
    /// Myelin does not count devices per room.
    joined_local_devices: Option<u64>,
    /// Myelin keeps forgotten rooms per user only.
    forgotten: bool,
    tombstoned: bool,
    replacement_room: Option<String>,
}

impl RoomJson {
    fn new(room: RoomDetails, detailed: bool) -> Self {
        let details = detailed.then_some(DetailsJson {
            topic: room.topic,
            avatar: room.avatar,
            joined_local_devices: None,
            forgotten: false,
            tombstoned: room.tombstoned,
            replacement_room: room.replacement_room,
        });
        Self {
            room_id: room.room_id,
            name: room.name,
            canonical_alias: room.canonical_alias,
            joined_members: room.joined_members,
            joined_local_members: room.joined_local_members,
            version: room.version.to_string(),
            creator: room.creator.map(|c| c.to_string()),
            encryption: room.encryption,
            federatable: room.federatable,
            public: room.public,
            join_rules: room.join_rules,
            guest_access: room.guest_access,
            history_visibility: room.history_visibility,
            state_events: room.state_events,
            room_type: room.room_type,
            details,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    from: usize,
    #[serde(default = "call::default_limit")]
    limit: usize,
    order_by: Option<String>,
    dir: Option<String>,
    search_term: Option<String>,
    public_rooms: Option<bool>,
    empty_rooms: Option<bool>,
}

async fn list(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let q: ListQuery = call.input.query()?;
    let order = match q.order_by.as_deref().unwrap_or("name") {
        "name" | "alphabetical" => RoomOrder::Name,
        "size" | "joined_members" => RoomOrder::JoinedMembers,
        "canonical_alias" => RoomOrder::CanonicalAlias,
        "joined_local_members" => RoomOrder::JoinedLocalMembers,
        "version" => RoomOrder::Version,
        "creator" => RoomOrder::Creator,
        "encryption" => RoomOrder::Encryption,
        "federatable" => RoomOrder::Federatable,
        "public" => RoomOrder::Public,
        "join_rules" => RoomOrder::JoinRules,
        "guest_access" => RoomOrder::GuestAccess,
        "history_visibility" => RoomOrder::HistoryVisibility,
        "state_events" => RoomOrder::StateEvents,
        other => return Err(ApiError::invalid_param(format!("unknown order_by {other:?}"))),
    };
    let query = RoomQuery {
        search_term: q.search_term.filter(|t| !t.is_empty()),
        public: q.public_rooms,
        empty: q.empty_rooms,
        order,
        descending: call::backwards(q.dir.as_deref())?,
        from: q.from,
        limit: q.limit,
    };
    let page = admin_rooms::list_rooms(&services, &query)?;
    let mut body = json!({
        "rooms": page.items.into_iter().map(|r| RoomJson::new(r, false)).collect::<Vec<_>>(),
        "offset": q.from,
        "total_rooms": page.total,
    });
    if let Some(next) = page.next {
        body["next_batch"] = json!(next);
    }
    if q.from > 0 {
        body["prev_batch"] = json!(q.from.saturating_sub(q.limit));
    }
    call::ok(&body)
}

async fn details(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    call::ok(&RoomJson::new(services.rooms.room_details(&room_id)?, true))
}

async fn members(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let members: Vec<_> = services.rooms.current_members(&room_id)?.joined().cloned().collect();
    call::ok(&json!({ "total": members.len(), "members": members }))
}

#[derive(Deserialize)]
struct StateQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn state(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let query: StateQuery = call.input.query()?;
    let state: Vec<JsonValue> = services
        .rooms
        .current_state(&room_id)?
        .iter()
        .filter(|pdu| query.kind.as_deref().is_none_or(|kind| pdu.kind.to_string() == kind))
        .map(|pdu| pdu.client_event().to_json())
        .collect();
    call::ok(&json!({ "state": state }))
}

#[derive(Deserialize)]
struct MakeRoomAdminBody {
    user_id: Option<String>,
}

/// The room may be named by an alias of this server too.
async fn make_room_admin(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let target = OwnedRoomOrAliasId::try_from(call.input.arg(0))
        .map_err(|e| ApiError::invalid_param(format!("invalid room id or alias: {e}")))?;
    let body: MakeRoomAdminBody = call.input.json()?;
    let user_id = match body.user_id {
        Some(user_id) => services.accounts.own_user_id(&user_id)?,
        None => call.admin.clone(),
    };
    services.accounts.user_info(&user_id)?;
    let (room_id, _) = services.rooms.resolve_room(&target).await?;
    services.rooms.make_room_admin(&room_id, &user_id).await?;
    call::empty()
}
