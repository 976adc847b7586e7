//! A user's devices: listed, renamed and deleted by their owner (or an administrator), and
//! described as `/admin/whois` shows a user's sessions.

use std::collections::BTreeMap;

use ruma::{
    DeviceId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt, UserId,
    api::client::admin::get_user_info::v3::{ConnectionInfo, DeviceInfo, SessionInfo},
};

use super::{Accounts, Error, Result};
use crate::storage::DeviceRecord;

/// One of a user's devices, as its owner sees it.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<u64>,
}

impl Device {
    fn from_record(device_id: OwnedDeviceId, record: DeviceRecord) -> Self {
        Self {
            device_id,
            display_name: record.display_name,
            last_seen_ip: record.last_seen_ip,
            last_seen_ts: record.last_seen_ts,
        }
    }
}

impl Accounts {
    /// A user's device ids with their display names (none for an unknown user), as key
    /// queries show them in `unsigned.device_display_name`.
    pub fn device_names(&self, user_id: &UserId) -> Vec<(OwnedDeviceId, Option<String>)> {
        self.devices(user_id)
            .unwrap_or_default()
            .into_iter()
            .map(|device| (device.device_id, device.display_name))
            .collect()
    }

    pub fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        Ok(self
            .store
            .devices(user_id)?
            .into_iter()
            .map(|(id, record)| Device::from_record(id, record))
            .collect())
    }

    pub fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Device> {
        self.store
            .device(user_id, device_id)?
            .map(|record| Device::from_record(device_id.to_owned(), record))
            .ok_or_else(|| Error::NotFound(format!("no device {device_id}")))
    }

    /// Sets a device's display name; `None` leaves it as it is (the spec's "if not given, the
    /// display name is unchanged") but still fails for an unknown device.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> Result<()> {
        let Some(name) = name else {
            self.device(user_id, device_id)?;
            return Ok(());
        };
        if !self.store.rename_device(user_id, device_id, name).await? {
            return Err(Error::NotFound(format!("no device {device_id}")));
        }
        Ok(())
    }

    /// A local user's devices as whois describes them: one session per device, with the
    /// one connection this server remembers (the last IP and time; no user agent).
    pub fn whois(&self, user_id: &UserId) -> Result<BTreeMap<String, DeviceInfo>> {
        if self.store.user(user_id)?.is_none() {
            return Err(Error::NotFound(format!("no user {user_id}")));
        }
        Ok(self
            .devices(user_id)?
            .into_iter()
            .map(|device| {
                let mut connection = ConnectionInfo::new();
                connection.ip = device.last_seen_ip;
                connection.last_seen =
                    device.last_seen_ts.map(|ts| MilliSecondsSinceUnixEpoch(UInt::new_saturating(ts)));
                let mut session = SessionInfo::new();
                session.connections = vec![connection];
                let mut info = DeviceInfo::new();
                info.sessions = vec![session];
                (device.device_id.to_string(), info)
            })
            .collect())
    }

    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> Result<()> {
        self.store.remove_devices(user_id, device_ids).await?;
        self.devices_removed(user_id)
    }
}
