//! End-to-end encryption plumbing (spec: "End-to-End Encryption"). The server stores keys
//! as uploaded, hands out one-time keys, relays to-device messages and tells clients whose
//! devices changed. Its only cryptography is checking the signatures users upload for
//! their keys (`ruma::signatures`), so nobody can add or overwrite another's.

mod backup;
mod device_lists;
mod remote;
mod to_device;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ruma::{DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, UInt, UserId};
use serde_json::{Value as JsonValue, json};

pub use backup::{BackedUpKey, BackupVersion};
pub use device_lists::DeviceListChanges;
pub use to_device::{TO_DEVICE_PER_SYNC, ToDeviceBatch};

use crate::{
    accounts::Accounts,
    appservices::Appservices,
    error::{Error, Result},
    federation::Federation,
    notifier::Notifier,
    outbox::Outbox,
    storage::{ClaimedKey, FallbackKey, SignatureTarget, Store},
};

/// The cross-signing key kinds, as stored.
pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

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

/// What every sync tells a device of its keys; see [`E2ee::key_counts`].
pub struct KeyCounts {
    pub one_time: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    pub unused_fallback: Vec<OneTimeKeyAlgorithm>,
}

/// A device as another server sees it.
pub struct DeviceForServer {
    pub device_id: OwnedDeviceId,
    pub keys: JsonValue,
    pub display_name: Option<String>,
}

/// Claimed one-time keys: user → device → `algorithm:key_id` → key.
pub type ClaimedKeys = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<String, JsonValue>>>;

pub struct E2ee {
    store: Arc<Store>,
    notifier: Arc<Notifier>,
    server_name: OwnedServerName,
    /// Tells other servers in our users' rooms when their devices or keys change.
    outbox: Arc<Outbox>,
    /// Asks other servers for their users' keys.
    federation: Arc<Federation>,
    /// Whose devices exist, and their names.
    accounts: Arc<Accounts>,
    /// Bridges that receive their users' to-device messages (MSC4203).
    appservices: Arc<Appservices>,
}

fn split_key_id(full: &str) -> Result<(String, String)> {
    full.split_once(':')
        .map(|(algorithm, id)| (algorithm.to_owned(), id.to_owned()))
        .ok_or_else(|| Error::BadJson(format!("key id {full:?} is not algorithm:id")))
}

impl E2ee {
    pub fn new(
        store: Arc<Store>,
        notifier: Arc<Notifier>,
        server_name: OwnedServerName,
        outbox: Arc<Outbox>,
        federation: Arc<Federation>,
        accounts: Arc<Accounts>,
        appservices: Arc<Appservices>,
    ) -> Self {
        Self { store, notifier, server_name, outbox, federation, accounts, appservices }
    }

    /// Users who share a joined room with `user`, `user` included.
    fn room_peers(&self, user: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        Ok(self.store.room_peers(user)?)
    }

    /// Another server says one of its users changed devices or keys: our users who share a
    /// room with them see it in `device_lists.changed` and query the keys again.
    pub async fn remote_keys_changed(&self, user: &UserId) -> Result<()> {
        self.key_changed(user).await
    }

