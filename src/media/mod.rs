//! The content repository: uploaded files on disk under `<data_dir>/media`, their metadata
//! in the store, and thumbnails generated once with the `image` crate and kept beside them.
//!
//! A file is written to a temporary name, synced and renamed before its metadata is
//! committed, so an acknowledged upload survives a crash and a crash never leaves metadata
//! pointing at half a file.
//!
//! The deprecated unauthenticated endpoints are "frozen" (spec v1.11): they serve only files
//! stored before this server spoke authenticated media, or while
//! `media.allow_legacy_unauthenticated` was on. Each record says which it is.

mod admin;
pub mod preview;
mod remote;
mod retention;
mod thumbnail;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    OwnedMxcUri, OwnedServerName, ServerName, UserId,
    http_headers::{ContentDisposition, ContentDispositionType},
};

pub use admin::MediaInfo;
pub use retention::MediaPurged;
pub use thumbnail::{Method, Thumbnail};

use crate::{
    config::MediaConfig,
    error::{Error, Result},
    federation::Federation,
    now_ms,
    outbound::OutboundPolicy,
    storage::{MediaRecord, Store},
};

/// How long a reserved (`/create`) media id waits for its upload.
const PENDING_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The longest a download waits for a reserved id's upload, whatever the client asks
/// (the spec's `timeout_ms`, which servers should cap).
const MAX_DOWNLOAD_WAIT: Duration = Duration::from_secs(60);

pub struct Media {
    store: Arc<Store>,
    dir: PathBuf,
    server_name: OwnedServerName,
    max_upload: usize,
    /// Bytes each user's uploads may take in all (`None`: no limit).
    user_quota: Option<u64>,
    /// `media.allow_legacy_unauthenticated`: no freeze.
    allow_unauthenticated: bool,
    /// Woken whenever a reserved id gets its upload, for downloads waiting on one.
    uploaded: tokio::sync::Notify,
    /// Fetches other servers' files.
    federation: Arc<Federation>,
    /// Thumbnails being made at once: one per core, each bounded by the decoder's limits
    /// (`thumbnail.rs`), so one user asking for many cannot take all memory or CPU.
    thumbnailing: tokio::sync::Semaphore,
    /// Link previews, unless `media.url_preview.enabled` is off.
    previews: Option<preview::Previews>,
}

