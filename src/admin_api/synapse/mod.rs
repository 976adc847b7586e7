//! The Synapse-compatible admin API under `/_synapse/admin/`, for the tools Matrix
//! operators already use (synapse-admin, `register_new_matrix_user`, moderation bots).
//! Field names and shapes follow Synapse's admin API documentation; the handlers are thin
//! and end in `admin` or a domain, the same functions the CLI calls.

mod call;
mod devices;
mod history_purge;
mod media;
mod register;
mod reports;
mod room_deletion;
mod rooms;
mod tokens;
mod users;

use http::Method;

use crate::http::router::Router;

/// Every admin API route, for the client listener.
pub fn routes(router: &mut Router) {
    // Anyone may ask, as on Synapse: synapse-admin shows it on its login page.
    call::public_route(router, Method::GET, "/_synapse/admin/v1/server_version", None, |_, _| async {
        call::ok(&serde_json::json!({ "server_version": concat!("Myelin ", env!("CARGO_PKG_VERSION")) }))
    });
    register::routes(router);
    users::routes(router);
    devices::routes(router);
    tokens::routes(router);
    rooms::routes(router);
    history_purge::routes(router);
    room_deletion::routes(router);
    reports::routes(router);
    media::routes(router);
}