    /// Records a change to `user`'s devices or keys and wakes everyone who tracks them.
    async fn key_changed(&self, user: &UserId) -> Result<()> {
        let position = self.store.mark_key_change(user).await?;
        let peers = self.room_peers(user)?;
        self.notifier.notify(peers.iter().map(|u| &**u), position);
        if user.server_name() == self.server_name {
            // Other servers re-fetch the whole list (`/user/devices`) on an update whose
            // `prev_id` they do not know, which an empty one never is: simple and always right.
            let servers = self.outbox.remote(peers.iter().map(|peer| peer.server_name()));
            let device = self.store.devices(user)?.into_iter().next().map(|(id, _)| id);
            let edu = json!({"edu_type": "m.device_list_update", "content": {
                "user_id": user, "device_id": device.as_ref().map_or("", |d| d.as_str()),
                "stream_id": position, "prev_id": [],
            }});
            self.outbox.send_edu(servers, edu).await?;
        }
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

    /// A device's unclaimed one-time keys by algorithm and its unused fallback key types, as
    /// every sync reports them. Clients take a missing `signed_curve25519` count as "the
    /// server has no keys for me" and a missing list as "no fallback key support", so the
    /// count is there even at zero and the list even when empty.
    pub fn key_counts(&self, user: &UserId, device: &DeviceId) -> Result<KeyCounts> {
        let mut one_time: BTreeMap<OneTimeKeyAlgorithm, UInt> = self
            .store
            .one_time_key_counts(user, device)?
            .into_iter()
            .map(|(algorithm, n)| (algorithm.as_str().into(), UInt::new_saturating(n)))
            .collect();
        one_time.entry(OneTimeKeyAlgorithm::SignedCurve25519).or_insert(UInt::MIN);
        let unused_fallback =
            self.store.unused_fallback_algorithms(user, device)?.iter().map(|a| a.as_str().into()).collect();
        Ok(KeyCounts { one_time, unused_fallback })
    }

    /// `/keys/query` from a local user: keys of local users, and of other servers' users as
    /// their servers answer (a server that does not is listed under `failures`).
    pub async fn query_keys(
        &self,
        requester: &UserId,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<QueriedKeys> {
        let mut keys = self.query_local(Some(requester), &wanted)?;
        self.query_remote(&wanted, &mut keys).await;
        Ok(keys)
    }

    /// `/keys/query` for local users (others are skipped). Each device's display name goes
    /// into `unsigned`; the requester (`None`: another server) alone sees their own
    /// user-signing key.
    pub fn query_local(
        &self,
        requester: Option<&UserId>,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<QueriedKeys> {
        let mut result = QueriedKeys::default();
        for (user, devices) in wanted {
            if user.server_name() != self.server_name {
                continue;
            }
            let known = self.accounts.device_names(user);
            let mut keys = BTreeMap::new();
            for (device, name) in known {
                if !devices.is_empty() && !devices.contains(&device) {
                    continue;
                }
                if let Some(mut device_keys) = self.store.device_keys(user, &device)? {
                    if let Some(name) = name {
                        device_keys["unsigned"] = json!({"device_display_name": name});
                    }
                    keys.insert(device, device_keys);
                }
            }
            result.device_keys.insert(user.clone(), keys);
            if let Some(key) = self.store.cross_signing_key(user, MASTER)? {
                result.master_keys.insert(user.clone(), key);
            }
            if let Some(key) = self.store.cross_signing_key(user, SELF_SIGNING)? {
                result.self_signing_keys.insert(user.clone(), key);
            }
            // A user-signing key is private to its owner.
            if requester == Some(&**user)
                && let Some(key) = self.store.cross_signing_key(user, USER_SIGNING)?
            {
                result.user_signing_keys.insert(user.clone(), key);
            }
        }
        Ok(result)
    }

    /// `/keys/claim` from a local user: one key per requested device and algorithm, where
    /// there is one, here or on the users' servers (those that fail are in the failures).
    pub async fn claim_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<(ClaimedKeys, BTreeMap<String, JsonValue>)> {
        let mut claimed = self.claim_local(wanted.clone()).await?;
        let mut failures = BTreeMap::new();
        self.claim_remote(&wanted, &mut claimed, &mut failures).await;
        Ok((claimed, failures))
    }

    /// `/keys/claim` for local users (others are skipped): one key per requested device and
    /// algorithm, where there is one.
    pub async fn claim_local(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<ClaimedKeys> {
        let mut claimed = BTreeMap::new();
        for (user, devices) in wanted {
            if user.server_name() != self.server_name {
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
        Ok(claimed)
    }

    /// A local user's devices with their keys, and the position of the latest change, for
    /// another server (`/user/devices`).
    pub fn devices_for_server(&self, user: &UserId) -> Result<(u64, Vec<DeviceForServer>)> {
        let mut devices = Vec::new();
        for (device, record) in self.store.devices(user)? {
            if let Some(keys) = self.store.device_keys(user, &device)? {
                devices.push(DeviceForServer { device_id: device, keys, display_name: record.display_name });
            }
        }
        Ok((self.store.last_key_change(user)?, devices))
    }

    /// A user's master and self-signing keys, as others may see them.
    pub fn public_cross_signing_keys(&self, user: &UserId) -> Result<(Option<JsonValue>, Option<JsonValue>)> {
        Ok((self.store.cross_signing_key(user, MASTER)?, self.store.cross_signing_key(user, SELF_SIGNING)?))
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

    /// `/keys/signatures/upload`: adds the uploader's signatures to stored keys. Returns
    /// failures by user and key id.
    ///
    /// The signed object must be the stored key (apart from `signatures` and `unsigned`),
    /// and each signature must verify with one of the uploader's own keys: their devices or
    /// cross-signing keys may sign their own keys, and their user-signing key may sign
    /// another user's master key. Nothing else is stored, so nobody can overwrite or forge
    /// the signatures others rely on.
    pub async fn upload_signatures(
        &self,
        uploader: &UserId,
        signed: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>> {
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>> = BTreeMap::new();
        for (user, objects) in signed {
            let mut changed = false;
            for (key_id, object) in objects {
                let outcome = match self.signature_target(&user, &key_id)? {
                    None => Err(("M_NOT_FOUND", "no such key to sign".to_owned())),
                    Some((kind, device)) => {
                        let target = match &device {
                            Some(device) => SignatureTarget::Device(&user, device),
                            None => SignatureTarget::CrossSigning(&user, kind),
                        };
                        match self.checked_signatures(uploader, &user, kind, &target, &object)? {
                            Ok(signatures) => {
                                self.store.add_signatures(target, &signatures).await?;
                                Ok(())
                            }
                            Err(why) => Err(("M_INVALID_SIGNATURE", why)),
                        }
                    }
                };
                match outcome {
                    Ok(()) => changed = true,
                    Err((errcode, error)) => {
                        failures
                            .entry(user.clone())
                            .or_default()
                            .insert(key_id, json!({"errcode": errcode, "error": error}));
                    }
                }
            }
            if changed {
                self.key_changed(&user).await?;
            }
        }
        Ok(failures)
    }

    /// The uploader's signatures on `object` as `{uploader: {key id: signature}}`, once
    /// checked against the stored key they sign, or why they are refused.
    fn checked_signatures(
        &self,
        uploader: &UserId,
        owner: &UserId,
        kind: &str,
        target: &SignatureTarget<'_>,
        object: &JsonValue,
    ) -> Result<std::result::Result<JsonValue, String>> {
        let stored = match target {
            SignatureTarget::Device(user, device) => self.store.device_keys(user, device)?,
            SignatureTarget::CrossSigning(user, kind) => self.store.cross_signing_key(user, kind)?,
        };
        let Some(stored) = stored else { return Ok(Err("no such key to sign".to_owned())) };
        let signable = |value: &JsonValue| {
            let mut value = value.clone();
            if let Some(object) = value.as_object_mut() {
                object.remove("signatures");
                object.remove("unsigned");
            }
            value
        };
        if signable(object) != signable(&stored) {
            return Ok(Err("the signed object is not the key stored under this id".to_owned()));
        }
        let Some(signatures) = object["signatures"][uploader.as_str()].as_object().filter(|s| !s.is_empty())
        else {
            return Ok(Err(format!("the object carries no signature by {uploader}")));
        };
        let canonical = match serde_json::from_value::<ruma::CanonicalJsonObject>(signable(&stored))
            .map_err(|e| e.to_string())
            .and_then(|o| {
                ruma::signatures::to_canonical_json_string_for_signing(&o).map_err(|e| e.to_string())
            }) {
            Ok(canonical) => canonical,
            Err(e) => return Ok(Err(format!("the key cannot be signed: {e}"))),
        };
        for (signing_key_id, signature) in signatures {
            let Some(public_key) = self.signing_key_of(uploader, owner, kind, signing_key_id)? else {
                return Ok(Err(format!(
                    "{signing_key_id} is not a key of {uploader} that may sign this key"
                )));
            };
            let verified = signature.as_str().is_some_and(|signature| {
                let decode = |b: &str| ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(b).ok();
                match (decode(&public_key), decode(signature)) {
                    (Some(public_key), Some(signature)) => ruma::signatures::verify_canonical_json_bytes(
                        &ruma::SigningKeyAlgorithm::Ed25519,
                        public_key.as_bytes(),
                        signature.as_bytes(),
                        canonical.as_bytes(),
                    )
                    .is_ok(),
                    _ => false,
                }
            });
            if !verified {
                return Ok(Err(format!("the signature by {signing_key_id} does not verify")));
            }
        }
        Ok(Ok(json!({uploader.as_str(): signatures})))
    }

    /// The public key behind `signing_key_id` (`ed25519:…`) if it is one of `uploader`'s
    /// keys allowed to sign `owner`'s key of kind `kind`.
    fn signing_key_of(
        &self,
        uploader: &UserId,
        owner: &UserId,
        kind: &str,
        signing_key_id: &str,
    ) -> Result<Option<String>> {
        if !signing_key_id.starts_with("ed25519:") {
            return Ok(None);
        }
        let in_key = |key: &JsonValue| key["keys"][signing_key_id].as_str().map(str::to_owned);
        if uploader != owner {
            // Another user's identity is vouched for by signing their master key with one's
            // user-signing key, and in no other way.
            if kind != MASTER {
                return Ok(None);
            }
            return Ok(self.store.cross_signing_key(uploader, USER_SIGNING)?.as_ref().and_then(in_key));
        }
        for kind in [MASTER, SELF_SIGNING, USER_SIGNING] {
            if let Some(public_key) = self.store.cross_signing_key(uploader, kind)?.as_ref().and_then(in_key)
            {
                return Ok(Some(public_key));
            }
        }
        let device: OwnedDeviceId = signing_key_id["ed25519:".len()..].into();
        Ok(self.store.device_keys(uploader, &device)?.as_ref().and_then(in_key))
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

    /// Lifts a claimed-or-failed split key id, for handlers.
    pub fn parse_key_id(full: &str) -> Result<(String, String)> {
        split_key_id(full)
    }
}
