//! End-to-end encryption plumbing (spec: "End-to-End Encryption"). The server does no
//! cryptography here: it stores keys as uploaded, hands out one-time keys, relays
//! to-device messages and tells clients whose devices changed.

mod backup;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

pub use backup::BackupVersion;

use crate::{
    error::{Error, Result},
    storage::{ClaimedKey, FallbackKey, SignatureTarget, Store, ToDeviceMessage},
    sync::notifier::Notifier,
};

/// The cross-signing key kinds, as stored.
pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

/// To-device messages handed to one sync at most.
const TO_DEVICE_PER_SYNC: usize = 100;

/// A one-time or fallback key being uploaded: algorithm, key id, key JSON.
pub type UploadedKey = (String, String, JsonValue);

/// The keys `/keys/query` returns.
#[derive(Default)]
pub struct QueriedKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, JsonValue>>,
    pub master_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub self_signing_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub user_signing_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub failures: BTreeMap<String, JsonValue>,
}

/// Users whose devices a client should re-fetch, and users it no longer shares a room with.
#[derive(Default, Debug)]
pub struct DeviceListChanges {
    pub changed: BTreeSet<OwnedUserId>,
    pub left: BTreeSet<OwnedUserId>,
}

pub struct E2ee {
    store: Arc<Store>,
    notifier: Arc<Notifier>,
    server_name: OwnedServerName,
}

fn split_key_id(full: &str) -> Result<(String, String)> {
    full.split_once(':')
        .map(|(algorithm, id)| (algorithm.to_owned(), id.to_owned()))
        .ok_or_else(|| Error::BadJson(format!("key id {full:?} is not algorithm:id")))
}

impl E2ee {
    pub fn new(store: Arc<Store>, notifier: Arc<Notifier>, server_name: OwnedServerName) -> Self {
        Self { store, notifier, server_name }
    }

    /// Users who share a joined room with `user`, `user` included.
    fn room_peers(&self, user: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let mut peers = BTreeSet::from([user.to_owned()]);
        for (room, entry) in self.store.user_rooms(user)? {
            if entry.membership != "join" {
                continue;
            }
            for (member, membership) in self.store.memberships(&room)? {
                if membership == "join" {
                    peers.insert(member);
                }
            }
        }
        Ok(peers)
    }

    /// Records a change to `user`'s devices or keys and wakes everyone who tracks them.
    async fn key_changed(&self, user: &UserId) -> Result<()> {
        let position = self.store.mark_key_change(user).await?;
        let peers = self.room_peers(user)?;
        self.notifier.notify(peers.iter().map(|u| &**u), position);
        Ok(())
    }

