//! `PUT /send/{txnId}`: the PDUs and EDUs another server sends. Each PDU goes to `rooms`
//! (which refuses those of rooms whose server ACL denies the sender), each EDU, parsed with
//! ruma's types, to the domain it concerns; typing and receipts in a room whose ACL denies
//! the sender are ignored (spec v1.13). A transaction seen before is answered without
//! applying it again.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{
    RoomId, ServerName, UserId,
    api::federation::transactions::{edu::Edu, send_transaction_message},
    events::receipt::ReceiptThread,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    http::{
        ApiError,
        router::{Req, RouteOptions, Router},
    },
    presence::RemotePresence,
    services::Services,
};

/// Up to 50 PDUs of up to 64 KiB each and 100 EDUs: more than a client request needs.
const TRANSACTION_MAX_BYTES: usize = 8 * 1024 * 1024;

/// How long a remote user shows as typing unless their server says otherwise.
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

pub fn routes(router: &mut Router) {
    router.ruma_with(
        RouteOptions { max_body: Some(TRANSACTION_MAX_BYTES), ..RouteOptions::default() },
        send_transaction,
    );
}

async fn send_transaction(
    services: Arc<Services>,
    req: Req<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response, ApiError> {
    let origin = req.auth;
    let body = req.body;
    if body.origin != origin {
        return Err(ApiError::forbidden("The transaction's origin is not the server that signed it"));
    }
    // On a task of its own: a transaction once begun is applied to the end and marked as
    // handled even if the sending server stops waiting; otherwise its retry would find half
    // of it applied and apply that half again.
    let task = tokio::spawn(async move {
        let apply = async {
            let mut outcomes = BTreeMap::new();
            for raw in &body.pdus {
                if let Some((event_id, outcome)) = services.rooms.receive_pdu(&origin, raw).await {
                    outcomes.insert(event_id, outcome);
                }
            }
            for edu in &body.edus {
                let applied = match edu.deserialize() {
                    Ok(edu) => apply_edu(&services, &origin, edu).await,
                    Err(e) => Err(Error::BadJson(e.to_string())),
                };
                if let Err(e) = applied {
                    tracing::info!(%origin, error = %e, "ignored an EDU");
                }
            }
            outcomes
        };
        services.federation.transactions.handle_once(&origin, body.transaction_id.as_str(), apply).await
    });
    let outcomes = task
        .await
        .map_err(|e| Error::Internal(format!("handling a transaction failed: {e}")))?
        .map_err(Error::from)?
        .unwrap_or_default();
    Ok(send_transaction_message::v1::Response::new(outcomes))
}

/// A server denied by a room's server ACL has nothing to say about it.
fn allowed_in(services: &Services, origin: &ServerName, room_id: &RoomId) -> Result<()> {
    if !services.rooms.server_allowed(room_id, origin)? {
        return Err(Error::Forbidden(format!("{origin} is denied by the server ACL of {room_id}")));
    }
    Ok(())
}

/// A server speaks only for its own users.
fn speaks_for(origin: &ServerName, user: &UserId) -> Result<()> {
    if user.server_name() != origin {
        return Err(Error::Forbidden(format!("{origin} cannot speak for {user}")));
    }
    Ok(())
}

async fn apply_edu(services: &Services, origin: &ServerName, edu: Edu) -> Result<()> {
    match edu {
        Edu::Typing(typing) => {
            speaks_for(origin, &typing.user_id)?;
            allowed_in(services, origin, &typing.room_id)?;
            let timeout = typing.typing.then_some(REMOTE_TYPING_TIMEOUT);
            services.rooms.set_typing(&typing.room_id, &typing.user_id, timeout).await
        }
        Edu::Receipt(receipts) => {
            for (room_id, map) in receipts.receipts {
                if let Err(e) = allowed_in(services, origin, &room_id) {
                    tracing::info!(%origin, error = %e, "ignored receipts");
                    continue;
                }
                for (user, receipt) in map.read {
                    speaks_for(origin, &user)?;
                    let thread = match &receipt.data.thread {
                        ReceiptThread::Thread(id) => Some(id.as_str()),
                        ReceiptThread::Main => Some("main"),
                        _ => None,
                    };
                    for event_id in &receipt.event_ids {
                        services.rooms.set_receipt(&room_id, &user, "m.read", event_id, thread).await?;
                    }
                }
            }
            Ok(())
        }
        Edu::DirectToDevice(content) => {
            speaks_for(origin, &content.sender)?;
            let mut targets: BTreeMap<_, BTreeMap<String, JsonValue>> = BTreeMap::new();
            for (user, devices) in content.messages {
                let by_device = targets.entry(user).or_default();
                for (device, message) in devices {
                    let device = match device {
                        DeviceIdOrAllDevices::DeviceId(id) => id.to_string(),
                        DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
                    };
                    let message = serde_json::from_str(message.json().get())
                        .map_err(|e| Error::BadJson(e.to_string()))?;
                    by_device.insert(device, message);
                }
            }
            services
                .e2ee
                .receive_remote_to_device(
                    &content.sender,
                    content.message_id.as_str(),
                    &content.ev_type.to_string(),
                    targets,
                )
                .await
        }
        Edu::DeviceListUpdate(update) => {
            speaks_for(origin, &update.user_id)?;
            services.e2ee.remote_keys_changed(&update.user_id).await
        }
        Edu::SigningKeyUpdate(update) => {
            speaks_for(origin, &update.user_id)?;
            services.e2ee.remote_keys_changed(&update.user_id).await
        }
        Edu::Presence(content) => {
            let mut updates = Vec::with_capacity(content.push.len());
            for update in content.push {
                speaks_for(origin, &update.user_id)?;
                updates.push(RemotePresence {
                    user_id: update.user_id,
                    state: update.presence,
                    status_msg: update.status_msg,
                    last_active_ago_ms: update.last_active_ago.into(),
                    currently_active: update.currently_active,
                });
            }
            services.presence.receive_remote(updates)
        }
        // Read receipts are handled above; anything else is ignored, as the spec allows.
        _ => Ok(()),
    }
}
