//! Account data: per user, global or per room, one JSON object per type.
//!
//! Tree `account_data`: user id, `0xff`, room id (empty for global), `0xff`, type →
//! [`AccountDataRecord`]. Each write takes a stream position so `/sync` can send only
//! what changed.

use ruma::{OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, StorageError, Store, composite_key, decode, encode, prefix_of};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountDataRecord {
    pub content: JsonValue,
    pub position: u64,
}

/// One entry: the room (`None` for global), the type and the record.
pub type AccountDataEntry = (Option<OwnedRoomId>, String, AccountDataRecord);

fn key(user: &UserId, room: Option<&RoomId>, kind: &str) -> Vec<u8> {
    composite_key(&[user.as_bytes(), room.map_or(&b""[..], |r| r.as_bytes()), kind.as_bytes()])
}

impl Store {
    pub fn account_data(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<AccountDataRecord>> {
        self.account_data.get(key(user, room, kind))?.map(|b| decode("account data", &b)).transpose()
    }

    /// Stores account data; returns the position it was written at.
    pub async fn set_account_data(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &JsonValue,
    ) -> Result<u64> {
        let guard = self.begin_position()?;
        let record = AccountDataRecord { content: content.clone(), position: guard.position() };
        self.account_data.insert(key(user, room, kind), encode(&record))?;
        self.durable().await?;
        Ok(guard.position())
    }

    /// All of a user's account data.
    pub fn all_account_data(&self, user: &UserId) -> Result<Vec<AccountDataEntry>> {
        let prefix = prefix_of(user.as_bytes());
        self.account_data
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                let rest = &key[prefix.len()..];
                let sep = rest
                    .iter()
                    .position(|b| *b == super::SEP)
                    .ok_or_else(|| StorageError::Corrupt("account data key".to_owned()))?;
                let room = match &rest[..sep] {
                    [] => None,
                    room => Some(
                        std::str::from_utf8(room)
                            .ok()
                            .and_then(|r| RoomId::parse(r).ok())
                            .ok_or_else(|| StorageError::Corrupt("account data room".to_owned()))?,
                    ),
                };
                let kind = String::from_utf8_lossy(&rest[sep + 1..]).into_owned();
                Ok((room, kind, decode("account data", &value)?))
            })
            .collect()
    }
}
