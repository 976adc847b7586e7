//! Room aliases and the public room directory.
//!
//! Trees: `aliases`: alias → [`AliasRecord`]; `room_aliases`: room id, `0xff`, alias → ();
//! `public_rooms`: room id → () for rooms published in the directory.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId};
use serde::{Deserialize, Serialize};

use super::tree::Transact;
use super::{Result, StorageError, Store, abort, composite_key, decode, encode, flatten, prefix_of};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    pub room_id: OwnedRoomId,
    pub creator: OwnedUserId,
}

impl Store {
    pub fn alias(&self, alias: &RoomAliasId) -> Result<Option<AliasRecord>> {
        self.aliases.get(alias.as_bytes())?.map(|b| decode("alias", &b)).transpose()
    }

    /// Creates an alias; `false` if it already exists.
    pub async fn create_alias(&self, alias: &RoomAliasId, record: &AliasRecord) -> Result<bool> {
        let room_alias_key = composite_key(&[record.room_id.as_bytes(), alias.as_bytes()]);
        let created = flatten::<_, StorageError>((&self.aliases, &self.room_aliases).transaction(
            |(aliases, room_aliases)| {
                if aliases.get(alias.as_bytes())?.is_some() {
                    return Ok(false);
                }
                aliases.insert(alias.as_bytes(), encode(record))?;
                room_aliases.insert(room_alias_key.as_slice(), &[])?;
                Ok(true)
            },
        ))?;
        self.durable().await?;
        Ok(created)
    }

    pub async fn delete_alias(&self, alias: &RoomAliasId) -> Result<()> {
        flatten((&self.aliases, &self.room_aliases).transaction(|(aliases, room_aliases)| {
            if let Some(bytes) = aliases.remove(alias.as_bytes())? {
                let record: AliasRecord = decode("alias", &bytes).or_else(abort)?;
                room_aliases.remove(composite_key(&[record.room_id.as_bytes(), alias.as_bytes()]))?;
            }
            Ok(())
        }))?;
        self.durable().await
    }

    pub fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let prefix = prefix_of(room_id.as_bytes());
        self.room_aliases
            .scan_prefix(&prefix)
            .keys()
            .filter_map(|key| {
                let key = match key {
                    Ok(key) => key,
                    Err(e) => return Some(Err(e.into())),
                };
                std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|s| RoomAliasId::parse(s).ok())
                    .map(Ok)
            })
            .collect()
    }

    /// Points every alias of `from` at `to` and moves its directory listing there, in one
    /// transaction (a room upgrade). Returns the aliases moved.
    pub async fn move_directory_entries(&self, from: &RoomId, to: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let aliases = self.room_aliases(from)?;
        flatten::<_, StorageError>((&self.aliases, &self.room_aliases, &self.public_rooms).transaction(
            |(alias_records, room_aliases, public_rooms)| {
                for alias in &aliases {
                    let Some(bytes) = alias_records.get(alias.as_bytes())? else { continue };
                    let mut record: AliasRecord = decode("alias", &bytes).or_else(abort)?;
                    if record.room_id != from {
                        continue;
                    }
                    record.room_id = to.to_owned();
                    alias_records.insert(alias.as_bytes(), encode(&record))?;
                    room_aliases.remove(composite_key(&[from.as_bytes(), alias.as_bytes()]))?;
                    room_aliases.insert(composite_key(&[to.as_bytes(), alias.as_bytes()]), &[])?;
                }
                if public_rooms.remove(from.as_bytes())?.is_some() {
                    public_rooms.insert(to.as_bytes(), &[])?;
                }
                Ok(())
            },
        ))?;
        self.durable().await?;
        Ok(aliases)
    }

    /// Publishes a room in the directory or takes it out.
    pub async fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        if published {
            self.public_rooms.insert(room_id.as_bytes(), &[])?;
        } else {
            self.public_rooms.remove(room_id.as_bytes())?;
        }
        self.durable().await
    }

    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.public_rooms.contains_key(room_id.as_bytes())?)
    }

    pub fn published_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        self.public_rooms
            .iter()
            .keys()
            .filter_map(|key| match key {
                Ok(key) => std::str::from_utf8(&key).ok().and_then(|s| RoomId::parse(s).ok()).map(Ok),
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }
}
