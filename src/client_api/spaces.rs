//! Spaces and room previews: the rooms under a space (`/hierarchy`), and what one room is
//! (`/room_summary`).

use std::sync::Arc;

use ruma::api::client::{room::get_summary, space::get_hierarchy};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    rooms::HierarchyRequest,
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(hierarchy);
    router.ruma(room_summary);
}

/// `GET /room_summary/{roomIdOrAlias}`: answered to anonymous callers too, for rooms
/// anyone may look into.
async fn room_summary(
    services: Arc<Services>,
    req: Req<get_summary::v1::Request>,
) -> Result<get_summary::v1::Response, ApiError> {
    let viewer = req.auth.as_ref().map(|session| &*session.user_id);
    let (summary, membership) =
        services.rooms.room_preview(&req.body.room_id_or_alias, &req.body.via, viewer).await?;
    let mut response = get_summary::v1::Response::new(summary);
    response.membership = membership;
    Ok(response)
}

async fn hierarchy(
    services: Arc<Services>,
    req: Req<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response, ApiError> {
    let body = req.body;
    let request = HierarchyRequest {
        suggested_only: body.suggested_only,
        max_depth: body.max_depth.map(u64::from),
        limit: body.limit.map(u64::from),
        from: body.from.as_deref(),
    };
    let page = services.rooms.space_hierarchy(&req.auth.user_id, &body.room_id, request).await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = page.rooms;
    response.next_batch = page.next_batch;
    Ok(response)
}
