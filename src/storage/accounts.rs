//! Users, devices, access tokens, profiles and registration tokens.
//!
//! Trees and keys:
//! - `users`: user id → [`UserRecord`]
//! - `devices`: user id, `0xff`, device id → [`DeviceRecord`]
//! - `access_tokens`: SHA-256 of the token (32 bytes) → [`TokenOwner`]; the token itself is
//!   never stored
//! - `profiles`: user id → JSON object of profile fields
//! - `registration_tokens`: token → [`RegistrationTokenRecord`]
//! - `login_tokens`: SHA-256 of an `m.login.token` token (32 bytes) → [`LoginTokenRecord`];
//!   like access tokens, the token itself is never stored

use std::collections::BTreeMap;

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{
    Result, StorageError, Store, abort, composite_key, decode, encode, flatten, prefix_of, tree::Transact,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// PHC-format argon2id hash; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: u64,
    /// Shadow-banned by an administrator: the user's sends are answered but go nowhere.
    /// Absent from records written before shadow bans existed.
    #[serde(default)]
    pub shadow_banned: bool,
    /// Deactivated with erasure (`erase`): the user asked to be forgotten.
    #[serde(default)]
    pub erased: bool,
}

impl UserRecord {
    /// An active account's record.
    pub fn new(password_hash: Option<String>, admin: bool, created_ts: u64) -> Self {
        Self { password_hash, admin, deactivated: false, created_ts, shadow_banned: false, erased: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub display_name: Option<String>,
    /// Hex SHA-256 of the device's current access token, so the token can be revoked with
    /// the device.
    pub token_hash: Option<String>,
    pub created_ts: u64,
    pub last_seen_ts: Option<u64>,
    pub last_seen_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationTokenRecord {
    /// How many registrations the token allows in total; `None` for unlimited.
    pub uses_allowed: Option<u32>,
    /// Registrations completed with it.
    pub completed: u32,
    /// Milliseconds since the epoch after which it is refused.
    pub expiry_time: Option<u64>,
    pub created_ts: u64,
}

impl RegistrationTokenRecord {
    pub fn is_usable(&self, now_ms: u64) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.completed < allowed)
            && self.expiry_time.is_none_or(|expiry| now_ms < expiry)
    }
}

/// A single-use login token (`m.login.token`) not spent yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginTokenRecord {
    pub user_id: OwnedUserId,
    /// Milliseconds since the epoch from which it is refused.
    pub expires_ts: u64,
}

/// A device to create together with a login.
pub struct NewDevice {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub token_hash: [u8; 32],
    pub ip: Option<String>,
    pub now_ms: u64,
}

#[derive(Debug)]
pub enum CreateUserError {
    UserExists,
    RegistrationTokenInvalid,
    Storage(StorageError),
}

impl From<StorageError> for CreateUserError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

fn device_key(user_id: &UserId, device_id: &DeviceId) -> Vec<u8> {
    composite_key(&[user_id.as_bytes(), device_id.as_bytes()])
}

/// Inserts a device and its token inside a transaction, revoking the token the device had.
fn put_device(
    devices: &TransactionalTree,
    tokens: &TransactionalTree,
    user_id: &UserId,
    device: &NewDevice,
) -> std::result::Result<(), ConflictableTransactionError<StorageError>> {
    let key = device_key(user_id, &device.device_id);
    let existing: Option<DeviceRecord> = match devices.get(&key)? {
        Some(bytes) => Some(decode("device", &bytes).or_else(abort)?),
        None => None,
    };
    if let Some(old_hash) = existing.as_ref().and_then(|d| d.token_hash.as_deref())
        && let Ok(old) = hex::decode(old_hash)
    {
        tokens.remove(old)?;
    }
    let record = DeviceRecord {
        // The spec ignores `initial_device_display_name` for a device that already exists.
        display_name: match &existing {
            Some(existing) => existing.display_name.clone(),
            None => device.display_name.clone(),
        },
        token_hash: Some(hex::encode(device.token_hash)),
        created_ts: existing.as_ref().map_or(device.now_ms, |d| d.created_ts),
        last_seen_ts: Some(device.now_ms),
        last_seen_ip: device.ip.clone(),
    };
    devices.insert(key, encode(&record))?;
    let owner = TokenOwner { user_id: user_id.to_owned(), device_id: device.device_id.clone() };
    tokens.insert(&device.token_hash[..], encode(&owner))?;
    Ok(())
}

