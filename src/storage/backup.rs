//! Server-side key backup (spec: "Server-side key backups").
//!
//! Trees: `backup_versions`: user, `0xff`, version (u64) → [`BackupVersionRecord`];
//! `backup_keys`: user, `0xff`, version, `0xff`, room, `0xff`, session → key data JSON.

use ruma::UserId;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, StorageError, Store, abort, be_u64, composite_key, decode, encode, flatten, prefix_of};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupVersionRecord {
    pub algorithm: String,
    pub auth_data: JsonValue,
    /// Changes whenever the version's keys change.
    pub etag: u64,
    /// Deleted versions are kept as tombstones: deleting one again succeeds (spec), and a
    /// client still writing to it learns which version is current.
    #[serde(default)]
    pub deleted: bool,
}

/// What deleting a backup version found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupDeletion {
    Deleted,
    AlreadyDeleted,
    Unknown,
}

/// One backed-up session: room id, session id, key data.
pub type BackedUpSession = (String, String, JsonValue);

fn version_key(user: &UserId, version: u64) -> Vec<u8> {
    composite_key(&[user.as_bytes(), &version.to_be_bytes()])
}

fn parse_version(bytes: &[u8]) -> Result<u64> {
    be_u64("backup version", bytes)
}

impl Store {
    /// Creates a version; numbers come from the global id generator, so a newer version
    /// always has a higher number.
    pub async fn create_backup_version(&self, user: &UserId, record: &BackupVersionRecord) -> Result<u64> {
        let version = self.db.generate_id()?;
        self.backup_versions.insert(version_key(user, version), encode(record))?;
        self.durable().await?;
        Ok(version)
    }

    /// The user's newest backup version that is not deleted, if any.
    pub fn latest_backup_version(&self, user: &UserId) -> Result<Option<(u64, BackupVersionRecord)>> {
        let prefix = prefix_of(user.as_bytes());
        for item in self.backup_versions.scan_prefix(&prefix).rev() {
            let (key, value) = item?;
            let record: BackupVersionRecord = decode("backup version", &value)?;
            if !record.deleted {
                return Ok(Some((parse_version(&key[prefix.len()..])?, record)));
            }
        }
        Ok(None)
    }

    /// A version that exists and is not deleted.
    pub fn backup_version(&self, user: &UserId, version: u64) -> Result<Option<BackupVersionRecord>> {
        let record: Option<BackupVersionRecord> = self
            .backup_versions
            .get(version_key(user, version))?
            .map(|b| decode("backup version", &b))
            .transpose()?;
        Ok(record.filter(|r| !r.deleted))
    }

    pub async fn set_backup_version(
        &self,
        user: &UserId,
        version: u64,
        record: &BackupVersionRecord,
    ) -> Result<()> {
        self.backup_versions.insert(version_key(user, version), encode(record))?;
        self.durable().await
    }

    /// Deletes every key of a version and leaves the version as a tombstone.
    pub async fn delete_backup_version(&self, user: &UserId, version: u64) -> Result<BackupDeletion> {
        let key = version_key(user, version);
        let outcome = flatten::<_, StorageError>(self.backup_versions.transaction(|tree| {
            let Some(bytes) = tree.get(&key)? else { return Ok(BackupDeletion::Unknown) };
            let mut record: BackupVersionRecord = decode("backup version", &bytes).or_else(abort)?;
            if record.deleted {
                return Ok(BackupDeletion::AlreadyDeleted);
            }
            record.deleted = true;
            record.auth_data = JsonValue::Null;
            tree.insert(key.as_slice(), encode(&record))?;
            Ok(BackupDeletion::Deleted)
        }))?;
        if outcome == BackupDeletion::Deleted {
            self.delete_backup_keys(user, version, None, None).await?;
        }
        Ok(outcome)
    }

    /// Keys of a version, optionally of one room or one session.
    pub fn backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Vec<BackedUpSession>> {
        let prefix = backup_prefix(user, version, room, session);
        let base = prefix_of(&version_key(user, version));
        self.backup_keys
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                let rest = &key[base.len()..];
                let sep = rest
                    .iter()
                    .position(|b| *b == super::SEP)
                    .ok_or_else(|| StorageError::Corrupt("backup key".to_owned()))?;
                Ok((
                    String::from_utf8_lossy(&rest[..sep]).into_owned(),
                    String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
                    decode("backup key", &value)?,
                ))
            })
            .filter(|entry: &Result<BackedUpSession>| {
                // A session prefix also matches longer session ids; keep exact matches.
                session.is_none_or(|s| entry.as_ref().map_or(true, |(_, id, _)| id == s))
            })
            .collect()
    }

    /// Stores sessions (already judged better than what they replace) and bumps the etag.
    pub async fn put_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        sessions: &[BackedUpSession],
    ) -> Result<()> {
        for (room, session, data) in sessions {
            self.backup_keys.insert(
                composite_key(&[&version_key(user, version), room.as_bytes(), session.as_bytes()]),
                encode(data),
            )?;
        }
        self.bump_backup_etag(user, version)?;
        self.durable().await
    }

    pub async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<()> {
        let doomed: Vec<_> = self
            .backup_keys(user, version, room, session)?
            .into_iter()
            .map(|(room, session, _)| {
                composite_key(&[&version_key(user, version), room.as_bytes(), session.as_bytes()])
            })
            .collect();
        let mut batch = sled::Batch::default();
        for key in doomed {
            batch.remove(key);
        }
        self.backup_keys.apply_batch(batch)?;
        self.bump_backup_etag(user, version)?;
        self.durable().await
    }

    fn bump_backup_etag(&self, user: &UserId, version: u64) -> Result<()> {
        let key = version_key(user, version);
        flatten::<_, StorageError>(self.backup_versions.transaction(|tree| {
            let Some(bytes) = tree.get(&key)? else { return Ok(()) };
            let mut record: BackupVersionRecord = decode("backup version", &bytes).or_else(abort)?;
            record.etag += 1;
            tree.insert(key.as_slice(), encode(&record))?;
            Ok(())
        }))
    }
}

fn backup_prefix(user: &UserId, version: u64, room: Option<&str>, session: Option<&str>) -> Vec<u8> {
    let base = version_key(user, version);
    match (room, session) {
        (Some(room), Some(session)) => composite_key(&[&base, room.as_bytes(), session.as_bytes()]),
        (Some(room), None) => prefix_of(&composite_key(&[&base, room.as_bytes()])),
        _ => prefix_of(&base),
    }
}