    /// `/keys/upload`; returns the device's unclaimed one-time key counts.
    pub async fn upload_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<JsonValue>,
        one_time_keys: Vec<UploadedKey>,
        fallback_keys: Vec<UploadedKey>,
    ) -> Result<BTreeMap<String, u64>> {
        if let Some(keys) = device_keys {
            if keys["user_id"] != user.as_str() || keys["device_id"] != device.as_str() {
                return Err(Error::InvalidParam(
                    "device_keys must be for the uploading user and device".to_owned(),
                ));
            }
            if self.store.set_device_keys(user, device, &keys).await? {
                self.key_changed(user).await?;
            }
        }
        if !one_time_keys.is_empty() {
            self.store.add_one_time_keys(user, device, &one_time_keys).await?.map_err(Error::InvalidParam)?;
        }
        for (algorithm, key_id, key) in fallback_keys {
            self.store
                .set_fallback_key(user, device, &algorithm, &FallbackKey { key_id, key, used: false })
                .await?;
        }
        Ok(self.store.one_time_key_counts(user, device)?)
    }

    pub fn one_time_key_counts(&self, user: &UserId, device: &DeviceId) -> Result<BTreeMap<String, u64>> {
        Ok(self.store.one_time_key_counts(user, device)?)
    }

    pub fn unused_fallback_algorithms(&self, user: &UserId, device: &DeviceId) -> Result<Vec<String>> {
        Ok(self.store.unused_fallback_algorithms(user, device)?)
    }

    /// `/keys/query`. `device_names` gives each device's display name for `unsigned`.
    pub fn query(
        &self,
        requester: &UserId,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        device_names: impl Fn(&UserId) -> Vec<(OwnedDeviceId, Option<String>)>,
    ) -> Result<QueriedKeys> {
        let mut result = QueriedKeys::default();
        for (user, devices) in wanted {
            if user.server_name() != self.server_name {
                result.failures.insert(
                    user.server_name().to_string(),
                    json!({"errcode": "M_UNAVAILABLE", "error": "federation is not enabled yet"}),
                );
                continue;
            }
            let known = device_names(&user);
            let mut keys = BTreeMap::new();
            for (device, name) in known {
                if !devices.is_empty() && !devices.contains(&device) {
                    continue;
                }
                if let Some(mut device_keys) = self.store.device_keys(&user, &device)? {
                    if let Some(name) = name {
                        device_keys["unsigned"] = json!({"device_display_name": name});
                    }
                    keys.insert(device, device_keys);
                }
            }
            result.device_keys.insert(user.clone(), keys);
            if let Some(key) = self.store.cross_signing_key(&user, MASTER)? {
                result.master_keys.insert(user.clone(), key);
            }
            if let Some(key) = self.store.cross_signing_key(&user, SELF_SIGNING)? {
                result.self_signing_keys.insert(user.clone(), key);
            }
            // A user-signing key is private to its owner.
            if user == requester
                && let Some(key) = self.store.cross_signing_key(&user, USER_SIGNING)?
            {
                result.user_signing_keys.insert(user.clone(), key);
            }
        }
        Ok(result)
    }

    /// `/keys/claim`: one key per requested device and algorithm, where there is one.
    pub async fn claim(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<(
        BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<String, JsonValue>>>,
        BTreeMap<String, JsonValue>,
    )> {
        let mut claimed = BTreeMap::new();
        let mut failures = BTreeMap::new();
        for (user, devices) in wanted {
            if user.server_name() != self.server_name {
                failures.insert(
                    user.server_name().to_string(),
                    json!({"errcode": "M_UNAVAILABLE", "error": "federation is not enabled yet"}),
                );
                continue;
            }
            let mut by_device = BTreeMap::new();
            for (device, algorithm) in devices {
                if let Some(ClaimedKey { key_id, key }) =
                    self.store.claim_key(&user, &device, &algorithm).await?
                {
                    by_device.insert(device, BTreeMap::from([(format!("{algorithm}:{key_id}"), key)]));
                }
            }
            if !by_device.is_empty() {
                claimed.insert(user, by_device);
            }
        }
        Ok((claimed, failures))
    }

    /// Whether replacing the user's cross-signing keys with these needs user-interactive auth:
    /// not for the first upload, nor for re-uploading the same keys.
    pub fn signing_keys_need_auth(&self, user: &UserId, keys: &[(&str, &JsonValue)]) -> Result<bool> {
        if self.store.cross_signing_key(user, MASTER)?.is_none() {
            return Ok(false);
        }
        for (kind, key) in keys {
            if self.store.cross_signing_key(user, kind)?.as_ref() != Some(*key) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `/keys/device_signing/upload` once authorised.
    pub async fn upload_signing_keys(&self, user: &UserId, keys: &[(&str, &JsonValue)]) -> Result<()> {
        for (kind, key) in keys {
            if key["user_id"] != user.as_str() {
                return Err(Error::InvalidParam(format!("the {kind} key must belong to {user}")));
            }
        }
        self.store.set_cross_signing_keys(user, keys).await?;
        self.key_changed(user).await
    }

    /// `/keys/signatures/upload`: merges each object's signatures into the stored key it
    /// signs (a device of the user, or one of their cross-signing keys). Returns failures.
    pub async fn upload_signatures(
        &self,
        signed: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>> {
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>> = BTreeMap::new();
        for (user, objects) in signed {
            let mut changed = false;
            for (key_id, object) in objects {
                let signatures = object.get("signatures").cloned().unwrap_or_default();
                let target = self.signature_target(&user, &key_id)?;
                let stored = match &target {
                    Some((kind, None)) => {
                        self.store
                            .add_signatures(SignatureTarget::CrossSigning(&user, kind), &signatures)
                            .await?
                    }
                    Some((_, Some(device))) => {
                        self.store.add_signatures(SignatureTarget::Device(&user, device), &signatures).await?
                    }
                    None => false,
                };
                if stored {
                    changed = true;
                } else {
                    failures
                        .entry(user.clone())
                        .or_default()
                        .insert(key_id, json!({"errcode": "M_NOT_FOUND", "error": "no such key to sign"}));
                }
            }
            if changed {
                self.key_changed(&user).await?;
            }
        }
        Ok(failures)
    }

    /// Which stored key `key_id` names: a cross-signing key (by its public key) or a device.
    fn signature_target(
        &self,
        user: &UserId,
        key_id: &str,
    ) -> Result<Option<(&'static str, Option<OwnedDeviceId>)>> {
        for kind in [MASTER, SELF_SIGNING, USER_SIGNING] {
            if let Some(key) = self.store.cross_signing_key(user, kind)?
                && key["keys"].as_object().is_some_and(|keys| keys.values().any(|k| k == key_id))
            {
                return Ok(Some((kind, None)));
            }
        }
        let device: OwnedDeviceId = key_id.into();
        Ok(self.store.device_keys(user, &device)?.map(|_| ("device", Some(device))))
    }

    /// `/sendToDevice`. `targets` maps each user to device ids, or to `*` for all of them.
    pub async fn send_to_device(
        &self,
        sender: (&UserId, &DeviceId),
        txn_id: &str,
        kind: &str,
        targets: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
        devices_of: impl Fn(&UserId) -> Vec<OwnedDeviceId>,
    ) -> Result<()> {
        let mut messages = Vec::new();
        for (user, by_device) in targets {
            if user.server_name() != self.server_name {
                // Delivering to other servers arrives with federation.
                continue;
            }
            for (device, content) in by_device {
                let message = ToDeviceMessage { sender: sender.0.to_owned(), kind: kind.to_owned(), content };
                if device == "*" {
                    messages
                        .extend(devices_of(&user).into_iter().map(|d| (user.clone(), d, message.clone())));
                } else {
                    messages.push((user.clone(), device.into(), message));
                }
            }
        }
        if let Some(position) = self.store.queue_to_device(sender, txn_id, &messages).await? {
            let recipients: BTreeSet<&UserId> = messages.iter().map(|(u, _, _)| &**u).collect();
            self.notifier.notify(recipients, position);
        }
        Ok(())
    }

    /// The to-device messages a sync delivers, after dropping those an earlier sync already
    /// delivered (the client acknowledges them by syncing with a later `since`).
    pub fn to_device_for_sync(
        &self,
        user: &UserId,
        device: &DeviceId,
        since: Option<u64>,
        upto: u64,
    ) -> Result<Vec<JsonValue>> {
        if let Some(since) = since {
            self.store.delete_to_device_upto(user, device, since)?;
        }
        Ok(self
            .store
            .to_device_messages(user, device, since.unwrap_or(0), upto, TO_DEVICE_PER_SYNC)?
            .into_iter()
            .map(|(_, m)| json!({"sender": m.sender, "type": m.kind, "content": m.content}))
            .collect())
    }

    /// Whose device lists changed for `user` between two positions: peers whose keys changed,
    /// users newly sharing a room, and users no longer sharing any.
    pub fn device_list_changes(&self, user: &UserId, after: u64, upto: u64) -> Result<DeviceListChanges> {
        let peers = self.room_peers(user)?;
        let in_range = |position: u64| position > after && position <= upto;
        let mut changes = DeviceListChanges::default();
        for peer in &peers {
            if in_range(self.store.last_key_change(peer)?) {
                changes.changed.insert(peer.clone());
            }
        }
        for (room, entry) in self.store.user_rooms(user)? {
            let i_joined_recently = entry.membership == "join" && in_range(entry.position);
            let i_left_recently =
                matches!(entry.membership.as_str(), "leave" | "ban") && in_range(entry.position);
            for (member, membership) in self.store.membership_entries(&room)? {
                if member == user {
                    continue;
                }
                if entry.membership == "join"
                    && membership.membership == "join"
                    && (i_joined_recently || in_range(membership.position))
                {
                    changes.changed.insert(member.clone());
                }
                // Only someone who was joined can leave; an invite never shared keys.
                let member_left = matches!(membership.membership.as_str(), "leave" | "ban");
                let gone = i_left_recently || (member_left && in_range(membership.position));
                if gone && !peers.contains(&member) {
                    changes.left.insert(member);
                }
            }
        }
        Ok(changes)
    }

    /// `/keys/changes`: like the sync section, between two sync tokens.
    pub fn key_changes(&self, user: &UserId, from: u64, to: u64) -> Result<DeviceListChanges> {
        self.device_list_changes(user, from, to)
    }

    /// Lifts a claimed-or-failed split key id, for handlers.
    pub fn parse_key_id(full: &str) -> Result<(String, String)> {
        split_key_id(full)
    }
}
