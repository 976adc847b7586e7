//! Endpoints for operators rather than Matrix clients: `/health` on the client listener
//! (for load balancers and uptime checks) and `/metrics` on the metrics listener.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::Full;

use crate::{
    http::{
        Response,
        router::{Call, RouteOptions, Router},
    },
    metrics::metrics,
    services::Services,
};

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Adds `GET /health`: 200 `OK` while the server can read its database.
pub fn health_routes(router: &mut Router) {
    router.raw(
        Method::GET,
        "/health",
        RouteOptions::default(),
        Arc::new(|services, call| Box::pin(health(services, call))),
    );
}

async fn health(services: Arc<Services>, _: Call) -> Response {
    match services.database_size() {
        Ok(_) => text(StatusCode::OK, "text/plain; charset=utf-8", "OK".to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "database unavailable".to_owned(),
            )
        }
    }
}

/// The metrics listener's only route, `GET /metrics`.
pub fn metrics_router() -> Router {
    let mut router = Router::default();
    router.raw(
        Method::GET,
        "/metrics",
        RouteOptions::default(),
        Arc::new(|services, call| Box::pin(scrape(services, call))),
    );
    router
}

async fn scrape(services: Arc<Services>, _: Call) -> Response {
    let metrics = metrics();
    if let Ok(size) = services.database_size() {
        metrics.db_size_bytes.set(i64::try_from(size).unwrap_or(i64::MAX));
    }
    text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render())
}
