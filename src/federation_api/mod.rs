//! Server-server API handlers: thin, like the client API's. Every route but the key list
//! and the version is authenticated by the X-Matrix signature of the calling server (see
//! `http::router`), whose name the handlers receive as `req.auth`.

mod devices;
mod keys;
mod media;
mod query;
mod rooms;
mod spaces;
mod transactions;

use std::sync::Arc;

use ruma::{
    OwnedServerName, RoomId, ServerName,
    api::federation::discovery::{discover_homeserver, get_server_version},
};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

/// What any server or client may call: our key list, other servers' (as a notary), and the delegation of federation to
/// another host (`/.well-known/matrix/server`), which is looked up on port 443 of the
/// server name, where the client listener sits behind the reverse proxy.
pub fn public_routes(router: &mut Router) {
    router.ruma(keys::server_keys);
    router.ruma(keys::query_one);
    router.ruma(keys::query_batch);
    router.ruma(well_known_server);
}

/// `GET /.well-known/matrix/server`: `federation.well_known_server`, when set.
async fn well_known_server(
    services: Arc<Services>,
    _: Req<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response, ApiError> {
    let delegated = services
        .config
        .federation
        .well_known_server
        .as_deref()
        .ok_or_else(|| ApiError::not_found("This server does not delegate federation"))?;
    let server = OwnedServerName::try_from(delegated).map_err(|_| ApiError::internal())?;
    Ok(discover_homeserver::Response::new(server))
}

/// The federation API proper.
pub fn routes(router: &mut Router) {
    router.ruma(version);
    rooms::routes(router);
    transactions::routes(router);
    query::routes(router);
    devices::routes(router);
    media::routes(router);
    spaces::routes(router);
}

/// `GET /_matrix/federation/v1/version`.
async fn version(
    _: Arc<Services>,
    _: Req<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response, ApiError> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Myelin".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

/// Fails with 403 `M_FORBIDDEN` when the room's server ACL denies `origin` (spec: every
/// endpoint that acts in or reads a room checks it).
fn require_allowed(services: &Services, origin: &ServerName, room_id: &RoomId) -> Result<(), ApiError> {
    if !services.rooms.server_allowed(room_id, origin)? {
        return Err(ApiError::forbidden(format!("{origin} is denied by the server ACL of {room_id}")));
    }
    Ok(())
}

/// Fails unless `origin` has a joined member in the room: servers see what their users may.
/// Checks the room's server ACL first.
fn require_in_room(services: &Services, origin: &ServerName, room_id: &RoomId) -> Result<(), ApiError> {
    require_allowed(services, origin, room_id)?;
    let servers: std::collections::BTreeSet<OwnedServerName> = services.rooms.servers_in_room(room_id)?;
    if !servers.iter().any(|s| s == origin) {
        return Err(ApiError::forbidden(format!("{origin} has no member in {room_id}")));
    }
    Ok(())
}
