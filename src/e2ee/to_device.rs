//! To-device messages: sent by a device to other devices (here, or on other servers through
//! federation), queued per device with stream positions, and handed to that device's syncs
//! until one of them acknowledges them.
//!
//! A sync token acknowledges every message up to its position, or, when the response had
//! to leave messages behind, up to the last one it carried: a retry from an older token
//! gets the same messages again, so nothing is lost when a response is cut short. Reading
//! them never writes; acknowledging is its own step, before the sync reads.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

use super::E2ee;
use crate::{
    error::Result,
    storage::{AppserviceItem, ToDeviceMessage},
};

/// To-device messages handed to one sync at most, unless the client asks for fewer.
pub const TO_DEVICE_PER_SYNC: usize = 100;

/// The to-device messages for one sync response.
pub struct ToDeviceBatch {
    pub events: Vec<JsonValue>,
    /// The position of the last message when more wait behind it (the next sync token must
    /// acknowledge only up to there), `None` when every message up to the read position was
    /// handed out.
    pub left_behind_after: Option<u64>,
}

impl E2ee {
    /// `/sendToDevice` from a local device. `targets` maps each user to device ids, or to
    /// `*` for all of them; other servers' users get theirs through their servers.
    pub async fn send_to_device(
        &self,
        sender: (&UserId, &DeviceId),
        txn_id: &str,
        kind: &str,
        targets: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<()> {
        self.send_to_device_remote(sender.0, txn_id, kind, &targets).await?;
        self.queue_to_device(sender, txn_id, kind, targets).await
    }

    /// To-device messages another server sends for our users (`m.direct_to_device`). The
    /// message id makes a retried EDU idempotent, like a client's transaction id.
    pub async fn receive_remote_to_device(
        &self,
        sender: &UserId,
        message_id: &str,
        kind: &str,
        targets: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<()> {
        let via: &DeviceId = "federation".into();
        self.queue_to_device((sender, via), message_id, kind, targets).await
    }

    /// Queues messages for local devices; other servers' users are skipped.
    async fn queue_to_device(
        &self,
        sender: (&UserId, &DeviceId),
        txn_id: &str,
        kind: &str,
        targets: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>,
    ) -> Result<()> {
        let mut messages = Vec::new();
        for (user, by_device) in targets {
            if user.server_name() != self.server_name {
                continue;
            }
            let devices: Vec<OwnedDeviceId> =
                self.accounts.device_names(&user).into_iter().map(|(id, _)| id).collect();
            for (device, content) in by_device {
                let message = ToDeviceMessage { sender: sender.0.to_owned(), kind: kind.to_owned(), content };
                if device == "*" {
                    messages.extend(devices.iter().map(|d| (user.clone(), d.clone(), message.clone())));
                } else if devices.iter().any(|d| d.as_str() == device) {
                    messages.push((user.clone(), device.into(), message));
                }
                // A message for a device that does not exist is dropped: queued, it would sit
                // forever, or reach a device created later under that id.
            }
        }
        self.tell_appservices(&messages).await?;
        if let Some(position) = self.store.queue_to_device(sender, txn_id, &messages).await? {
            let recipients: BTreeSet<&UserId> = messages.iter().map(|(u, _, _)| &**u).collect();
            self.notifier.notify(recipients, position);
        }
        Ok(())
    }

    /// Sends the messages for application services' users to the services that asked for
    /// them (MSC4203, in Synapse's format: the message with its recipient).
    async fn tell_appservices(
        &self,
        messages: &[(OwnedUserId, OwnedDeviceId, ToDeviceMessage)],
    ) -> Result<()> {
        if self.appservices.is_empty() {
            return Ok(());
        }
        for (user, device, message) in messages {
            let services = self.appservices.wanting_to_device(user);
            let item = AppserviceItem::ToDevice(json!({
                "type": message.kind, "sender": message.sender, "content": message.content,
                "to_user_id": user, "to_device_id": device,
            }));
            self.appservices.send(&services, item).await?;
        }
        Ok(())
    }

    /// Deletes the messages a device received: those up to `through`, which its client
    /// proved it has by syncing from a token that covered them.
    pub fn acknowledge_to_device(&self, user: &UserId, device: &DeviceId, through: u64) -> Result<()> {
        Ok(self.store.acknowledge_to_device(user, device, through)?)
    }

    /// The oldest of a device's unacknowledged messages up to `upto`, at most `limit`.
    pub fn to_device_for_sync(
        &self,
        user: &UserId,
        device: &DeviceId,
        upto: u64,
        limit: usize,
    ) -> Result<ToDeviceBatch> {
        let (messages, more) = self.store.pending_to_device(user, device, upto, limit)?;
        let left_behind_after = if more { messages.last().map(|(position, _)| *position) } else { None };
        let events = messages
            .into_iter()
            .map(|(_, m)| json!({"sender": m.sender, "type": m.kind, "content": m.content}))
            .collect();
        Ok(ToDeviceBatch { events, left_behind_after })
    }
}
