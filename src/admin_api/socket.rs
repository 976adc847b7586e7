//! The admin API on the Unix socket: one endpoint that runs an [`admin::Command`].
//! The socket's file mode (0600) is its authentication.

use std::sync::Arc;

use http::{Method, StatusCode};

use crate::{
    admin,
    http::{
        ApiError,
        error::json_response,
        router::{Call, Router},
    },
    services::Services,
};

/// Path of the command endpoint, shared with the CLI that calls it.
pub const COMMAND_PATH: &str = "/_myelin/admin/v1/command";

pub fn router() -> Router {
    let mut router = Router::default();
    router.raw(
        Method::POST,
        COMMAND_PATH,
        Default::default(),
        Arc::new(|services, call| Box::pin(command(services, call))),
    );
    router
}

async fn command(services: Arc<Services>, call: Call) -> crate::http::Response {
    let command: admin::Command = match serde_json::from_slice(call.request.body()) {
        Ok(command) => command,
        Err(e) => {
            let error = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ruma::api::error::ErrorKind::NotJson,
                    e.to_string(),
                ),
                _ => ApiError::bad_json(e.to_string()),
            };
            return error.into_response();
        }
    };
    if matches!(command, admin::Command::DbVerify { repair: true }) {
        let why = "repairs write beside the server's own writes: stop the server, then repair";
        return ApiError::new(StatusCode::CONFLICT, ruma::api::error::ErrorKind::Unknown, why.to_owned())
            .into_response();
    }
    match admin::execute(&services, command).await {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(e) => ApiError::from(e).into_response(),
    }
}