/// Removes devices and revokes their tokens inside a transaction; unknown ids are ignored.
fn remove_devices_tx(
    devices: &TransactionalTree,
    tokens: &TransactionalTree,
    user_id: &UserId,
    device_ids: &[OwnedDeviceId],
) -> std::result::Result<(), ConflictableTransactionError<StorageError>> {
    for device_id in device_ids {
        if let Some(bytes) = devices.remove(device_key(user_id, device_id))? {
            let record: DeviceRecord = decode("device", &bytes).or_else(abort)?;
            if let Some(hash) = record.token_hash.and_then(|h| hex::decode(h).ok()) {
                tokens.remove(hash)?;
            }
        }
    }
    Ok(())
}

/// Lifts a transaction error with a storage abort into one with a wider abort type.
fn widen<E: From<StorageError>>(
    e: ConflictableTransactionError<StorageError>,
) -> ConflictableTransactionError<E> {
    match e {
        ConflictableTransactionError::Abort(e) => ConflictableTransactionError::Abort(e.into()),
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
        ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
    }
}

impl Store {
    /// Creates a user (and, unless `device` is `None`, its first device) atomically. With a
    /// registration token, the token is checked and its use counted in the same transaction.
    pub async fn create_user(
        &self,
        user_id: &UserId,
        record: &UserRecord,
        profile: &BTreeMap<String, JsonValue>,
        device: Option<&NewDevice>,
        registration_token: Option<&str>,
    ) -> Result<(), CreateUserError> {
        let now = record.created_ts;
        flatten(
            (&self.users, &self.devices, &self.access_tokens, &self.profiles, &self.registration_tokens)
                .transaction(|(users, devices, tokens, profiles, reg_tokens)| {
                    if users.get(user_id.as_bytes())?.is_some() {
                        return abort(CreateUserError::UserExists);
                    }
                    if let Some(token) = registration_token {
                        let mut reg: RegistrationTokenRecord = match reg_tokens.get(token.as_bytes())? {
                            Some(bytes) => decode("registration token", &bytes)
                                .map_err(|e| ConflictableTransactionError::Abort(e.into()))?,
                            None => return abort(CreateUserError::RegistrationTokenInvalid),
                        };
                        if !reg.is_usable(now) {
                            return abort(CreateUserError::RegistrationTokenInvalid);
                        }
                        reg.completed += 1;
                        reg_tokens.insert(token.as_bytes(), encode(&reg))?;
                    }
                    users.insert(user_id.as_bytes(), encode(record))?;
                    profiles.insert(user_id.as_bytes(), encode(profile))?;
                    if let Some(device) = device {
                        put_device(devices, tokens, user_id, device).map_err(widen)?;
                    }
                    Ok(())
                }),
        )?;
        self.durable().await?;
        Ok(())
    }

