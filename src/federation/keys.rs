//! Other servers' signing keys: fetched from `/_matrix/key/v2/server`, checked to be signed
//! by themselves, cached in the store until their `valid_until_ts`, and turned into the
//! key maps `ruma::signatures` verifies with. Our own key is answered without a request.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{
    CanonicalJsonObject, OwnedServerName, ServerName,
    api::federation::discovery::{ServerSigningKeys, get_server_keys},
    serde::{Base64, Raw},
    signatures::{PublicKeyMap, PublicKeySet, verify_json},
};

use super::client::{FederationClient, FederationError};
use crate::{
    now_ms,
    signing_key::SigningKey,
    storage::{CachedServerKeys, Store},
};

pub struct KeyRing {
    store: Arc<Store>,
    own: Arc<SigningKey>,
}

impl KeyRing {
    pub fn new(store: Arc<Store>, own: Arc<SigningKey>) -> Self {
        Self { store, own }
    }

    /// The key map for verifying what `servers` signed, fetching keys that are missing or
    /// expired. A server whose keys cannot be had is left out, so its signatures fail.
    pub async fn key_map(
        &self,
        client: &FederationClient,
        servers: &BTreeSet<OwnedServerName>,
    ) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        for server in servers {
            match self.keys_of(client, server).await {
                Ok(keys) => {
                    map.insert(server.to_string(), keys);
                }
                Err(e) => tracing::warn!(%server, error = %e, "cannot get the server's signing keys"),
            }
        }
        map
    }

    /// A server's current and old verify keys.
    pub async fn keys_of(
        &self,
        client: &FederationClient,
        server: &ServerName,
    ) -> Result<PublicKeySet, FederationError> {
        if server == client.server_name() {
            let mut own = PublicKeySet::new();
            own.insert(self.own.key_id(), Base64::new(self.own.pair().public_key().to_vec()));
            return Ok(own);
        }
        let keys = self.key_list(client, server).await?;
        key_set(&keys).ok_or_else(|| FederationError::Refused(format!("{server}: unreadable cached keys")))
    }

    /// A server's key list as it signed it: cached while valid, else fetched again, else
    /// (the server unreachable) the expired copy, whose keys still verify what was signed
    /// while they were valid. Also what a notary query is answered with.
    pub async fn key_list(
        &self,
        client: &FederationClient,
        server: &ServerName,
    ) -> Result<serde_json::Value, FederationError> {
        match self.store.server_keys(server).ok().flatten() {
            Some(cached) if cached.valid_until_ts > now_ms() => Ok(cached.keys),
            stale => match self.fetch(client, server).await {
                Ok(fresh) => Ok(fresh.keys),
                Err(e) => stale.map(|cached| cached.keys).ok_or(e),
            },
        }
    }

    async fn fetch(
        &self,
        client: &FederationClient,
        server: &ServerName,
    ) -> Result<CachedServerKeys, FederationError> {
        let response = client.send_unsigned(server, get_server_keys::v2::Request::new()).await?;
        let (keys, json) = check_key_list(server, &response.server_key).map_err(FederationError::Refused)?;
        let cached = CachedServerKeys { keys: json, valid_until_ts: keys.valid_until_ts.get().into() };
        if let Err(e) = self.store.store_server_keys(server, &cached) {
            tracing::warn!(%server, error = %e, "cannot cache the server's keys");
        }
        Ok(cached)
    }
}

/// A key list as a server published it (`/_matrix/key/v2/server`), checked to be for
/// `server` and signed by itself: the parsed keys and the JSON they were signed as.
pub fn check_key_list(
    server: &ServerName,
    raw: &Raw<ServerSigningKeys>,
) -> Result<(ServerSigningKeys, serde_json::Value), String> {
    let keys: ServerSigningKeys =
        raw.deserialize().map_err(|e| format!("{server}: malformed key list: {e}"))?;
    if keys.server_name != server {
        return Err(format!("{server} published keys for {}", keys.server_name));
    }
    let json: serde_json::Value = serde_json::from_str(raw.json().get()).map_err(|e| e.to_string())?;
    let object: CanonicalJsonObject = serde_json::from_value(json.clone())
        .map_err(|e| format!("{server}: key list is not canonical JSON: {e}"))?;
    let map = PublicKeyMap::from([(server.to_string(), key_set(&json).unwrap_or_default())]);
    verify_json(&map, &object).map_err(|e| format!("{server}: key list not signed by itself: {e}"))?;
    Ok((keys, json))
}

/// Key id → public key, from a key list's `verify_keys` and `old_verify_keys`.
fn key_set(keys: &serde_json::Value) -> Option<PublicKeySet> {
    let mut set = PublicKeySet::new();
    for field in ["verify_keys", "old_verify_keys"] {
        if let Some(entries) = keys[field].as_object() {
            for (id, entry) in entries {
                let key = Base64::parse(entry["key"].as_str()?).ok()?;
                set.insert(id.clone(), key);
            }
        }
    }
    Some(set)
}
