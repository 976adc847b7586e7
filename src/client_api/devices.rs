//! The logged-in user's devices.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{Device, delete_device, delete_devices, get_device, get_devices, update_device},
};

use crate::{
    accounts,
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(list);
    router.ruma(get);
    router.ruma(rename);
    router.ruma(delete_one);
    router.ruma(delete_many);
}

fn to_device(found: accounts::Device) -> Device {
    let mut device = Device::new(found.device_id);
    device.display_name = found.display_name;
    device.last_seen_ip = found.last_seen_ip;
    device.last_seen_ts = found.last_seen_ts.and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    device
}

async fn list(
    services: Arc<Services>,
    req: Req<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response, ApiError> {
    let devices = services.accounts.devices(&req.auth.user_id)?;
    Ok(get_devices::v3::Response::new(devices.into_iter().map(to_device).collect()))
}

async fn get(
    services: Arc<Services>,
    req: Req<get_device::v3::Request>,
) -> Result<get_device::v3::Response, ApiError> {
    let device = services.accounts.device(&req.auth.user_id, &req.body.device_id)?;
    Ok(get_device::v3::Response::new(to_device(device)))
}

async fn rename(
    services: Arc<Services>,
    req: Req<update_device::v3::Request>,
) -> Result<update_device::v3::Response, ApiError> {
    services.accounts.rename_device(&req.auth.user_id, &req.body.device_id, req.body.display_name).await?;
    Ok(update_device::v3::Response::new())
}

async fn delete_one(
    services: Arc<Services>,
    req: Req<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response, ApiError> {
    // Answer 404 for an unknown device before asking for a password.
    services.accounts.device(&req.auth.user_id, &req.body.device_id)?;
    services.accounts.authorize_with_password(&req.auth, req.body.auth).await?;
    services.accounts.delete_devices(&req.auth.user_id, &[req.body.device_id]).await?;
    Ok(delete_device::v3::Response::new())
}

async fn delete_many(
    services: Arc<Services>,
    req: Req<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response, ApiError> {
    services.accounts.authorize_with_password(&req.auth, req.body.auth).await?;
    services.accounts.delete_devices(&req.auth.user_id, &req.body.devices).await?;
    Ok(delete_devices::v3::Response::new())
}
