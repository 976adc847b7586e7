//! Media metadata; the files themselves live on disk, owned by the `media` domain.
//!
//! Trees:
//! - `media`: media id (or `remote/<server>/<media id>` for another server's file cached
//!   here) → [`MediaRecord`];
//! - `user_media`: uploader, `0xff`, media id → size (big-endian u64): a user's files,
//!   for their quota and for administrators, without reading every record.

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::{
    Result, StorageError, Store, abort, composite_key, decode, encode, flatten, prefix_of, tree::Transact,
};

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
        let bytes = encode(record);
        flatten::<_, StorageError>((&self.media, &self.user_media).transaction(|(media, by_user)| {
            let previous = media.insert(media_id.as_bytes(), bytes.as_slice())?;
            if let Some(previous) = previous {
                let previous: MediaRecord = decode("media", &previous).or_else(abort)?;
                if let Some(uploader) = &previous.uploader {
                    by_user.remove(user_media_key(uploader, media_id))?;
                }
            }
            if let Some(uploader) = &record.uploader {
                by_user.insert(user_media_key(uploader, media_id), &record.size.to_be_bytes())?;
            }
            Ok(())
        }))?;
        self.durable().await
    }

    /// Bytes the files a user uploaded take (reserved ids count nothing until filled).
    pub fn user_media_bytes(&self, user: &UserId) -> Result<u64> {
        let mut total = 0u64;
        for value in self.user_media.scan_prefix(prefix_of(user.as_bytes())).values() {
            total = total.saturating_add(super::be_u64("media size", &value?)?);
        }
        Ok(total)
    }

    /// The ids of the files a user uploaded, in media id order.
    pub fn user_media_ids(&self, user: &UserId) -> Result<Vec<String>> {
        let prefix = prefix_of(user.as_bytes());
        self.user_media
            .scan_prefix(&prefix)
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?[prefix.len()..]).into_owned()))
            .collect()
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
        let existed =
            flatten::<_, StorageError>((&self.media, &self.user_media).transaction(|(media, by_user)| {
                let Some(previous) = media.remove(key.as_bytes())? else { return Ok(false) };
                let previous: MediaRecord = decode("media", &previous).or_else(abort)?;
                if let Some(uploader) = &previous.uploader {
                    by_user.remove(user_media_key(uploader, key))?;
                }
                Ok(true)
            }))?;
        self.durable().await?;
        Ok(existed)
    }
}

fn user_media_key(user: &UserId, media_id: &str) -> Vec<u8> {
    composite_key(&[user.as_bytes(), media_id.as_bytes()])
}

/// Schema 8 → 9: indexes every stored file by its uploader.
pub(super) fn index_media_by_uploader(db: &sled::Db) -> Result<()> {
    let (media, by_user) = (db.open_tree("media")?, db.open_tree("user_media")?);
    for item in media.iter() {
        let (key, value) = item?;
        let record: MediaRecord = decode("media", &value)?;
        if let Some(uploader) = &record.uploader {
            let media_id = String::from_utf8_lossy(&key);
            by_user.insert(user_media_key(uploader, &media_id), &record.size.to_be_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MediaRecord;
    use crate::storage::{Store, encode, scratch_dir};

    /// A database of schema 8 has files and no index by uploader: opening it builds one.
    #[test]
    fn upgrading_indexes_each_uploaders_files() {
        let db = sled::Config::new().path(scratch_dir("media-upgrade").join("db")).open().unwrap();
        db.open_tree("meta").unwrap().insert("schema_version", &8u32.to_be_bytes()).unwrap();
        let media = db.open_tree("media").unwrap();
        for (key, uploader, size) in [
            ("a", Some("@u:x"), 10u64),
            ("b", Some("@u:x"), 5),
            ("c", Some("@v:x"), 7),
            ("remote/o/d", None, 99),
        ] {
            let record = MediaRecord {
                uploader: uploader.map(|u| u.try_into().unwrap()),
                content_type: None,
                filename: None,
                size,
                created_ts: 1,
                pending: false,
                authenticated_only: true,
                quarantined_by: None,
            };
            media.insert(key, encode(&record)).unwrap();
        }
        let store = Store::from_db(db).unwrap();
        let (u, v) = (ruma::user_id!("@u:x"), ruma::user_id!("@v:x"));
        assert_eq!(store.user_media_bytes(u).unwrap(), 15);
        assert_eq!(store.user_media_ids(u).unwrap(), ["a", "b"]);
        assert_eq!(store.user_media_bytes(v).unwrap(), 7);
    }

    /// A record written before the media freeze existed has no `authenticated_only`, and
    /// reads as a file from before the freeze.
    #[test]
    fn a_record_from_before_the_freeze_reads_as_unfrozen() {
        let old = br#"{"uploader":"@a:x","content_type":"text/plain","filename":null,"size":3,"created_ts":1,"pending":false}"#;
        let record: MediaRecord = super::decode("media", old).unwrap();
        assert!(!record.authenticated_only);
    }
}
