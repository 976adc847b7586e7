//! The content repository: upload, download and thumbnails, on both the authenticated
//! (`/_matrix/client/v1/media`) and the legacy (`/_matrix/media/v3`) paths; the legacy
//! downloads serve only what the media freeze leaves them (see `media`).

// The legacy media endpoints are deprecated in the spec but clients still call them.
#![allow(deprecated)]

use std::sync::Arc;

use ruma::{
    UInt,
    api::client::{
        authenticated_media,
        media::{self, create_content, create_content_async, create_mxc_uri},
    },
    media::Method as RumaMethod,
};

use crate::{
    config::Config,
    http::{
        ApiError,
        router::{EmptyObject, RateLimitClass, Req, RouteOptions, Router},
    },
    media::{Method, Thumbnail},
    services::Services,
};

pub fn routes(router: &mut Router, config: &Config) {
    let upload = RouteOptions {
        max_body: Some(config.media.max_upload_bytes),
        file_body: true,
        ..RouteOptions::default()
    };
    let limited = Some(RateLimitClass::MediaUpload);
    let content = RouteOptions { serves_user_content: true, ..RouteOptions::default() };
    // A file counts once: an upload, or the reservation an asynchronous upload then fills.
    router.ruma_with(RouteOptions { rate_limit: limited, ..upload }, upload_file);
    router.ruma_with(upload, upload_reserved);
    router.ruma_limited(RateLimitClass::MediaUpload, reserve);
    router.ruma(config_legacy);
    router.ruma(config_authenticated);
    router.ruma_with(content, download_legacy);
    router.ruma_with(content, download_legacy_named);
    router.ruma_with(content, thumbnail_legacy);
    router.ruma_with(content, download);
    router.ruma_with(content, download_named);
    router.ruma_with(content, thumbnail);
}

fn thumbnail_request(width: UInt, height: UInt, method: Option<RumaMethod>) -> Result<Thumbnail, ApiError> {
    let method = match method {
        Some(RumaMethod::Crop) => Method::Crop,
        Some(RumaMethod::Scale) | None => Method::Scale,
        Some(other) => {
            return Err(ApiError::invalid_param(format!("unknown thumbnail method {}", other.as_str())));
        }
    };
    let side = |v: UInt| u32::try_from(u64::from(v)).unwrap_or(u32::MAX);
    Ok(Thumbnail::new(side(width), side(height), method)?)
}

async fn upload_file(
    services: Arc<Services>,
    req: Req<create_content::v3::Request>,
) -> Result<create_content::v3::Response, ApiError> {
    let b = req.body;
    let uri = services.media.upload(&req.auth.user_id, b.content_type, b.filename, b.file).await?;
    Ok(create_content::v3::Response::new(uri))
}

async fn reserve(
    services: Arc<Services>,
    req: Req<create_mxc_uri::v1::Request>,
) -> Result<create_mxc_uri::v1::Response, ApiError> {
    let (uri, expires) = services.media.reserve(&req.auth.user_id).await?;
    let mut response = create_mxc_uri::v1::Response::new(uri);
    response.unused_expires_at = Some(ruma::MilliSecondsSinceUnixEpoch(UInt::new_saturating(expires)));
    Ok(response)
}

async fn upload_reserved(
    services: Arc<Services>,
    req: Req<create_content_async::v3::Request>,
) -> Result<EmptyObject, ApiError> {
    let b = req.body;
    services
        .media
        .upload_reserved(&req.auth.user_id, &b.server_name, &b.media_id, b.content_type, b.filename, b.file)
        .await?;
    Ok(EmptyObject)
}

async fn config_legacy(
    services: Arc<Services>,
    _: Req<media::get_media_config::v3::Request>,
) -> Result<media::get_media_config::v3::Response, ApiError> {
    Ok(media::get_media_config::v3::Response::new(UInt::new_saturating(services.media.max_upload() as u64)))
}

async fn config_authenticated(
    services: Arc<Services>,
    _: Req<authenticated_media::get_media_config::v1::Request>,
) -> Result<authenticated_media::get_media_config::v1::Response, ApiError> {
    Ok(authenticated_media::get_media_config::v1::Response::new(UInt::new_saturating(
        services.media.max_upload() as u64,
    )))
}

async fn download_legacy(
    services: Arc<Services>,
    req: Req<media::get_content::v3::Request>,
) -> Result<media::get_content::v3::Response, ApiError> {
    let b = req.body;
    let content = services.media.download_unauthenticated(&b.server_name, &b.media_id, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(None);
    Ok(media::get_content::v3::Response::new(file, content_type, disposition))
}

async fn download_legacy_named(
    services: Arc<Services>,
    req: Req<media::get_content_as_filename::v3::Request>,
) -> Result<media::get_content_as_filename::v3::Response, ApiError> {
    let b = req.body;
    let content = services.media.download_unauthenticated(&b.server_name, &b.media_id, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(Some(b.filename));
    Ok(media::get_content_as_filename::v3::Response::new(file, content_type, disposition))
}

async fn thumbnail_legacy(
    services: Arc<Services>,
    req: Req<media::get_content_thumbnail::v3::Request>,
) -> Result<media::get_content_thumbnail::v3::Response, ApiError> {
    let b = req.body;
    let request = thumbnail_request(b.width, b.height, b.method)?;
    let content =
        services.media.thumbnail_unauthenticated(&b.server_name, &b.media_id, request, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(None);
    Ok(media::get_content_thumbnail::v3::Response::new(file, content_type, disposition))
}

async fn download(
    services: Arc<Services>,
    req: Req<authenticated_media::get_content::v1::Request>,
) -> Result<authenticated_media::get_content::v1::Response, ApiError> {
    let b = req.body;
    let content = services.media.download(&b.server_name, &b.media_id, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(None);
    Ok(authenticated_media::get_content::v1::Response::new(file, content_type, disposition))
}

async fn download_named(
    services: Arc<Services>,
    req: Req<authenticated_media::get_content_as_filename::v1::Request>,
) -> Result<authenticated_media::get_content_as_filename::v1::Response, ApiError> {
    let b = req.body;
    let content = services.media.download(&b.server_name, &b.media_id, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(Some(b.filename));
    Ok(authenticated_media::get_content_as_filename::v1::Response::new(file, content_type, disposition))
}

async fn thumbnail(
    services: Arc<Services>,
    req: Req<authenticated_media::get_content_thumbnail::v1::Request>,
) -> Result<authenticated_media::get_content_thumbnail::v1::Response, ApiError> {
    let b = req.body;
    let request = thumbnail_request(b.width, b.height, b.method)?;
    let content = services.media.thumbnail(&b.server_name, &b.media_id, request, b.timeout_ms).await?;
    let (file, content_type, disposition) = content.served(None);
    Ok(authenticated_media::get_content_thumbnail::v1::Response::new(file, content_type, disposition))
}
