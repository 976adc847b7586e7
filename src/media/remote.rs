//! Other servers' media: fetched once over federation (`/_matrix/federation/v1/media/
//! download`, answered as `multipart/mixed`, which ruma takes apart; from a server that
//! predates it, the deprecated `/_matrix/media/v3/download`, as the spec requires) and cached
//! in the content repository, which serves and thumbnails it from then on.

use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
};

use super::{Content, Media};
use crate::{
    error::{Error, Result},
    federation::FederationError,
};

/// Room for the metadata part and the boundaries of a `multipart/mixed` media answer.
const MULTIPART_OVERHEAD_BYTES: usize = 64 * 1024;

impl Media {
    /// Makes sure another server's file is here; nothing to do for ours.
    pub(super) async fn ensure_cached(&self, server: &ServerName, media_id: &str) -> Result<()> {
        if server == self.server_name || self.is_cached(server, media_id)? {
            return Ok(());
        }
        let unavailable = |e: FederationError| {
            Error::NotFound(format!("media {media_id} of {server} is not available: {e}"))
        };
        let request = get_content::v1::Request::new(media_id.to_owned());
        // A file larger than we would take as an upload is not taken from another server
        // either; the multipart answer adds a part of metadata and boundaries to the file.
        let limit = self.max_upload + MULTIPART_OVERHEAD_BYTES;
        let response = match self.federation.client.send_limited(server, request, limit).await {
            Ok(response) => response,
            Err(FederationError::Unrecognized(_)) => {
                let legacy = self
                    .federation
                    .client
                    .legacy_media(server, media_id, self.max_upload)
                    .await
                    .map_err(unavailable)?;
                let content = Content {
                    filename: legacy.filename,
                    content_type: legacy.content_type,
                    bytes: legacy.bytes.to_vec(),
                };
                return self.cache_remote(server, media_id, content).await;
            }
            Err(e) => return Err(unavailable(e)),
        };
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
