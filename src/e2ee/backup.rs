//! Server-side key backup: versions and the encrypted session keys stored in them.

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::E2ee;
use crate::{
    error::{Error, Result},
    storage::{BackupDeletion, BackupVersionRecord},
};

/// One session's key in a backup, as clients upload and read it.
pub struct BackedUpKey {
    pub room_id: String,
    pub session_id: String,
    /// The encrypted key data (`KeyBackupData`), kept as the client sent it.
    pub data: JsonValue,
}

/// A backup version as clients see it.
pub struct BackupVersion {
    pub version: String,
    pub algorithm: String,
    pub auth_data: JsonValue,
    pub count: u64,
    pub etag: String,
}

fn parse(version: &str) -> Result<u64> {
    version.parse().map_err(|_| Error::NotFound(format!("no backup version {version}")))
}

/// Whether `new` should replace `old` (spec: a verified key beats an unverified one, then
/// the lower first message index, then the lower forwarded count).
fn better(new: &JsonValue, old: &JsonValue) -> bool {
    let verified = |k: &JsonValue| k["is_verified"].as_bool().unwrap_or(false);
    let index = |k: &JsonValue| k["first_message_index"].as_u64().unwrap_or(u64::MAX);
    let forwards = |k: &JsonValue| k["forwarded_count"].as_u64().unwrap_or(u64::MAX);
    if verified(new) != verified(old) {
        return verified(new);
    }
    if index(new) != index(old) {
        return index(new) < index(old);
    }
    forwards(new) < forwards(old)
}

impl E2ee {
    pub async fn create_backup(
        &self,
        user: &UserId,
        algorithm: String,
        auth_data: JsonValue,
    ) -> Result<String> {
        let record = BackupVersionRecord { algorithm, auth_data, etag: 0, deleted: false };
        Ok(self.store.create_backup_version(user, &record).await?.to_string())
    }

    /// A version, or the newest with `None`.
    pub fn backup_info(&self, user: &UserId, version: Option<&str>) -> Result<BackupVersion> {
        let (number, record) = match version {
            Some(version) => {
                let number = parse(version)?;
                let record = self
                    .store
                    .backup_version(user, number)?
                    .ok_or_else(|| Error::NotFound(format!("no backup version {version}")))?;
                (number, record)
            }
            None => self
                .store
                .latest_backup_version(user)?
                .ok_or_else(|| Error::NotFound("no backup exists".to_owned()))?,
        };
        let count = self.store.backup_keys(user, number, None, None)?.len() as u64;
        Ok(BackupVersion {
            version: number.to_string(),
            algorithm: record.algorithm,
            auth_data: record.auth_data,
            count,
            etag: record.etag.to_string(),
        })
    }

    pub async fn update_backup(
        &self,
        user: &UserId,
        version: &str,
        algorithm: String,
        auth_data: JsonValue,
    ) -> Result<()> {
        let number = parse(version)?;
        let mut record = self
            .store
            .backup_version(user, number)?
            .ok_or_else(|| Error::NotFound(format!("no backup version {version}")))?;
        if record.algorithm != algorithm {
            return Err(Error::InvalidParam("a backup version's algorithm cannot change".to_owned()));
        }
        record.auth_data = auth_data;
        Ok(self.store.set_backup_version(user, number, &record).await?)
    }

    /// Deletes a version; deleting one that was already deleted succeeds (spec).
    pub async fn delete_backup(&self, user: &UserId, version: &str) -> Result<()> {
        match self.store.delete_backup_version(user, parse(version)?).await? {
            BackupDeletion::Deleted | BackupDeletion::AlreadyDeleted => Ok(()),
            BackupDeletion::Unknown => Err(Error::NotFound(format!("no backup version {version}"))),
        }
    }

    /// Writes go only to the current (newest) version, so a client still using an older or
    /// deleted one learns which is current.
    fn writable_version(&self, user: &UserId, version: &str) -> Result<u64> {
        let Some((latest, _)) = self.store.latest_backup_version(user)? else {
            return Err(Error::NotFound(format!("no backup version {version}")));
        };
        if version.parse::<u64>().ok() != Some(latest) {
            return Err(Error::WrongRoomKeysVersion(latest.to_string()));
        }
        Ok(latest)
    }

    /// Stores sessions, keeping an existing one when it is better; returns (etag, count).
    pub async fn put_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        sessions: Vec<BackedUpKey>,
    ) -> Result<(String, u64)> {
        let number = self.writable_version(user, version)?;
        let mut accepted = Vec::new();
        for BackedUpKey { room_id, session_id, data } in sessions {
            let existing = self.store.backup_keys(user, number, Some(&room_id), Some(&session_id))?;
            if existing.first().is_none_or(|(_, _, old)| better(&data, old)) {
                accepted.push((room_id, session_id, data));
            }
        }
        // Keys that replace nothing leave the etag alone: it tells clients whether the
        // backup changed.
        if !accepted.is_empty() {
            self.store.put_backup_keys(user, number, &accepted).await?;
        }
        let info = self.backup_info(user, Some(version))?;
        Ok((info.etag, info.count))
    }

    pub fn get_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Vec<BackedUpKey>> {
        let number = parse(version)?;
        self.store
            .backup_version(user, number)?
            .ok_or_else(|| Error::NotFound(format!("no backup version {version}")))?;
        let keys = self.store.backup_keys(user, number, room, session)?;
        if session.is_some() && keys.is_empty() {
            return Err(Error::NotFound("no such session in the backup".to_owned()));
        }
        Ok(keys
            .into_iter()
            .map(|(room_id, session_id, data)| BackedUpKey { room_id, session_id, data })
            .collect())
    }

    pub async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<(String, u64)> {
        let number = self.writable_version(user, version)?;
        self.store.delete_backup_keys(user, number, room, session).await?;
        let info = self.backup_info(user, Some(version))?;
        Ok((info.etag, info.count))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::better;

    #[test]
    fn replacement_rules() {
        let verified = json!({"is_verified": true, "first_message_index": 5, "forwarded_count": 1});
        let unverified_early = json!({"is_verified": false, "first_message_index": 0, "forwarded_count": 0});
        assert!(better(&verified, &unverified_early));
        assert!(!better(&unverified_early, &verified));
        let earlier = json!({"is_verified": true, "first_message_index": 1, "forwarded_count": 3});
        assert!(better(&earlier, &verified));
        let fewer_forwards = json!({"is_verified": true, "first_message_index": 5, "forwarded_count": 0});
        assert!(better(&fewer_forwards, &verified));
        assert!(!better(&verified, &verified));
    }
}
