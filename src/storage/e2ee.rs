//! End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys,
//! key-change positions and to-device messages. The server stores and relays; it never
//! looks inside the keys beyond their ids.
//!
//! Trees:
//! - `device_keys`: user, `0xff`, device → signed device keys JSON as uploaded
//! - `one_time_keys`: user, `0xff`, device, `0xff`, algorithm, `0xff`, key id → key JSON
//! - `one_time_key_order`: user, `0xff`, device, `0xff`, algorithm, `0xff`, upload (u64),
//!   index (u32) → key id: the order of upload, which is the order claims follow (spec:
//!   clients forget the private halves of their oldest keys first)
//! - `fallback_keys`: user, `0xff`, device, `0xff`, algorithm → [`FallbackKey`]
//! - `cross_signing_keys`: user, `0xff`, `master` | `self_signing` | `user_signing` → key JSON
//! - `key_changes`: user → position of the latest change to their devices or keys
//! - `to_device`: user, `0xff`, device, `0xff`, position → [`ToDeviceMessage`]
//! - `to_device_txns`: sender, `0xff`, device, `0xff`, transaction id → ()

use std::collections::{BTreeMap, BTreeSet};

use super::Tree;
use super::tree::Transact;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId, events::room::member::MembershipState};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{
    Result, StorageError, Store, abort, be_u64, composite_key, decode, encode, flatten, positioned, prefix_of,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FallbackKey {
    pub key_id: String,
    pub key: JsonValue,
    pub used: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToDeviceMessage {
    pub sender: OwnedUserId,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: JsonValue,
}

/// What `/keys/claim` hands out for one device and algorithm.
pub struct ClaimedKey {
    pub key_id: String,
    pub key: JsonValue,
}

fn device_key(user: &UserId, device: &DeviceId) -> Vec<u8> {
    composite_key(&[user.as_bytes(), device.as_bytes()])
}

fn split_last(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let sep = bytes
        .iter()
        .rposition(|b| *b == super::SEP)
        .ok_or_else(|| StorageError::Corrupt("e2ee key".to_owned()))?;
    Ok((&bytes[..sep], &bytes[sep + 1..]))
}

impl Store {
    pub fn device_keys(&self, user: &UserId, device: &DeviceId) -> Result<Option<JsonValue>> {
        self.device_keys.get(device_key(user, device))?.map(|b| decode("device keys", &b)).transpose()
    }

    /// Stores a device's keys; returns whether they differ from what was stored.
    pub async fn set_device_keys(&self, user: &UserId, device: &DeviceId, keys: &JsonValue) -> Result<bool> {
        let bytes = encode(keys);
        let previous = self.device_keys.insert(device_key(user, device), bytes.as_slice())?;
        self.durable().await?;
        Ok(previous.is_none_or(|p| p.as_ref() != bytes.as_slice()))
    }

    /// Adds one-time keys, remembering the order of upload. A key id already stored with
    /// other content refuses the whole upload.
    pub async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: &[(String, String, JsonValue)],
    ) -> Result<Result<(), String>> {
        // Ids from sled's generator only grow, so uploads sort in the order they happened.
        let upload = self.db.generate_id()?.to_be_bytes();
        let outcome = flatten::<_, StorageError>(
            (&self.one_time_keys, &self.one_time_key_order).transaction(|(tree, order)| {
                for (index, (algorithm, key_id, key)) in keys.iter().enumerate() {
                    let id = composite_key(&[
                        user.as_bytes(),
                        device.as_bytes(),
                        algorithm.as_bytes(),
                        key_id.as_bytes(),
                    ]);
                    let bytes = encode(key);
                    match tree.get(&id)? {
                        Some(existing) if existing.as_ref() != bytes.as_slice() => {
                            return Ok(Err(format!(
                                "one-time key {algorithm}:{key_id} already exists with other content"
                            )));
                        }
                        Some(_) => {}
                        None => {
                            tree.insert(id, bytes)?;
                            let sequence = [upload.as_slice(), &(index as u32).to_be_bytes()].concat();
                            order.insert(
                                composite_key(&[
                                    user.as_bytes(),
                                    device.as_bytes(),
                                    algorithm.as_bytes(),
                                    &sequence,
                                ]),
                                key_id.as_bytes(),
                            )?;
                        }
                    }
                }
                Ok(Ok(()))
            }),
        )?;
        self.durable().await?;
        Ok(outcome)
    }

    /// Unclaimed one-time keys of a device, by algorithm.
    pub fn one_time_key_counts(&self, user: &UserId, device: &DeviceId) -> Result<BTreeMap<String, u64>> {
        let prefix = prefix_of(&device_key(user, device));
        let mut counts = BTreeMap::new();
        for key in self.one_time_keys.scan_prefix(&prefix).keys() {
            let key = key?;
            let (rest, _) = split_last(&key[prefix.len()..])?;
            *counts.entry(String::from_utf8_lossy(rest).into_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Replaces the device's fallback key for an algorithm (a new one is unused). The key
    /// it already has, uploaded again (a client retrying), keeps whether it was used.
    pub async fn set_fallback_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
        key: &FallbackKey,
    ) -> Result<()> {
        let id = composite_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]);
        flatten::<_, StorageError>(self.fallback_keys.transaction(|tree| {
            if let Some(bytes) = tree.get(&id)? {
                let existing: FallbackKey = decode("fallback key", &bytes).or_else(abort)?;
                if existing.key_id == key.key_id && existing.key == key.key {
                    return Ok(());
                }
            }
            tree.insert(id.as_slice(), encode(key))?;
            Ok(())
        }))?;
        self.durable().await
    }

    /// Algorithms whose fallback key has not been used yet.
    pub fn unused_fallback_algorithms(&self, user: &UserId, device: &DeviceId) -> Result<Vec<String>> {
        let prefix = prefix_of(&device_key(user, device));
        let mut algorithms = Vec::new();
        for item in self.fallback_keys.scan_prefix(&prefix) {
            let (key, value) = item?;
            let fallback: FallbackKey = decode("fallback key", &value)?;
            if !fallback.used {
                algorithms.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
            }
        }
        Ok(algorithms)
    }

    /// Takes the oldest one-time key of `algorithm`, or else the fallback key (marking it
    /// used).
    pub async fn claim_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let claimed = match self.take_oldest_one_time_key(user, device, algorithm)? {
            Some(claimed) => Some(claimed),
            None => self.take_unordered_one_time_key(user, device, algorithm)?,
        };
        let claimed = match claimed {
            Some(claimed) => Some(claimed),
            None => {
                let fallback_id = composite_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]);
                flatten::<_, StorageError>(self.fallback_keys.transaction(|tree| {
                    let Some(bytes) = tree.get(&fallback_id)? else { return Ok(None) };
                    let mut fallback: FallbackKey = decode("fallback key", &bytes).or_else(abort)?;
                    if !fallback.used {
                        fallback.used = true;
                        tree.insert(fallback_id.as_slice(), encode(&fallback))?;
                    }
                    Ok(Some(ClaimedKey { key_id: fallback.key_id, key: fallback.key }))
                }))?
            }
        };
        self.durable().await?;
        Ok(claimed)
    }

    /// Removes and returns the device's oldest one-time key of `algorithm` by upload order.
    fn take_oldest_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let prefix = composite_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes(), b""]);
        loop {
            let Some((order_key, key_id)) =
                self.one_time_key_order.scan_prefix(&prefix).next().transpose()?
            else {
                return Ok(None);
            };
            let id = composite_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes(), &key_id]);
            // Another claim may take the same key first: only the one that removes it wins.
            let taken = flatten::<_, StorageError>(
                (&self.one_time_key_order, &self.one_time_keys).transaction(|(order, keys)| {
                    if order.remove(&order_key)?.is_none() {
                        return Ok(None);
                    }
                    Ok(keys.remove(id.as_slice())?)
                }),
            )?;
            if let Some(value) = taken {
                return Ok(Some(ClaimedKey {
                    key_id: String::from_utf8_lossy(&key_id).into_owned(),
                    key: decode("one-time key", &value)?,
                }));
            }
        }
    }

    /// Removes and returns any one-time key of `algorithm` that has no recorded upload order
    /// (keys stored before the order was kept).
    fn take_unordered_one_time_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let prefix = composite_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes(), b""]);
        loop {
            let Some((id, value)) = self.one_time_keys.scan_prefix(&prefix).next().transpose()? else {
                return Ok(None);
            };
            if self.one_time_keys.compare_and_swap(&id, Some(&value), None as Option<&[u8]>)?.is_err() {
                continue;
            }
            let (_, key_id) = split_last(&id)?;
            return Ok(Some(ClaimedKey {
                key_id: String::from_utf8_lossy(key_id).into_owned(),
                key: decode("one-time key", &value)?,
            }));
        }
    }

    pub fn cross_signing_key(&self, user: &UserId, kind: &str) -> Result<Option<JsonValue>> {
        self.cross_signing_keys
            .get(composite_key(&[user.as_bytes(), kind.as_bytes()]))?
            .map(|b| decode("cross-signing key", &b))
            .transpose()
    }

    pub async fn set_cross_signing_keys(&self, user: &UserId, keys: &[(&str, &JsonValue)]) -> Result<()> {
        flatten::<_, StorageError>(self.cross_signing_keys.transaction(|tree| {
            for (kind, key) in keys {
                tree.insert(composite_key(&[user.as_bytes(), kind.as_bytes()]), encode(*key))?;
            }
            Ok(())
        }))?;
        self.durable().await
    }

    /// Records that a user's devices or keys changed; returns the change's position.
    pub async fn mark_key_change(&self, user: &UserId) -> Result<u64> {
        let guard = self.begin_position()?;
        self.key_changes.insert(user.as_bytes(), &guard.position().to_be_bytes())?;
        self.latest_key_change.fetch_max(guard.position(), std::sync::atomic::Ordering::SeqCst);
        self.durable().await?;
        Ok(guard.position())
    }

    /// Users who share a joined room with `user`, `user` included: those who track
    /// `user`'s devices.
    pub fn room_peers(&self, user: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let mut peers = BTreeSet::from([user.to_owned()]);
        for (room, entry) in self.user_rooms(user)? {
            if entry.membership != MembershipState::Join {
                continue;
            }
            for (member, membership) in self.memberships(&room)? {
                if membership == MembershipState::Join {
                    peers.insert(member);
                }
            }
        }
        Ok(peers)
    }

    /// The position of the latest key change of anyone: syncs skip looking for changes
    /// among their peers when nothing changed since their token.
    pub fn latest_key_change(&self) -> u64 {
        self.latest_key_change.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The latest key change recorded in the database, to start [`Store::latest_key_change`].
    pub(super) fn scan_latest_key_change(key_changes: &Tree) -> Result<u64> {
        key_changes
            .iter()
            .values()
            .try_fold(0, |latest, value| Ok(latest.max(be_u64("key change", &value?)?)))
    }

    pub fn last_key_change(&self, user: &UserId) -> Result<u64> {
        match self.key_changes.get(user.as_bytes())? {
            Some(bytes) => be_u64("key change", &bytes),
            None => Ok(0),
        }
    }

    /// Queues a to-device message for each (user, device) unless this sender's device has
    /// used `txn_id` before; returns the position it queued them at, if it did.
    pub async fn queue_to_device(
        &self,
        sender: (&UserId, &DeviceId),
        txn_id: &str,
        messages: &[(OwnedUserId, OwnedDeviceId, ToDeviceMessage)],
    ) -> Result<Option<u64>> {
        let guard = self.begin_position()?;
        let position = guard.position().to_be_bytes();
        let txn_key = composite_key(&[sender.0.as_bytes(), sender.1.as_bytes(), txn_id.as_bytes()]);
        let queued = flatten::<_, StorageError>((&self.to_device_txns, &self.to_device).transaction(
            |(txns, queue)| {
                if txns.get(&txn_key)?.is_some() {
                    return Ok(false);
                }
                txns.insert(txn_key.as_slice(), &[])?;
                for (user, device, message) in messages {
                    queue.insert(
                        composite_key(&[user.as_bytes(), device.as_bytes(), &position]),
                        encode(message),
                    )?;
                }
                Ok(true)
            },
        ))?;
        self.durable().await?;
        Ok(queued.then_some(guard.position()))
    }

    /// Deletes a device's to-device messages up to `through`: the client proved it has them.
    /// Most syncs acknowledge nothing, and a sled batch, even an empty one, writes sled's log
    /// buffer, so nothing is written then.
    pub fn acknowledge_to_device(&self, user: &UserId, device: &DeviceId, through: u64) -> Result<()> {
        let prefix = prefix_of(&device_key(user, device));
        let end = [prefix.as_slice(), &through.saturating_add(1).to_be_bytes()].concat();
        let doomed: Vec<sled::IVec> = self.to_device.range(prefix..end).keys().collect::<Result<_, _>>()?;
        if doomed.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for key in doomed {
            batch.remove(key);
        }
        Ok(self.to_device.apply_batch(batch)?)
    }

    /// A device's oldest undelivered to-device messages with positions up to `upto`, at most
    /// `limit` of them, and whether more wait. Reads only.
    pub fn pending_to_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, ToDeviceMessage)>, bool)> {
        let prefix = prefix_of(&device_key(user, device));
        let end = [prefix.as_slice(), &upto.saturating_add(1).to_be_bytes()].concat();
        let mut messages = self
            .to_device
            .range(prefix..end)
            .take(limit + 1)
            .map(|item| positioned("to-device message", item))
            .collect::<Result<Vec<(u64, ToDeviceMessage)>>>()?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok((messages, more))
    }

    /// Merges `signatures` (user → key id → signature) into a stored device key or
    /// cross-signing key JSON. `false` when there is no such key.
    pub async fn add_signatures(&self, target: SignatureTarget<'_>, signatures: &JsonValue) -> Result<bool> {
        let (tree, key) = match target {
            SignatureTarget::Device(user, device) => (&self.device_keys, device_key(user, device)),
            SignatureTarget::CrossSigning(user, kind) => {
                (&self.cross_signing_keys, composite_key(&[user.as_bytes(), kind.as_bytes()]))
            }
        };
        let found = flatten::<_, StorageError>(tree.transaction(|tree| {
            let Some(bytes) = tree.get(&key)? else { return Ok(false) };
            let mut stored: JsonValue = decode("signed key", &bytes).or_else(abort)?;
            if let (Some(existing), Some(new)) = (stored.get_mut("signatures"), signatures.as_object()) {
                for (signer, sigs) in new {
                    let entry = existing.as_object_mut().map(|e| {
                        e.entry(signer.clone()).or_insert_with(|| JsonValue::Object(Default::default()))
                    });
                    if let (Some(entry), Some(sigs)) =
                        (entry.and_then(|e| e.as_object_mut()), sigs.as_object())
                    {
                        entry.extend(sigs.clone());
                    }
                }
            } else if let Some(object) = stored.as_object_mut() {
                object.insert("signatures".to_owned(), signatures.clone());
            }
            tree.insert(key.as_slice(), encode(&stored))?;
            Ok(true)
        }))?;
        self.durable().await?;
        Ok(found)
    }

    /// Forgets everything about a removed device's encryption.
    pub fn remove_device_e2ee(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        let key = device_key(user, device);
        self.device_keys.remove(&key)?;
        let prefix = prefix_of(&key);
        for tree in [&self.one_time_keys, &self.one_time_key_order, &self.fallback_keys, &self.to_device] {
            let doomed: Vec<sled::IVec> = tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
            let mut batch = sled::Batch::default();
            for key in doomed {
                batch.remove(key);
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
    }
}

/// Whose signatures [`Store::add_signatures`] extends.
pub enum SignatureTarget<'a> {
    Device(&'a UserId, &'a DeviceId),
    CrossSigning(&'a UserId, &'a str),
}
