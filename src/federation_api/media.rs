//! Our users' files for other servers (`/_matrix/federation/v1/media/`), answered as
//! `multipart/mixed` by ruma.

use std::sync::Arc;

use ruma::api::federation::authenticated_media::{
    Content as FileContent, ContentMetadata, FileOrLocation, get_content, get_content_thumbnail,
};

use crate::{
    http::{
        ApiError,
        router::{Req, RouteOptions, Router},
    },
    media::{Content, Method, Thumbnail},
    services::Services,
};

pub fn routes(router: &mut Router) {
    let content = RouteOptions { serves_user_content: true, ..RouteOptions::default() };
    router.ruma_with(content, download);
    router.ruma_with(content, thumbnail);
}

fn file(content: Content) -> FileOrLocation {
    let (bytes, content_type, disposition) = content.served(None);
    FileOrLocation::File(FileContent::new(bytes, content_type, disposition))
}

/// `GET /media/download/{mediaId}`: one of our files (never a cached copy of another's).
async fn download(
    services: Arc<Services>,
    req: Req<get_content::v1::Request>,
) -> Result<get_content::v1::Response, ApiError> {
    let own = &services.config.server_name;
    let content = services.media.download(own, &req.body.media_id, req.body.timeout_ms).await?;
    Ok(get_content::v1::Response::new(ContentMetadata::new(), file(content)))
}

/// `GET /media/thumbnail/{mediaId}`.
async fn thumbnail(
    services: Arc<Services>,
    req: Req<get_content_thumbnail::v1::Request>,
) -> Result<get_content_thumbnail::v1::Response, ApiError> {
    let b = req.body;
    let method = match b.method {
        Some(ruma::media::Method::Crop) => Method::Crop,
        _ => Method::Scale,
    };
    let side = |v: ruma::UInt| u32::try_from(u64::from(v)).unwrap_or(u32::MAX);
    let request = Thumbnail::new(side(b.width), side(b.height), method)?;
    let own = &services.config.server_name;
    let content = services.media.thumbnail(own, &b.media_id, request, b.timeout_ms).await?;
    Ok(get_content_thumbnail::v1::Response::new(ContentMetadata::new(), file(content)))
}
