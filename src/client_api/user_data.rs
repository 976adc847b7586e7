//! Account data, tags, read markers, receipts and typing.

use std::sync::Arc;

use ruma::{
    RoomId, UserId,
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
        },
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        tag::{create_tag, delete_tag, get_tags},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::room::member::MembershipState,
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};

use super::rooms::raw;
use crate::{
    accounts::Session,
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(get_global);
    router.ruma(set_global);
    router.ruma(get_room);
    router.ruma(set_room);
    router.ruma(tags);
    router.ruma(add_tag);
    router.ruma(remove_tag);
    router.ruma(read_markers);
    router.ruma(receipt);
    router.ruma(typing);
}

fn only_self(session: &Session, user: &UserId) -> Result<(), ApiError> {
    if session.user_id != user {
        return Err(ApiError::forbidden("You cannot access another user's data"));
    }
    Ok(())
}

fn object(raw_json: &str) -> Result<JsonValue, ApiError> {
    serde_json::from_str(raw_json).map_err(|e| ApiError::bad_json(e.to_string()))
}

async fn get_global(
    services: Arc<Services>,
    req: Req<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    let kind = req.body.event_type.to_string();
    let content = if kind == "m.push_rules" {
        Raw::from_json(services.push.rules_content(&req.auth.user_id)?)
    } else {
        raw(services.account_data.get(&req.auth.user_id, None, &kind)?)
    };
    Ok(get_global_account_data::v3::Response::new(content))
}

async fn set_global(
    services: Arc<Services>,
    req: Req<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    let content = object(req.body.data.json().get())?;
    services.account_data.set(&req.auth.user_id, None, &req.body.event_type.to_string(), content).await?;
    Ok(set_global_account_data::v3::Response::new())
}

async fn get_room(
    services: Arc<Services>,
    req: Req<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    let content = services.account_data.get(
        &req.auth.user_id,
        Some(&req.body.room_id),
        &req.body.event_type.to_string(),
    )?;
    Ok(get_room_account_data::v3::Response::new(raw(content)))
}

async fn set_room(
    services: Arc<Services>,
    req: Req<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    services.rooms.version(&req.body.room_id)?;
    let content = object(req.body.data.json().get())?;
    services
        .account_data
        .set(&req.auth.user_id, Some(&req.body.room_id), &req.body.event_type.to_string(), content)
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

async fn tags(
    services: Arc<Services>,
    req: Req<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    let tags = services.account_data.tags(&req.auth.user_id, &req.body.room_id)?;
    let tags = serde_json::from_value(tags).map_err(|e| ApiError::bad_json(format!("stored tags: {e}")))?;
    Ok(get_tags::v3::Response::new(tags))
}

async fn add_tag(
    services: Arc<Services>,
    req: Req<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    services.rooms.version(&req.body.room_id)?;
    let info = serde_json::to_value(&req.body.tag_info).map_err(|e| ApiError::bad_json(e.to_string()))?;
    services.account_data.set_tag(&req.auth.user_id, &req.body.room_id, &req.body.tag, Some(info)).await?;
    Ok(create_tag::v3::Response::new())
}

async fn remove_tag(
    services: Arc<Services>,
    req: Req<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    services.account_data.set_tag(&req.auth.user_id, &req.body.room_id, &req.body.tag, None).await?;
    Ok(delete_tag::v3::Response::new())
}

/// Moves the `m.fully_read` marker (room account data the server manages).
async fn set_fully_read(
    services: &Services,
    session: &Session,
    room_id: &RoomId,
    event_id: &ruma::EventId,
) -> Result<(), ApiError> {
    if services.rooms.membership(room_id, &session.user_id)? != Some(MembershipState::Join) {
        return Err(ApiError::forbidden("You are not in this room"));
    }
    services
        .rooms
        .event(event_id)?
        .filter(|event| event.pdu.room_id == room_id)
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id} in this room")))?;
    services
        .account_data
        .set_managed(&session.user_id, Some(room_id), "m.fully_read", &json!({"event_id": event_id}))
        .await?;
    Ok(())
}

async fn read_markers(
    services: Arc<Services>,
    req: Req<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response, ApiError> {
    let body = req.body;
    let user = &req.auth.user_id;
    if let Some(event_id) = &body.fully_read {
        set_fully_read(&services, &req.auth, &body.room_id, event_id).await?;
    }
    if let Some(event_id) = &body.read_receipt {
        services.rooms.set_receipt(&body.room_id, user, "m.read", event_id, None).await?;
    }
    if let Some(event_id) = &body.private_read_receipt {
        services.rooms.set_receipt(&body.room_id, user, "m.read.private", event_id, None).await?;
    }
    Ok(set_read_marker::v3::Response::new())
}

async fn receipt(
    services: Arc<Services>,
    req: Req<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response, ApiError> {
    let body = req.body;
    let thread = body.thread.as_str();
    match body.receipt_type {
        ReceiptType::FullyRead if thread.is_some() => {
            return Err(ApiError::invalid_param("m.fully_read is not threaded: it takes no thread_id"));
        }
        ReceiptType::FullyRead => set_fully_read(&services, &req.auth, &body.room_id, &body.event_id).await?,
        ReceiptType::Read | ReceiptType::ReadPrivate => {
            let kind = body.receipt_type.to_string();
            services
                .rooms
                .set_receipt(&body.room_id, &req.auth.user_id, &kind, &body.event_id, thread)
                .await?;
        }
        other => return Err(ApiError::invalid_param(format!("unknown receipt type {other}"))),
    }
    Ok(create_receipt::v3::Response::new())
}

async fn typing(
    services: Arc<Services>,
    req: Req<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response, ApiError> {
    only_self(&req.auth, &req.body.user_id)?;
    let timeout = match req.body.state {
        Typing::Yes(info) => Some(info.timeout),
        Typing::No => None,
    };
    services.rooms.set_typing(&req.body.room_id, &req.auth.user_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new())
}