    pub fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        self.users.get(user_id.as_bytes())?.map(|b| decode("user", &b)).transpose()
    }

    pub fn users(&self) -> Result<Vec<(OwnedUserId, UserRecord)>> {
        self.users
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let id = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|s| UserId::parse(s).ok())
                    .ok_or_else(|| StorageError::Corrupt("user key".to_owned()))?;
                Ok((id, decode("user", &value)?))
            })
            .collect()
    }

    /// Applies `change` to a user record; `false` when there is no such user.
    pub async fn update_user(&self, user_id: &UserId, change: impl Fn(&mut UserRecord)) -> Result<bool> {
        let updated = flatten(self.users.transaction(|users| {
            let Some(bytes) = users.get(user_id.as_bytes())? else { return Ok(false) };
            let mut record: UserRecord = decode("user", &bytes).or_else(abort)?;
            change(&mut record);
            users.insert(user_id.as_bytes(), encode(&record))?;
            Ok(true)
        }))?;
        self.durable().await?;
        Ok(updated)
    }

    /// Marks the user deactivated (and `erased` if asked) and drops its password, devices,
    /// tokens and profile, all in one transaction. `false` when there is no such user.
    pub async fn deactivate_user(&self, user_id: &UserId, erased: bool) -> Result<bool> {
        let device_ids: Vec<OwnedDeviceId> = self.devices(user_id)?.into_iter().map(|(id, _)| id).collect();
        let existed =
            flatten((&self.users, &self.devices, &self.access_tokens, &self.profiles).transaction(
                |(users, devices, tokens, profiles)| {
                    let Some(bytes) = users.get(user_id.as_bytes())? else { return Ok(false) };
                    let mut record: UserRecord = decode("user", &bytes).or_else(abort)?;
                    record.deactivated = true;
                    record.erased |= erased;
                    record.password_hash = None;
                    users.insert(user_id.as_bytes(), encode(&record))?;
                    remove_devices_tx(devices, tokens, user_id, &device_ids)?;
                    profiles.insert(user_id.as_bytes(), encode(&BTreeMap::<String, JsonValue>::new()))?;
                    Ok(true)
                },
            ))?;
        self.forget_device_data(user_id, &device_ids).await?;
        self.durable().await?;
        Ok(existed)
    }

    /// Adds a device with a fresh token; an existing device of that id keeps its name, and its
    /// previous token stops working.
    pub async fn add_device(&self, user_id: &UserId, device: &NewDevice) -> Result<()> {
        flatten(
            (&self.devices, &self.access_tokens)
                .transaction(|(devices, tokens)| put_device(devices, tokens, user_id, device)),
        )?;
        self.durable().await
    }

    pub fn token_owner(&self, token_hash: &[u8; 32]) -> Result<Option<TokenOwner>> {
        self.access_tokens.get(token_hash)?.map(|b| decode("access token", &b)).transpose()
    }

    pub fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceRecord>> {
        self.devices.get(device_key(user_id, device_id))?.map(|b| decode("device", &b)).transpose()
    }

    pub fn devices(&self, user_id: &UserId) -> Result<Vec<(OwnedDeviceId, DeviceRecord)>> {
        let prefix = prefix_of(user_id.as_bytes());
        self.devices
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                let id = std::str::from_utf8(&key[prefix.len()..])
                    .map_err(|_| StorageError::Corrupt("device key".to_owned()))?;
                Ok((id.into(), decode("device", &value)?))
            })
            .collect()
    }

    /// Renames a device; `false` when it does not exist.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: String,
    ) -> Result<bool> {
        let key = device_key(user_id, device_id);
        let renamed = flatten(self.devices.transaction(|devices| {
            let Some(bytes) = devices.get(&key)? else { return Ok(false) };
            let mut record: DeviceRecord = decode("device", &bytes).or_else(abort)?;
            record.display_name = Some(display_name.clone());
            devices.insert(key.as_slice(), encode(&record))?;
            Ok(true)
        }))?;
        self.durable().await?;
        Ok(renamed)
    }

    /// Removes the given devices and revokes their tokens. Unknown ids are ignored.
    pub async fn remove_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> Result<()> {
        flatten(
            (&self.devices, &self.access_tokens)
                .transaction(|(devices, tokens)| remove_devices_tx(devices, tokens, user_id, device_ids)),
        )?;
        self.forget_device_data(user_id, device_ids).await
    }

    /// A removed device's keys, messages and pushers go with it, and the user's device list
    /// changed.
    async fn forget_device_data(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> Result<()> {
        for device in device_ids {
            self.remove_device_e2ee(user_id, device)?;
            self.remove_device_pushers(user_id, device).await?;
        }
        self.mark_key_change(user_id).await?;
        Ok(())
    }

    /// Removes every device of the user except `keep`.
    pub async fn remove_devices_except(&self, user_id: &UserId, keep: Option<&DeviceId>) -> Result<()> {
        let doomed: Vec<OwnedDeviceId> = self
            .devices(user_id)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| Some(id.as_ref()) != keep)
            .collect();
        self.remove_devices(user_id, &doomed).await
    }

    pub fn profile(&self, user_id: &UserId) -> Result<Option<BTreeMap<String, JsonValue>>> {
        self.profiles.get(user_id.as_bytes())?.map(|b| decode("profile", &b)).transpose()
    }

    /// Sets (`Some`) or removes (`None`) one profile field.
    pub async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: Option<JsonValue>,
    ) -> Result<()> {
        flatten(self.profiles.transaction(|profiles| {
            let mut profile: BTreeMap<String, JsonValue> = match profiles.get(user_id.as_bytes())? {
                Some(bytes) => decode("profile", &bytes).or_else(abort)?,
                None => BTreeMap::new(),
            };
            match &value {
                Some(value) => profile.insert(field.to_owned(), value.clone()),
                None => profile.remove(field),
            };
            profiles.insert(user_id.as_bytes(), encode(&profile))?;
            Ok(())
        }))?;
        self.durable().await
    }

    /// Stores a new registration token; `false` if the token already exists.
    pub async fn create_registration_token(
        &self,
        token: &str,
        record: &RegistrationTokenRecord,
    ) -> Result<bool> {
        let created = self
            .registration_tokens
            .compare_and_swap(token.as_bytes(), None as Option<&[u8]>, Some(encode(record)))?
            .is_ok();
        self.durable().await?;
        Ok(created)
    }

    pub fn registration_token(&self, token: &str) -> Result<Option<RegistrationTokenRecord>> {
        self.registration_tokens.get(token.as_bytes())?.map(|b| decode("registration token", &b)).transpose()
    }

    pub fn registration_tokens(&self) -> Result<Vec<(String, RegistrationTokenRecord)>> {
        self.registration_tokens
            .iter()
            .map(|item| {
                let (key, value) = item?;
                Ok((String::from_utf8_lossy(&key).into_owned(), decode("registration token", &value)?))
            })
            .collect()
    }

    /// Applies `change` to a registration token and returns it changed; `None` if there is
    /// no such token.
    pub async fn update_registration_token(
        &self,
        token: &str,
        change: impl Fn(&mut RegistrationTokenRecord),
    ) -> Result<Option<RegistrationTokenRecord>> {
        let updated = flatten(self.registration_tokens.transaction(|tokens| {
            let Some(bytes) = tokens.get(token.as_bytes())? else { return Ok(None) };
            let mut record: RegistrationTokenRecord = decode("registration token", &bytes).or_else(abort)?;
            change(&mut record);
            tokens.insert(token.as_bytes(), encode(&record))?;
            Ok(Some(record))
        }))?;
        self.durable().await?;
        Ok(updated)
    }

    /// Deletes a registration token; `false` if there was none.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let existed = self.registration_tokens.remove(token.as_bytes())?.is_some();
        self.durable().await?;
        Ok(existed)
    }
}

impl Store {
    /// Stores a new login token, and forgets those that expired before `now_ms`: they live
    /// minutes, so the tree holds only the last few minutes' tokens and the sweep is short.
    pub async fn add_login_token(
        &self,
        token_hash: &[u8; 32],
        record: &LoginTokenRecord,
        now_ms: u64,
    ) -> Result<()> {
        for item in self.login_tokens.iter() {
            let (key, value) = item?;
            let old: LoginTokenRecord = decode("login token", &value)?;
            if old.expires_ts <= now_ms {
                self.login_tokens.remove(key)?;
            }
        }
        self.login_tokens.insert(&token_hash[..], encode(record))?;
        self.durable().await
    }

    /// Removes a login token and returns what it was, so that two logins racing with the
    /// same token cannot both have it (sled's `remove` is atomic).
    pub async fn take_login_token(&self, token_hash: &[u8; 32]) -> Result<Option<LoginTokenRecord>> {
        let Some(bytes) = self.login_tokens.remove(&token_hash[..])? else { return Ok(None) };
        self.durable().await?;
        Ok(Some(decode("login token", &bytes)?))
    }
}
