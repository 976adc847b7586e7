//! Media metadata; the files themselves live on disk, owned by the `media` domain.
//!
//! Tree `media`: media id (or `remote/<server>/<media id>` for another server's file
//! cached here) → [`MediaRecord`].

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use super::{Result, Store, decode, encode};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaRecord {
    /// Who uploaded it; `None` for another server's file cached here.
    pub uploader: Option<OwnedUserId>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub created_ts: u64,
    /// Reserved with `/media/v1/create` and not uploaded yet.
    pub pending: bool,
    /// Stored after the unauthenticated-media freeze: the deprecated unauthenticated
    /// endpoints do not serve it (see `media`). Records written before the field existed
    /// read as `false`, "from before the freeze", which is what they are, so they need no
    /// migration.
    #[serde(default)]
    pub authenticated_only: bool,
    /// The administrator who quarantined it: then it is served to nobody.
    #[serde(default)]
    pub quarantined_by: Option<OwnedUserId>,
}

impl Store {
    pub fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        self.media.get(media_id.as_bytes())?.map(|b| decode("media", &b)).transpose()
    }

    pub async fn set_media(&self, media_id: &str, record: &MediaRecord) -> Result<()> {
        self.media.insert(media_id.as_bytes(), encode(record))?;
        self.durable().await
    }

    /// Every media record with its key, for administrators (not on any hot path).
    pub fn all_media(&self) -> Result<Vec<(String, MediaRecord)>> {
        self.media
            .iter()
            .map(|item| {
                let (key, value) = item?;
                Ok((String::from_utf8_lossy(&key).into_owned(), decode("media", &value)?))
            })
            .collect()
    }

    /// Forgets a file's record; `false` if there was none.
    pub async fn delete_media(&self, key: &str) -> Result<bool> {
        let existed = self.media.remove(key.as_bytes())?.is_some();
        self.durable().await?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::MediaRecord;

    /// A record written before the media freeze existed has no `authenticated_only`, and
    /// reads as a file from before the freeze.
    #[test]
    fn a_record_from_before_the_freeze_reads_as_unfrozen() {
        let old = br#"{"uploader":"@a:x","content_type":"text/plain","filename":null,"size":3,"created_ts":1,"pending":false}"#;
        let record: MediaRecord = super::decode("media", old).unwrap();
        assert!(!record.authenticated_only);
    }
}
