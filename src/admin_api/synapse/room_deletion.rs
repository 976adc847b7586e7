//! Deleting and blocking rooms: `DELETE /v2/rooms/{id}` in the background with its
//! status, the older `DELETE /v1/rooms/{id}` that answers when done, and the block flag.

use std::sync::Arc;

use http::Method;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    admin::rooms as admin_rooms,
    http::{ApiError, Response, router::Router},
    rooms::{DeleteRoom, Deletion, DeletionStatus, Shutdown},
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::DELETE, "/_synapse/admin/v2/rooms/{room_id}", delete_v2);
    call::route(router, Method::DELETE, "/_synapse/admin/v1/rooms/{room_id}", delete_v1);
    call::route(router, Method::GET, "/_synapse/admin/v2/rooms/{room_id}/delete_status", status_of_room);
    call::route(router, Method::GET, "/_synapse/admin/v2/rooms/delete_status/{delete_id}", status);
    call::route(router, Method::GET, "/_synapse/admin/v1/rooms/{room_id}/block", get_block);
    call::route(router, Method::PUT, "/_synapse/admin/v1/rooms/{room_id}/block", put_block);
}

#[derive(Deserialize)]
struct DeleteBody {
    new_room_user_id: Option<String>,
    room_name: Option<String>,
    message: Option<String>,
    #[serde(default)]
    block: bool,
    #[serde(default = "call::yes")]
    purge: bool,
    #[serde(default)]
    force_purge: bool,
}

/// The request, checked: the room is known, the new room's creator is a local user.
fn delete_request(services: &Services, call: &AdminCall) -> Result<(OwnedRoomId, DeleteRoom), ApiError> {
    let room_id = call.input.room(0)?;
    let body: DeleteBody = call.input.json()?;
    services.rooms.room_details(&room_id)?;
    let new_room_user_id = match body.new_room_user_id {
        Some(user) => {
            let user = services.accounts.own_user_id(&user)?;
            services.accounts.user_info(&user)?;
            Some(user)
        }
        None => None,
    };
    let request = DeleteRoom {
        requester: Some(call.admin.clone()),
        new_room_user_id,
        room_name: body.room_name,
        message: body.message,
        block: body.block,
        purge: body.purge,
        force_purge: body.force_purge,
    };
    Ok((room_id, request))
}

async fn delete_v2(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let (room_id, request) = delete_request(&services, &call)?;
    let delete_id = admin_rooms::delete_room(&services, &room_id, request)?;
    call::ok(&json!({ "delete_id": delete_id }))
}

/// The same deletion, answered when it has finished.
async fn delete_v1(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let (room_id, request) = delete_request(&services, &call)?;
    let shutdown = admin_rooms::delete_room_now(&services, &room_id, request).await?;
    call::ok(&ShutdownJson::from(shutdown))
}

#[derive(Serialize)]
struct ShutdownJson {
    kicked_users: Vec<OwnedUserId>,
    failed_to_kick_users: Vec<OwnedUserId>,
    local_aliases: Vec<OwnedRoomAliasId>,
    new_room_id: Option<OwnedRoomId>,
}

impl From<Shutdown> for ShutdownJson {
    fn from(shutdown: Shutdown) -> Self {
        Self {
            kicked_users: shutdown.kicked_users,
            failed_to_kick_users: shutdown.failed_to_kick_users,
            local_aliases: shutdown.local_aliases,
            new_room_id: shutdown.new_room_id,
        }
    }
}

#[derive(Serialize)]
struct StatusJson {
    delete_id: String,
    room_id: OwnedRoomId,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    shutdown_room: ShutdownJson,
}

impl From<Deletion> for StatusJson {
    fn from(deletion: Deletion) -> Self {
        let (status, error) = match deletion.status {
            DeletionStatus::Scheduled => ("scheduled", None),
            DeletionStatus::Active => ("active", None),
            DeletionStatus::Complete => ("complete", None),
            DeletionStatus::Failed(why) => ("failed", Some(why)),
        };
        Self {
            delete_id: deletion.delete_id,
            room_id: deletion.room_id,
            status,
            error,
            shutdown_room: deletion.shutdown.into(),
        }
    }
}

async fn status_of_room(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let results: Vec<StatusJson> =
        services.rooms.deletions_of(&room_id).into_iter().map(StatusJson::from).collect();
    if results.is_empty() {
        return Err(ApiError::not_found(format!("no deletion of {room_id}")));
    }
    call::ok(&json!({ "results": results }))
}

async fn status(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let delete_id = call.input.arg(0);
    let deletion = services
        .rooms
        .deletion(delete_id)
        .ok_or_else(|| ApiError::not_found(format!("no deletion {delete_id}")))?;
    call::ok(&StatusJson::from(deletion))
}

async fn get_block(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let body = match services.rooms.block_of(&room_id)? {
        Some(Some(user_id)) => json!({ "block": true, "user_id": user_id }),
        Some(None) => json!({ "block": true }),
        None => json!({ "block": false }),
    };
    call::ok(&body)
}

#[derive(Deserialize)]
struct BlockBody {
    block: bool,
}

/// A room may be blocked before this server knows it.
async fn put_block(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let body: BlockBody = call.input.json()?;
    services.rooms.set_blocked(&room_id, body.block, Some(&call.admin)).await?;
    call::ok(&json!({ "block": body.block }))
}
