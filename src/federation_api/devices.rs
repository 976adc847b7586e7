//! Our users' devices and keys, for other servers whose users share rooms with them, so
//! end-to-end encryption works across servers.

use std::sync::Arc;

use ruma::{
    UInt, UserId,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
    serde::Raw,
};
use serde_json::Value as JsonValue;

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(devices);
    router.ruma(query_keys);
    router.ruma(claim);
}

fn raw<T>(value: JsonValue) -> Result<Raw<T>, ApiError> {
    serde_json::value::to_raw_value(&value).map(Raw::from_json).map_err(|_| ApiError::internal())
}

fn require_local(services: &Services, user: &UserId) -> Result<(), ApiError> {
    if user.server_name() != services.config.server_name {
        return Err(ApiError::invalid_param(format!("{user} is not a user of this server")));
    }
    Ok(())
}

/// `GET /user/devices/{userId}`: a local user's devices with their keys.
async fn devices(
    services: Arc<Services>,
    req: Req<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response, ApiError> {
    let user = &req.body.user_id;
    require_local(&services, user)?;
    let (stream_id, devices) = services.e2ee.devices_for_server(user)?;
    let mut response = get_devices::v1::Response::new(user.clone(), UInt::new_saturating(stream_id));
    for device in devices {
        let mut entry = get_devices::v1::UserDevice::new(device.device_id, raw(device.keys)?);
        entry.device_display_name = device.display_name;
        response.devices.push(entry);
    }
    let (master, self_signing) = services.e2ee.public_cross_signing_keys(user)?;
    response.master_key = master.map(raw).transpose()?;
    response.self_signing_key = self_signing.map(raw).transpose()?;
    Ok(response)
}

/// `POST /user/keys/query`: device and cross-signing keys of local users.
async fn query_keys(
    services: Arc<Services>,
    req: Req<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response, ApiError> {
    let keys = services.e2ee.query_local(None, &req.body.device_keys)?;
    let mut response = get_keys::v1::Response::default();
    for (user, devices) in keys.device_keys {
        let devices =
            devices.into_iter().map(|(id, keys)| Ok((id, raw(keys)?))).collect::<Result<_, ApiError>>()?;
        response.device_keys.insert(user, devices);
    }
    for (user, key) in keys.master_keys {
        response.master_keys.insert(user, raw(key)?);
    }
    for (user, key) in keys.self_signing_keys {
        response.self_signing_keys.insert(user, raw(key)?);
    }
    Ok(response)
}

/// `POST /user/keys/claim`: one-time keys of local users' devices.
async fn claim(
    services: Arc<Services>,
    req: Req<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response, ApiError> {
    let wanted = req
        .body
        .one_time_keys
        .into_iter()
        .map(|(user, devices)| (user, devices.into_iter().map(|(d, a)| (d, a.to_string())).collect()))
        .collect();
    let claimed = services.e2ee.claim_local(wanted).await?;
    let mut one_time_keys = claim_keys::v1::OneTimeKeys::new();
    for (user, devices) in claimed {
        let mut by_device = std::collections::BTreeMap::new();
        for (device, keys) in devices {
            let keys = keys
                .into_iter()
                .filter_map(|(id, key)| Some((id.as_str().try_into().ok()?, raw(key).ok()?)))
                .collect();
            by_device.insert(device, keys);
        }
        one_time_keys.insert(user, by_device);
    }
    Ok(claim_keys::v1::Response::new(one_time_keys))
}
