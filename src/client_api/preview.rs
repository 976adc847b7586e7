//! Link previews (`GET /_matrix/client/v1/media/preview_url`, and the legacy
//! `/_matrix/media/{r0,v3}/preview_url`): one call to `Media::preview_url`. With previews
//! off the routes are not there, so they answer `404 M_UNRECOGNIZED` as Synapse's do.

// The legacy endpoint is deprecated in the spec but clients still call it.
#![allow(deprecated)]

use std::sync::Arc;

use http::StatusCode;
use ruma::api::{
    client::{authenticated_media::get_media_preview, media::get_media_preview as legacy},
    error::ErrorKind,
};

use crate::{
    config::Config,
    http::{
        ApiError,
        router::{Req, Router},
    },
    media::preview::{OpenGraph, PreviewError},
    services::Services,
};

pub fn routes(router: &mut Router, config: &Config) {
    if config.media.url_preview.enabled {
        router.ruma(preview);
        router.ruma(preview_legacy);
    }
}

/// Synapse's answers: a refused target 403 `M_UNKNOWN` (its IP blocklist's), a page too
/// large 502 `M_TOO_LARGE`, any other failure upstream 502 `M_UNKNOWN`.
impl From<PreviewError> for ApiError {
    fn from(e: PreviewError) -> Self {
        let message = e.to_string();
        match e {
            PreviewError::InvalidUrl(_) => ApiError::invalid_param(message),
            PreviewError::Refused(_) => ApiError::new(StatusCode::FORBIDDEN, ErrorKind::Unknown, message),
            PreviewError::TooLarge(_) => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::TooLarge, message),
            PreviewError::Upstream(_) => ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message),
            PreviewError::Disabled => ApiError::unrecognized(StatusCode::NOT_FOUND),
            PreviewError::Internal(_) => {
                tracing::error!(error = %message, "URL preview failure");
                ApiError::internal()
            }
        }
    }
}

fn raw(og: &OpenGraph) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    serde_json::value::to_raw_value(&**og).map_err(|_| ApiError::internal())
}

async fn preview(
    services: Arc<Services>,
    req: Req<get_media_preview::v1::Request>,
) -> Result<get_media_preview::v1::Response, ApiError> {
    let og = services.media.preview_url(&req.auth.user_id, &req.body.url).await?;
    Ok(get_media_preview::v1::Response::from_raw_value(raw(&og)?))
}

async fn preview_legacy(
    services: Arc<Services>,
    req: Req<legacy::v3::Request>,
) -> Result<legacy::v3::Response, ApiError> {
    let og = services.media.preview_url(&req.auth.user_id, &req.body.url).await?;
    Ok(legacy::v3::Response::from_raw_value(raw(&og)?))
}
