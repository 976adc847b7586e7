//! Spaces: the rooms under a space (`/hierarchy`).

use std::sync::Arc;

use ruma::api::client::space::get_hierarchy;

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
