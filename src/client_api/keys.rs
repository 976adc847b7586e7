//! Encryption keys and to-device messages.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    UInt,
    api::client::{
        keys::{claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys},
        to_device::send_event_to_device,
    },
    encryption::OneTimeKey,
    serde::Raw,
};
use serde_json::Value as JsonValue;

use super::rooms::raw;
use crate::{
    e2ee::{E2ee, MASTER, SELF_SIGNING, USER_SIGNING, UploadedKey},
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    services::Services,
    sync::SyncToken,
};

pub fn routes(router: &mut Router) {
    router.ruma(upload);
    router.ruma(query);
    router.ruma(claim);
    router.ruma(changes);
    router.ruma(upload_signing);
    router.ruma(signatures);
    router.ruma_limited(RateLimitClass::ToDevice, to_device);
}

fn json<T>(raw: &Raw<T>) -> Result<JsonValue, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

fn uploaded(keys: &BTreeMap<ruma::OwnedOneTimeKeyId, Raw<OneTimeKey>>) -> Result<Vec<UploadedKey>, ApiError> {
    keys.iter()
        .map(|(id, key)| {
            let (algorithm, key_id) = E2ee::parse_key_id(id.as_str())?;
            Ok((algorithm, key_id, json(key)?))
        })
        .collect()
}

fn counts(counts: BTreeMap<String, u64>) -> BTreeMap<ruma::OneTimeKeyAlgorithm, UInt> {
    counts.into_iter().map(|(algorithm, n)| (algorithm.as_str().into(), UInt::new_saturating(n))).collect()
}

async fn upload(
    services: Arc<Services>,
    req: Req<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response, ApiError> {
    let body = req.body;
    let device_keys = body.device_keys.as_ref().map(json).transpose()?;
    let counts_now = services
        .e2ee
        .upload_keys(
            &req.auth.user_id,
            &req.auth.device_id,
            device_keys,
            uploaded(&body.one_time_keys)?,
            uploaded(&body.fallback_keys)?,
        )
        .await?;
    Ok(upload_keys::v3::Response::new(counts(counts_now)))
}

async fn query(
    services: Arc<Services>,
    req: Req<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response, ApiError> {
    let keys = services.e2ee.query_keys(&req.auth.user_id, req.body.device_keys).await?;
    let mut response = get_keys::v3::Response::new();
    response.failures = keys.failures;
    response.device_keys = keys
        .device_keys
        .into_iter()
        .map(|(user, devices)| (user, devices.into_iter().map(|(d, k)| (d, raw(k))).collect()))
        .collect();
    response.master_keys = keys.master_keys.into_iter().map(|(u, k)| (u, raw(k))).collect();
    response.self_signing_keys = keys.self_signing_keys.into_iter().map(|(u, k)| (u, raw(k))).collect();
    response.user_signing_keys = keys.user_signing_keys.into_iter().map(|(u, k)| (u, raw(k))).collect();
    Ok(response)
}

async fn claim(
    services: Arc<Services>,
    req: Req<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response, ApiError> {
    let wanted: BTreeMap<_, BTreeMap<_, String>> = req
        .body
        .one_time_keys
        .into_iter()
        .map(|(user, devices)| (user, devices.into_iter().map(|(d, a)| (d, a.to_string())).collect()))
        .collect();
    let (claimed, failures) = services.e2ee.claim_keys(wanted).await?;
    let one_time_keys = claimed
        .into_iter()
        .map(|(user, devices)| {
            let devices = devices
                .into_iter()
                .map(|(device, keys)| {
                    (
                        device,
                        keys.into_iter()
                            .filter_map(|(id, key)| Some((id.as_str().try_into().ok()?, raw(key))))
                            .collect(),
                    )
                })
                .collect();
            (user, devices)
        })
        .collect();
    let mut response = claim_keys::v3::Response::new(one_time_keys);
    response.failures = failures;
    Ok(response)
}

fn parse_token(token: &str, name: &str) -> Result<u64, ApiError> {
    SyncToken::parse(token)
        .map(|token| token.position)
        .ok_or_else(|| ApiError::invalid_param(format!("{name} is not a sync token from this server")))
}

async fn changes(
    services: Arc<Services>,
    req: Req<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response, ApiError> {
    let from = parse_token(&req.body.from, "from")?;
    let to = parse_token(&req.body.to, "to")?;
    let changes = services.e2ee.key_changes(&req.auth.user_id, from, to)?;
    Ok(get_key_changes::v3::Response::new(
        changes.changed.into_iter().collect(),
        changes.left.into_iter().collect(),
    ))
}

async fn upload_signing(
    services: Arc<Services>,
    req: Req<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response, ApiError> {
    let body = req.body;
    let mut keys = Vec::new();
    for (kind, key) in [
        (MASTER, &body.master_key),
        (SELF_SIGNING, &body.self_signing_key),
        (USER_SIGNING, &body.user_signing_key),
    ] {
        if let Some(key) = key {
            keys.push((kind, json(key)?));
        }
    }
    let borrowed: Vec<(&str, &JsonValue)> = keys.iter().map(|(k, v)| (*k, v)).collect();
    if services.e2ee.signing_keys_need_auth(&req.auth.user_id, &borrowed)? {
        services.accounts.authorize_with_password(&req.auth, body.auth).await?;
    }
    services.e2ee.upload_signing_keys(&req.auth.user_id, &borrowed).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

async fn signatures(
    services: Arc<Services>,
    req: Req<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response, ApiError> {
    let mut signed = BTreeMap::new();
    for (user, keys) in req.body.signed_keys {
        let mut objects = BTreeMap::new();
        for (key_id, object) in keys.iter() {
            let object: JsonValue =
                serde_json::from_str(object.get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
            objects.insert(key_id.to_owned(), object);
        }
        signed.insert(user, objects);
    }
    let failures = services.e2ee.upload_signatures(&req.auth.user_id, signed).await?;
    let mut response = upload_signatures::v3::Response::new();
    response.failures = failures
        .into_iter()
        .map(|(user, keys)| {
            (user, keys.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_value(v).ok()?))).collect())
        })
        .collect();
    Ok(response)
}

async fn to_device(
    services: Arc<Services>,
    req: Req<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response, ApiError> {
    let body = req.body;
    let mut targets = BTreeMap::new();
    for (user, devices) in body.messages {
        let mut by_device = BTreeMap::new();
        for (device, content) in devices {
            let content = json(&content)?;
            if !content.is_object() {
                return Err(ApiError::bad_json("the content of a to-device message must be an object"));
            }
            by_device.insert(device.to_string(), content);
        }
        targets.insert(user, by_device);
    }
    let kind = body.event_type.to_string();
    services
        .e2ee
        .send_to_device((&req.auth.user_id, &req.auth.device_id), body.txn_id.as_str(), &kind, targets)
        .await?;
    Ok(send_event_to_device::v3::Response::new())
}
