//! A user's devices: list, show, rename, delete one or several.

use std::sync::Arc;

use http::Method;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    accounts::Device,
    http::{ApiError, Response, router::Router},
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, "/_synapse/admin/v2/users/{user_id}/devices", list);
    call::route(router, Method::POST, "/_synapse/admin/v2/users/{user_id}/delete_devices", delete_several);
    let one = "/_synapse/admin/v2/users/{user_id}/devices/{device_id}";
    call::route(router, Method::GET, one, show);
    call::route(router, Method::PUT, one, rename);
    call::route(router, Method::DELETE, one, delete);
}

#[derive(Serialize)]
struct DeviceJson {
    device_id: OwnedDeviceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    last_seen_ip: Option<String>,
    /// Myelin does not keep user agents.
    last_seen_user_agent: Option<String>,
    last_seen_ts: Option<u64>,
    user_id: OwnedUserId,
    dehydrated: bool,
}

impl DeviceJson {
    fn new(user_id: &OwnedUserId, device: Device) -> Self {
        Self {
            device_id: device.device_id,
            display_name: device.display_name,
            last_seen_ip: device.last_seen_ip,
            last_seen_user_agent: None,
            last_seen_ts: device.last_seen_ts,
            user_id: user_id.clone(),
            dehydrated: false,
        }
    }
}

/// The path's user, which must exist here.
fn existing_user(services: &Services, call: &AdminCall) -> Result<OwnedUserId, ApiError> {
    let user_id = call.input.local_user(services, 0)?;
    services.accounts.user_info(&user_id)?;
    Ok(user_id)
}

async fn list(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = existing_user(&services, &call)?;
    let devices: Vec<DeviceJson> =
        services.accounts.devices(&user_id)?.into_iter().map(|d| DeviceJson::new(&user_id, d)).collect();
    call::ok(&json!({ "total": devices.len(), "devices": devices }))
}

async fn show(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = existing_user(&services, &call)?;
    let device = services.accounts.device(&user_id, call.input.arg(1).into())?;
    call::ok(&DeviceJson::new(&user_id, device))
}

#[derive(Deserialize)]
struct RenameBody {
    display_name: Option<String>,
}

async fn rename(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = existing_user(&services, &call)?;
    let body: RenameBody = call.input.json()?;
    services.accounts.rename_device(&user_id, call.input.arg(1).into(), body.display_name).await?;
    call::empty()
}

async fn delete(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = existing_user(&services, &call)?;
    // Deleting a device that is not there succeeds, as in Synapse.
    services.accounts.delete_devices(&user_id, &[call.input.arg(1).into()]).await?;
    call::empty()
}

#[derive(Deserialize)]
struct DeleteSeveralBody {
    devices: Vec<OwnedDeviceId>,
}

async fn delete_several(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = existing_user(&services, &call)?;
    let body: DeleteSeveralBody = call.input.json()?;
    services.accounts.delete_devices(&user_id, &body.devices).await?;
    call::empty()
}
