//! Limits on what media may take: each user's quota (checked before an upload is stored)
//! and lifetimes after which files are removed (`[retention]`'s `local_media_lifetime`
//! and `remote_media_lifetime`, run by the retention timer). Lifetimes count from when a
//! file was stored here: a removed copy of another server's file is fetched again when
//! someone asks for it; a removed upload is gone.

use std::time::Duration;

use ruma::UserId;

use super::Media;
use crate::{
    error::{Error, Result},
    now_ms,
};

/// What one pass of the media purge removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaPurged {
    pub local: u64,
    pub remote: u64,
}

impl Media {
    /// Refuses an upload of `bytes` that would take `uploader` over their quota.
    pub(super) fn check_quota(&self, uploader: &UserId, bytes: u64) -> Result<()> {
        let Some(quota) = self.user_quota else { return Ok(()) };
        let used = self.store.user_media_bytes(uploader)?;
        if used.saturating_add(bytes) > quota {
            return Err(Error::Forbidden(format!(
                "this upload would exceed your storage quota ({used} of {quota} bytes used)"
            )));
        }
        Ok(())
    }

    /// Removes this server's uploads older than `local` and cached copies of other
    /// servers' files older than `remote` (`None`: kept for ever).
    pub async fn purge_expired(
        &self,
        local: Option<Duration>,
        remote: Option<Duration>,
    ) -> Result<MediaPurged> {
        let cutoff = |lifetime: Option<Duration>| {
            lifetime.map(|l| now_ms().saturating_sub(u64::try_from(l.as_millis()).unwrap_or(u64::MAX)))
        };
        let (local_cutoff, remote_cutoff) = (cutoff(local), cutoff(remote));
        let mut purged = MediaPurged::default();
        if local_cutoff.is_none() && remote_cutoff.is_none() {
            return Ok(purged);
        }
        for (key, record) in self.store.all_media()? {
            let is_remote = record.uploader.is_none();
            let Some(cutoff) = (if is_remote { remote_cutoff } else { local_cutoff }) else { continue };
            if record.created_ts < cutoff && self.remove_stored(&key).await? {
                if is_remote {
                    purged.remote += 1;
                } else {
                    purged.local += 1;
                }
            }
        }
        if purged.local + purged.remote > 0 {
            tracing::info!(local = purged.local, remote = purged.remote, "expired media removed");
        }
        Ok(purged)
    }
}
