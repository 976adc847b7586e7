//! The content repository as administrators manage it: a user's uploads, deleting a file
//! with its thumbnails, and quarantine (a quarantined file is kept but served to nobody).

use ruma::{OwnedUserId, ServerName, UserId};

use super::Media;
use crate::error::{Error, Result};

/// A local file as administrators see it.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    pub media_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub created_ts: u64,
    pub quarantined_by: Option<OwnedUserId>,
}

impl Media {
    /// The files `user` uploaded here (reserved ids not uploaded yet left out), in media id
    /// order.
    pub fn user_media(&self, user: &UserId) -> Result<Vec<MediaInfo>> {
        let mut files = Vec::new();
        for media_id in self.store.user_media_ids(user)? {
            if let Some(record) = self.store.media(&media_id)? {
                files.push((media_id, record));
            }
        }
        Ok(files
            .into_iter()
            .filter(|(_, record)| !record.pending)
            .map(|(media_id, record)| MediaInfo {
                media_id,
                content_type: record.content_type,
                filename: record.filename,
                size: record.size,
                created_ts: record.created_ts,
                quarantined_by: record.quarantined_by,
            })
            .collect())
    }

    /// The files with a record (uploaded, not merely reserved) whose bytes are not on disk:
    /// their keys, for `myelin db verify`.
    pub fn missing_files(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .all_media()?
            .into_iter()
            .filter(|(key, record)| !record.pending && !self.file_path(key).exists())
            .map(|(key, _)| key)
            .collect())
    }

    /// Deletes one of this server's files: its record, its bytes and its thumbnails.
    pub async fn delete(&self, server: &ServerName, media_id: &str) -> Result<()> {
        if server != self.server_name {
            return Err(Error::InvalidParam("only this server's media can be deleted".to_owned()));
        }
        let key = self.key(server, media_id)?;
        if !self.remove_stored(&key).await? {
            return Err(Error::NotFound(format!("no media {media_id}")));
        }
        tracing::info!(media_id, "media deleted");
        Ok(())
    }

    /// Removes a stored file by its key (ours or a cached one): record, bytes, thumbnails.
    /// `false` if there was no record.
    pub(super) async fn remove_stored(&self, key: &str) -> Result<bool> {
        // The record goes first: a file without a record is never served, the reverse
        // would be a record pointing at nothing.
        if !self.store.delete_media(key).await? {
            return Ok(false);
        }
        remove_if_present(&self.file_path(key)).await?;
        // Thumbnails sit in the same folders under `thumbnails/`, named `{media id}-...`.
        let key = std::path::Path::new(key);
        let folder = self.dir.join("thumbnails").join(key.parent().unwrap_or(std::path::Path::new("")));
        let prefix = format!("{}-", key.file_name().unwrap_or_default().to_string_lossy());
        if let Ok(mut thumbnails) = tokio::fs::read_dir(folder).await {
            while let Ok(Some(entry)) = thumbnails.next_entry().await {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_if_present(&entry.path()).await?;
                }
            }
        }
        Ok(true)
    }

    /// Quarantines a file of this server or another server's file cached here (`by` is the
    /// administrator), or lifts the quarantine (`None`).
    pub async fn set_quarantine(
        &self,
        server: &ServerName,
        media_id: &str,
        by: Option<&UserId>,
    ) -> Result<()> {
        let key = self.key(server, media_id)?;
        let mut record = self.record(server, media_id)?;
        record.quarantined_by = by.map(UserId::to_owned);
        self.store.set_media(&key, &record).await?;
        tracing::info!(%server, media_id, quarantined = by.is_some(), "media quarantine changed");
        Ok(())
    }
}

async fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Internal(format!("removing {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}