/// A file to serve.
pub struct Content {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// Types browsers may show inline; everything else is offered as a download.
fn inline_safe(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    (essence.starts_with("image/") && essence != "image/svg+xml")
        || essence.starts_with("video/")
        || essence.starts_with("audio/")
        || essence == "text/plain"
}

impl Content {
    /// The body, content type and disposition to serve the file with (to clients, or to
    /// other servers), named `requested_name` when the client asked for a name.
    pub fn served(self, requested_name: Option<String>) -> (Vec<u8>, String, ContentDisposition) {
        let content_type = self.content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let kind = if inline_safe(&content_type) {
            ContentDispositionType::Inline
        } else {
            ContentDispositionType::Attachment
        };
        let disposition = ContentDisposition::new(kind).with_filename(requested_name.or(self.filename));
        (self.bytes, content_type, disposition)
    }
}

fn new_media_id() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

/// Media ids are ours (alphanumeric) or at least path-safe; anything else is unknown.
fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename, fsync the directory.
async fn write_durably(path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path.parent().expect("media paths have a parent");
        std::fs::create_dir_all(dir)?;
        // A name of its own: two first requests for one thumbnail write at once, and a
        // shared temporary file was renamed away under the second (a 500).
        let temp = path.with_extension(format!("{}.partial", new_media_id()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}

impl Media {
    pub fn new(
        store: Arc<Store>,
        data_dir: &Path,
        server_name: OwnedServerName,
        config: &MediaConfig,
        federation: Arc<Federation>,
        outbound: Arc<OutboundPolicy>,
    ) -> Self {
        Self {
            store,
            dir: data_dir.join("media"),
            server_name,
            max_upload: config.max_upload_bytes,
            user_quota: config.user_quota_bytes,
            allow_unauthenticated: config.allow_legacy_unauthenticated,
            previews: config
                .url_preview
                .enabled
                .then(|| preview::Previews::new(&config.url_preview, outbound)),
            uploaded: tokio::sync::Notify::new(),
            federation,
            thumbnailing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
        }
    }

    pub fn max_upload(&self) -> usize {
        self.max_upload
    }

    /// A preview of the page at `url` for `user` (see [`preview`]).
    pub async fn preview_url(
        &self,
        user: &UserId,
        url: &str,
    ) -> std::result::Result<preview::OpenGraph, preview::PreviewError> {
        match &self.previews {
            Some(previews) => previews.preview(self, user, url).await,
            None => Err(preview::PreviewError::Disabled),
        }
    }

    /// Where a file's record and bytes are kept: ours by media id, other servers' (a cache)
    /// under `remote/<server>/`, which no local media id can start with.
    fn key(&self, server: &ServerName, media_id: &str) -> Result<String> {
        if !valid_media_id(media_id) {
            return Err(Error::NotFound(format!("no media {media_id}")));
        }
        if server == self.server_name {
            return Ok(media_id.to_owned());
        }
        // Server names cannot hold a `/`; a name of dots would still walk up the tree.
        if server.as_str().starts_with('.') {
            return Err(Error::NotFound(format!("no media from {server}")));
        }
        Ok(format!("remote/{server}/{media_id}"))
    }

    fn file_path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn mxc(&self, media_id: &str) -> OwnedMxcUri {
        format!("mxc://{}/{media_id}", self.server_name).into()
    }

    /// Stores a new file and returns its `mxc://` URI.
    pub async fn upload(
        &self,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<OwnedMxcUri> {
        let media_id = new_media_id();
        self.store_file(&media_id, uploader, content_type, filename, bytes).await?;
        Ok(self.mxc(&media_id))
    }

    async fn store_file(
        &self,
        media_id: &str,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<()> {
        if bytes.len() > self.max_upload {
            return Err(Error::TooLarge(format!("uploads are limited to {} bytes", self.max_upload)));
        }
        let size = bytes.len() as u64;
        self.check_quota(uploader, size)?;
        write_durably(&self.file_path(media_id), bytes)
            .await
            .map_err(|e| Error::Internal(format!("writing media: {e}")))?;
        let record = MediaRecord {
            uploader: Some(uploader.to_owned()),
            content_type,
            filename,
            size,
            created_ts: now_ms(),
            pending: false,
            authenticated_only: !self.allow_unauthenticated,
            quarantined_by: None,
        };
        Ok(self.store.set_media(media_id, &record).await?)
    }

    /// Reserves a media id for a later upload (`/media/v1/create`).
    pub async fn reserve(&self, uploader: &UserId) -> Result<(OwnedMxcUri, u64)> {
        let media_id = new_media_id();
        let now = now_ms();
        let record = MediaRecord {
            uploader: Some(uploader.to_owned()),
            content_type: None,
            filename: None,
            size: 0,
            created_ts: now,
            pending: true,
            authenticated_only: !self.allow_unauthenticated,
            quarantined_by: None,
        };
        self.store.set_media(&media_id, &record).await?;
        Ok((self.mxc(&media_id), now + PENDING_LIFETIME.as_millis() as u64))
    }

    /// Uploads the content of a reserved id; only its reserver may, and only once.
    pub async fn upload_reserved(
        &self,
        uploader: &UserId,
        server: &ServerName,
        media_id: &str,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<()> {
        if server != self.server_name {
            return Err(Error::Forbidden("media ids of other servers cannot be uploaded to".to_owned()));
        }
        let record = self.record(server, media_id)?;
        if record.uploader.as_deref() != Some(uploader) {
            return Err(Error::Forbidden(
                "only the user who created this media id may upload to it".to_owned(),
            ));
        }
        if !record.pending {
            return Err(Error::CannotOverwriteMedia);
        }
        if now_ms() > record.created_ts + PENDING_LIFETIME.as_millis() as u64 {
            return Err(Error::NotFound("this media id has expired".to_owned()));
        }
        self.store_file(media_id, uploader, content_type, filename, bytes).await?;
        self.uploaded.notify_waiters();
        Ok(())
    }

    /// The record of an uploaded file, or of another server's file cached here.
    fn record(&self, server: &ServerName, media_id: &str) -> Result<MediaRecord> {
        let key = self.key(server, media_id)?;
        self.store.media(&key)?.ok_or_else(|| Error::NotFound(format!("no media {media_id}")))
    }

    /// Whether another server's file is cached here.
    fn is_cached(&self, server: &ServerName, media_id: &str) -> Result<bool> {
        Ok(self.store.media(&self.key(server, media_id)?)?.is_some())
    }

    /// Keeps a file fetched from another server, to serve (and thumbnail) it from here on.
    async fn cache_remote(&self, server: &ServerName, media_id: &str, content: Content) -> Result<()> {
        let key = self.key(server, media_id)?;
        if content.bytes.len() > self.max_upload {
            return Err(Error::TooLarge(format!("{server}'s file is larger than this server accepts")));
        }
        let size = content.bytes.len() as u64;
        write_durably(&self.file_path(&key), content.bytes)
            .await
            .map_err(|e| Error::Internal(format!("writing media: {e}")))?;
        let record = MediaRecord {
            uploader: None,
            content_type: content.content_type,
            filename: content.filename,
            size,
            created_ts: now_ms(),
            pending: false,
            authenticated_only: !self.allow_unauthenticated,
            quarantined_by: None,
        };
        Ok(self.store.set_media(&key, &record).await?)
    }

    /// The record of an uploaded file, waiting up to `wait` for a reserved id's upload.
    async fn uploaded_record(
        &self,
        server: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> Result<MediaRecord> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_DOWNLOAD_WAIT);
        loop {
            // Registered before the check, so an upload between the check and the wait wakes us.
            let uploaded = self.uploaded.notified();
            tokio::pin!(uploaded);
            uploaded.as_mut().enable();
            let record = self.record(server, media_id)?;
            if record.quarantined_by.is_some() {
                return Err(Error::NotFound(format!("media {media_id} is quarantined")));
            }
            if !record.pending {
                return Ok(record);
            }
            if tokio::time::timeout_at(deadline, uploaded).await.is_err() {
                return Err(Error::NotYetUploaded);
            }
        }
    }

    /// A file of this server (a reserved id is waited for up to `wait`), or of another one,
    /// fetched over federation the first time.
    pub async fn download(&self, server: &ServerName, media_id: &str, wait: Duration) -> Result<Content> {
        self.ensure_cached(server, media_id).await?;
        let record = self.uploaded_record(server, media_id, wait).await?;
        let bytes = tokio::fs::read(self.file_path(&self.key(server, media_id)?))
            .await
            .map_err(|e| Error::Internal(format!("reading media {media_id}: {e}")))?;
        Ok(Content { bytes, content_type: record.content_type, filename: record.filename })
    }

    /// Fails with "not found" unless the deprecated unauthenticated endpoints may serve the
    /// file: any file while the freeze is off, else one stored before it. Another server's
    /// file not cached yet is not fetched for them: it would be new.
    fn check_unauthenticated(&self, server: &ServerName, media_id: &str) -> Result<()> {
        if self.allow_unauthenticated {
            return Ok(());
        }
        match self.store.media(&self.key(server, media_id)?)? {
            Some(record) if !record.authenticated_only => Ok(()),
            _ => Err(Error::NotFound(format!(
                "no media {media_id} without authentication; use /_matrix/client/v1/media"
            ))),
        }
    }

    /// [`Media::download`] for the deprecated unauthenticated endpoints.
    pub async fn download_unauthenticated(
        &self,
        server: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> Result<Content> {
        self.check_unauthenticated(server, media_id)?;
        self.download(server, media_id, wait).await
    }

    /// [`Media::thumbnail`] for the deprecated unauthenticated endpoints.
    pub async fn thumbnail_unauthenticated(
        &self,
        server: &ServerName,
        media_id: &str,
        request: Thumbnail,
        wait: Duration,
    ) -> Result<Content> {
        self.check_unauthenticated(server, media_id)?;
        self.thumbnail(server, media_id, request, wait).await
    }

    /// A thumbnail, generated on first request and read from disk afterwards.
    pub async fn thumbnail(
        &self,
        server: &ServerName,
        media_id: &str,
        request: Thumbnail,
        wait: Duration,
    ) -> Result<Content> {
        self.ensure_cached(server, media_id).await?;
        self.uploaded_record(server, media_id, wait).await?;
        // Cached under the extension of the format it was made in, which gives its type;
        // other servers' files' thumbnails under `remote/<server>/` like the files.
        let key = PathBuf::from(self.key(server, media_id)?);
        let folder = self.dir.join("thumbnails").join(key.parent().unwrap_or(Path::new("")));
        let cached = folder.join(request.file_name(media_id));
        for extension in thumbnail::EXTENSIONS {
            let path = cached.with_extension(extension);
            if let Ok(bytes) = tokio::fs::read(&path).await {
                return Ok(Content {
                    content_type: Some(thumbnail::content_type_of(&path).to_owned()),
                    bytes,
                    filename: None,
                });
            }
        }
        let original = self.download(server, media_id, Duration::ZERO).await?;
        let _turn = self.thumbnailing.acquire().await.map_err(|e| Error::Internal(e.to_string()))?;
        let made = tokio::task::spawn_blocking(move || thumbnail::make(&original.bytes, request))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        write_durably(&cached.with_extension(made.extension), made.bytes.clone())
            .await
            .map_err(|e| Error::Internal(format!("writing thumbnail: {e}")))?;
        Ok(Content { bytes: made.bytes, content_type: Some(made.content_type.to_owned()), filename: None })
    }
}
