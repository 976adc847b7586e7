//! Purging a room's history: `POST /v1/purge_history/{room_id}[/{event_id}]`, run in the
//! background, and its status.

use std::sync::Arc;

use http::Method;
use ruma::OwnedEventId;
use serde::Deserialize;
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    http::{ApiError, Response, router::Router},
    rooms::{PurgePoint, PurgeStatus},
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::POST, "/_synapse/admin/v1/purge_history/{room_id}", purge);
    call::route(
        router,
        Method::POST,
        "/_synapse/admin/v1/purge_history/{room_id}/{event_id}",
        purge_at_event,
    );
    call::route(router, Method::GET, "/_synapse/admin/v1/purge_history_status/{purge_id}", status);
}

#[derive(Deserialize)]
struct PurgeBody {
    #[serde(default)]
    delete_local_events: bool,
    purge_up_to_event_id: Option<OwnedEventId>,
    purge_up_to_ts: Option<u64>,
}

/// The older form, with the event in the path.
async fn purge_at_event(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let id = call.input.arg(1);
    let event_id = OwnedEventId::try_from(id).map_err(|e| ApiError::invalid_param(format!("{id}: {e}")))?;
    start(&services, &call, Some(event_id))
}

async fn purge(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    start(&services, &call, None)
}

fn start(services: &Services, call: &AdminCall, in_path: Option<OwnedEventId>) -> Result<Response, ApiError> {
    let room_id = call.input.room(0)?;
    let body: PurgeBody = call.input.json()?;
    let point = match (in_path.or(body.purge_up_to_event_id), body.purge_up_to_ts) {
        (Some(event_id), _) => PurgePoint::Event(event_id),
        (None, Some(ts)) => PurgePoint::Timestamp(ts),
        (None, None) => {
            return Err(ApiError::missing_param("give purge_up_to_event_id or purge_up_to_ts"));
        }
    };
    if let PurgePoint::Event(event_id) = &point {
        // Checked now, so that a wrong id is answered, not only logged.
        services.rooms.purge_point_position(&room_id, event_id)?;
    }
    let purge_id = services.rooms.start_history_purge(&room_id, point, body.delete_local_events)?;
    call::ok(&json!({ "purge_id": purge_id }))
}

async fn status(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let purge_id = call.input.arg(0);
    let status = services
        .rooms
        .purge_status(purge_id)
        .ok_or_else(|| ApiError::not_found(format!("no purge {purge_id}")))?;
    call::ok(&match status {
        PurgeStatus::Active => json!({ "status": "active" }),
        PurgeStatus::Complete => json!({ "status": "complete" }),
        PurgeStatus::Failed(error) => json!({ "status": "failed", "error": error }),
    })
}
