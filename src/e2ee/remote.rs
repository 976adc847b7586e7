//! End-to-end encryption with users of other servers: their device keys and one-time keys
//! are asked of their servers, and to-device messages for them go out as EDUs. Each
//! server that fails is reported under `failures`, as `/keys/query` and `/keys/claim`
//! specify, and the rest of the answer stands.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId,
    api::federation::keys::{claim_keys, get_keys},
};
use serde_json::{Value as JsonValue, json};

use super::{ClaimedKeys, E2ee, QueriedKeys};
use crate::error::Result;

/// Groups what is wanted of other servers' users by server.
fn by_server<T>(
    wanted: &BTreeMap<OwnedUserId, T>,
    own: &ServerName,
) -> BTreeMap<OwnedServerName, Vec<OwnedUserId>> {
    let mut servers: BTreeMap<OwnedServerName, Vec<OwnedUserId>> = BTreeMap::new();
    for user in wanted.keys().filter(|user| user.server_name() != own) {
        servers.entry(user.server_name().to_owned()).or_default().push(user.clone());
    }
    servers
}

fn failure(e: impl std::fmt::Display) -> JsonValue {
    json!({"errcode": "M_UNAVAILABLE", "error": e.to_string()})
}

fn parse<T: serde::de::DeserializeOwned>(raw: &ruma::serde::Raw<impl Sized>) -> Option<T> {
    serde_json::from_str(raw.json().get()).ok()
}

impl E2ee {
    /// Adds other servers' users' keys to a `/keys/query` answer.
    pub(super) async fn query_remote(
        &self,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        keys: &mut QueriedKeys,
    ) {
        for (server, users) in by_server(wanted, &self.server_name) {
            let request = get_keys::v1::Request::new(
                users.iter().map(|user| (user.clone(), wanted[user].clone())).collect(),
            );
            let response = match self.federation.client.send(&server, request).await {
                Ok(response) => response,
                Err(e) => {
                    keys.failures.insert(server.to_string(), failure(e));
                    continue;
                }
            };
            // A server answers for its own users only.
            let ours = |user: &UserId| user.server_name() == server;
            for (user, devices) in response.device_keys.into_iter().filter(|(user, _)| ours(user)) {
                let devices = devices.into_iter().filter_map(|(id, raw)| Some((id, parse(&raw)?))).collect();
                keys.device_keys.insert(user, devices);
            }
            for (user, raw) in response.master_keys.into_iter().filter(|(user, _)| ours(user)) {
                keys.master_keys.extend(parse(&raw).map(|key| (user, key)));
            }
            for (user, raw) in response.self_signing_keys.into_iter().filter(|(user, _)| ours(user)) {
                keys.self_signing_keys.extend(parse(&raw).map(|key| (user, key)));
            }
        }
    }

    /// Claims one-time keys of other servers' users for a `/keys/claim` answer.
    pub(super) async fn claim_remote(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
        claimed: &mut ClaimedKeys,
        failures: &mut BTreeMap<String, JsonValue>,
    ) {
        for (server, users) in by_server(wanted, &self.server_name) {
            let claims: claim_keys::v1::OneTimeKeyClaims = users
                .iter()
                .map(|user| {
                    let devices = wanted[user]
                        .iter()
                        .map(|(device, algorithm)| {
                            (device.clone(), OneTimeKeyAlgorithm::from(algorithm.as_str()))
                        })
                        .collect();
                    (user.clone(), devices)
                })
                .collect();
            let response =
                match self.federation.client.send(&server, claim_keys::v1::Request::new(claims)).await {
                    Ok(response) => response,
                    Err(e) => {
                        failures.insert(server.to_string(), failure(e));
                        continue;
                    }
                };
            for (user, devices) in
                response.one_time_keys.into_iter().filter(|(user, _)| user.server_name() == server)
            {
                let devices = devices
                    .into_iter()
                    .map(|(device, keys)| {
                        let keys = keys
                            .into_iter()
                            .filter_map(|(id, raw)| Some((id.to_string(), parse(&raw)?)))
                            .collect();
                        (device, keys)
                    })
                    .collect();
                claimed.insert(user, devices);
            }
        }
    }

    /// Queues to-device messages for other servers' users, one EDU per server, durable
    /// before this returns. `message_id` is the sender's transaction id, so a retried EDU
    /// is dropped by the receiver.
    pub(super) async fn send_to_device_remote(
        &self,
        sender: &UserId,
        message_id: &str,
        kind: &str,
        targets: &BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<()> {
        for (server, users) in by_server(targets, &self.server_name) {
            let destinations: BTreeSet<OwnedServerName> = self.outbox.remote([&*server]);
            if destinations.is_empty() {
                continue;
            }
            let messages: BTreeMap<&OwnedUserId, &BTreeMap<String, JsonValue>> =
                users.iter().map(|user| (user, &targets[user])).collect();
            let edu = json!({"edu_type": "m.direct_to_device", "content": {
                "sender": sender, "type": kind, "message_id": format!("{sender}/{message_id}"),
                "messages": messages,
            }});
            self.outbox.send_edu(destinations, edu).await?;
        }
        Ok(())
    }
}
