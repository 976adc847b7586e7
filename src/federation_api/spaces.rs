//! Spaces: a space and its children, for another server's `/hierarchy` walk.

use std::sync::Arc;

use ruma::api::federation::space::get_hierarchy;

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(hierarchy);
}

/// `GET /hierarchy/{roomId}`: not paginated; the asking server filters for its user.
async fn hierarchy(
    services: Arc<Services>,
    req: Req<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response, ApiError> {
    let body = req.body;
    let found = services.rooms.server_hierarchy(&req.auth, &body.room_id, body.suggested_only)?;
    let mut response = get_hierarchy::v1::Response::new(found.room);
    response.children = found.children;
    response.inaccessible_children = found.inaccessible_children;
    Ok(response)
}
