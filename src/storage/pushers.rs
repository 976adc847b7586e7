//! Pushers and how far delivery to each has got.
//!
//! Trees:
//! - `pushers`: user, `0xff`, app id, `0xff`, push key → the pusher's JSON, as the client set it
//! - `pusher_state`: the same key → [`PusherState`]: when it was set, by which device, and
//!   the delivery cursor. Kept apart because the cursor moves with every notification while
//!   the pusher itself changes only when the client sets it again.
//! - `pushers_by_key`: app id, `0xff`, push key, `0xff`, user → nothing: who else registered
//!   the same push key, for `append: false`, which takes it from them.
//!
//! The notifications a pusher still has to deliver are not copied anywhere: they are the
//! user's notification records (`event_notifications`) after the cursor.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use sled::transaction::ConflictableTransactionError;

use super::tree::Transact;

use super::{Result, StorageError, Store, composite_key, decode, encode, flatten, prefix_of};

/// What the transactions below fail with (they abort only on sled's own errors).
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StorageError>>;

/// Which pusher: a user's pushers are told apart by app id and push key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PusherKey {
    pub user_id: OwnedUserId,
    pub app_id: String,
    pub pushkey: String,
}

impl PusherKey {
    fn bytes(&self) -> Vec<u8> {
        composite_key(&[self.user_id.as_bytes(), self.app_id.as_bytes(), self.pushkey.as_bytes()])
    }

    fn by_pushkey(&self) -> Vec<u8> {
        composite_key(&[self.app_id.as_bytes(), self.pushkey.as_bytes(), self.user_id.as_bytes()])
    }
}

/// What the server keeps about a pusher besides what the client set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PusherState {
    /// When the client last set it, in milliseconds (the gateway's `pushkey_ts`).
    pub set_at_ms: u64,
    /// The device that set it.
    pub device_id: Option<OwnedDeviceId>,
    /// Every notification at or below this stream position has been delivered (or given up).
    pub delivered_upto: u64,
    /// Since when (milliseconds) deliveries have failed, if they do.
    pub failing_since: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct PusherRecord {
    pub key: PusherKey,
    pub pusher: JsonValue,
    pub state: PusherState,
}

impl Store {
    /// Adds or replaces a pusher. With `take_pushkey`, the same app id and push key is
    /// removed from every other user (the spec's `append: false`); returns whose it was.
    pub async fn set_pusher(
        &self,
        key: &PusherKey,
        pusher: &JsonValue,
        state: &PusherState,
        take_pushkey: bool,
    ) -> Result<Vec<PusherKey>> {
        let others: Vec<PusherKey> = if take_pushkey {
            let prefix = prefix_of(&composite_key(&[key.app_id.as_bytes(), key.pushkey.as_bytes()]));
            self.pushers_by_key
                .scan_prefix(&prefix)
                .keys()
                .map(|k| {
                    let k = k?;
                    let user = std::str::from_utf8(&k[prefix.len()..])
                        .ok()
                        .and_then(|u| UserId::parse(u).ok())
                        .ok_or_else(|| StorageError::Corrupt("pusher owner".to_owned()))?;
                    Ok(PusherKey { user_id: user, ..key.clone() })
                })
                .filter(|other| !matches!(other, Ok(other) if other.user_id == key.user_id))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        flatten((&self.pushers, &self.pusher_state, &self.pushers_by_key).transaction(
            |(pushers, states, by_key)| {
                for other in &others {
                    pushers.remove(other.bytes())?;
                    states.remove(other.bytes())?;
                    by_key.remove(other.by_pushkey())?;
                }
                pushers.insert(key.bytes(), encode(pusher))?;
                states.insert(key.bytes(), encode(state))?;
                by_key.insert(key.by_pushkey(), &[])?;
                TxResult::Ok(())
            },
        ))?;
        self.durable().await?;
        Ok(others)
    }

    /// Removes a pusher; `false` if there was none.
    pub async fn remove_pusher(&self, key: &PusherKey) -> Result<bool> {
        let existed = flatten((&self.pushers, &self.pusher_state, &self.pushers_by_key).transaction(
            |(pushers, states, by_key)| {
                states.remove(key.bytes())?;
                by_key.remove(key.by_pushkey())?;
                TxResult::Ok(pushers.remove(key.bytes())?.is_some())
            },
        ))?;
        self.durable().await?;
        Ok(existed)
    }

    /// Records how far delivery got for each pusher that still exists (one may have been
    /// removed while a notification was on its way), in one write.
    ///
    /// Not flushed: cursors move with every notification, and delivery batches them and
    /// decides when they reach the disk (see `push::delivery`).
    pub fn set_pusher_states(&self, states: &[(PusherKey, PusherState)]) -> Result<()> {
        flatten((&self.pushers, &self.pusher_state).transaction(|(pushers, stored)| {
            for (key, state) in states {
                if pushers.get(key.bytes())?.is_some() {
                    stored.insert(key.bytes(), encode(state))?;
                }
            }
            TxResult::Ok(())
        }))
    }

    /// A user's pushers.
    pub fn pushers(&self, user: &UserId) -> Result<Vec<PusherRecord>> {
        self.pushers_under(&prefix_of(user.as_bytes()))
    }

    /// Every pusher of every user: what a starting server resumes delivering to.
    pub fn all_pushers(&self) -> Result<Vec<PusherRecord>> {
        self.pushers_under(&[])
    }

    /// Whether the pusher still exists: a worker checks before each request, so a pusher
    /// removed with its device (logout) gets nothing more.
    pub fn pusher_exists(&self, key: &PusherKey) -> Result<bool> {
        Ok(self.pushers.contains_key(key.bytes())?)
    }

    /// Removes the pushers the device set: a logged-out phone stops ringing.
    pub(super) async fn remove_device_pushers(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        for record in self.pushers(user)? {
            if record.state.device_id.as_deref() == Some(device) {
                self.remove_pusher(&record.key).await?;
            }
        }
        Ok(())
    }

    fn pushers_under(&self, prefix: &[u8]) -> Result<Vec<PusherRecord>> {
        self.pushers
            .scan_prefix(prefix)
            .map(|item| {
                let (key_bytes, value) = item?;
                let key = pusher_key(&key_bytes)?;
                // Pushers set before delivery existed have no state: they start from now.
                let state = match self.pusher_state.get(&key_bytes)? {
                    Some(bytes) => decode("pusher state", &bytes)?,
                    None => PusherState { delivered_upto: self.visible_position(), ..Default::default() },
                };
                Ok(PusherRecord { key, pusher: decode("pusher", &value)?, state })
            })
            .collect()
    }
}

fn pusher_key(bytes: &[u8]) -> Result<PusherKey> {
    let corrupt = || StorageError::Corrupt("pusher key".to_owned());
    let mut parts = bytes.splitn(3, |b| *b == super::SEP);
    let mut next = || parts.next().and_then(|p| std::str::from_utf8(p).ok()).ok_or_else(corrupt);
    let user_id = UserId::parse(next()?).map_err(|_| corrupt())?;
    Ok(PusherKey { user_id, app_id: next()?.to_owned(), pushkey: next()?.to_owned() })
}
