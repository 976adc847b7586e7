//! Other servers' media: fetched once over federation (`/_matrix/federation/v1/media/
//! download`, answered as `multipart/mixed`, which ruma takes apart) and cached in the
//! content repository, which serves and thumbnails it from then on.

use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
};

use super::{Content, Media};
use crate::error::{Error, Result};

impl Media {
    /// Makes sure another server's file is here; nothing to do for ours.
    pub(super) async fn ensure_cached(&self, server: &ServerName, media_id: &str) -> Result<()> {
        if server == self.server_name || self.is_cached(server, media_id)? {
            return Ok(());
        }
        let request = get_content::v1::Request::new(media_id.to_owned());
        let response =
            self.federation.client.send(server, request).await.map_err(|e| {
                Error::NotFound(format!("media {media_id} of {server} is not available: {e}"))
            })?;
        let FileOrLocation::File(file) = response.content else {
            // A redirect to a URL outside federation: not followed (it could point anywhere).
            return Err(Error::NotFound(format!(
                "{server} offers media {media_id} only at another location"
            )));
        };
        let content = Content {
            filename: file.content_disposition.and_then(|d| d.filename),
            content_type: file.content_type,
            bytes: file.file,
        };
        self.cache_remote(server, media_id, content).await
    }
}
