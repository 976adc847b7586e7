//! Room aliases and the public room directory.

use std::sync::Arc;

use http::StatusCode;
use ruma::api::{
    client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility},
        room::{Visibility, aliases},
    },
    error::ErrorKind,
};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    rooms,
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(put_alias);
    router.ruma(get_alias_target);
    router.ruma(remove_alias);
    router.ruma(room_aliases);
    router.ruma(get_visibility);
    router.ruma(set_visibility);
    router.ruma(public_rooms);
    router.ruma(public_rooms_filtered);
}

async fn put_alias(
    services: Arc<Services>,
    req: Req<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response, ApiError> {
    services.rooms.reader(&req.body.room_id, &req.auth.user_id)?.require_present()?;
    match services.rooms.create_alias(&req.body.room_alias, &req.body.room_id, &req.auth.user_id).await {
        Ok(()) => Ok(create_alias::v3::Response::new()),
        // The spec answers a taken alias here with 409 `M_UNKNOWN` (createRoom uses M_ROOM_IN_USE).
        Err(rooms::Error::RoomInUse(why)) => {
            Err(ApiError::new(StatusCode::CONFLICT, ErrorKind::Unknown, why))
        }
        Err(other) => Err(other.into()),
    }
}

async fn get_alias_target(
    services: Arc<Services>,
    req: Req<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response, ApiError> {
    let (room_id, servers) = services.rooms.alias_target(&req.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
}

async fn remove_alias(
    services: Arc<Services>,
    req: Req<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response, ApiError> {
    services.rooms.delete_alias(&req.body.room_alias, &req.auth.user_id).await?;
    Ok(delete_alias::v3::Response::new())
}

async fn room_aliases(
    services: Arc<Services>,
    req: Req<aliases::v3::Request>,
) -> Result<aliases::v3::Response, ApiError> {
    services.rooms.reader(&req.body.room_id, &req.auth.user_id)?.require_present()?;
    Ok(aliases::v3::Response::new(services.rooms.room_aliases(&req.body.room_id)?))
}

async fn get_visibility(
    services: Arc<Services>,
    req: Req<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response, ApiError> {
    let published = services.rooms.is_published(&req.body.room_id)?;
    Ok(get_room_visibility::v3::Response::new(if published {
        Visibility::Public
    } else {
        Visibility::Private
    }))
}

async fn set_visibility(
    services: Arc<Services>,
    req: Req<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response, ApiError> {
    let published = match req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => return Err(ApiError::invalid_param(format!("unknown visibility {}", other.as_str()))),
    };
    services.rooms.set_published(&req.body.room_id, &req.auth.user_id, published).await?;
    Ok(set_room_visibility::v3::Response::new())
}

async fn public_rooms(
    services: Arc<Services>,
    req: Req<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response, ApiError> {
    let body = req.body;
    let page = services
        .rooms
        .directory_page(body.server.as_deref(), &Default::default(), body.limit, body.since.as_deref())
        .await?;
    Ok(crate::public_rooms_response!(get_public_rooms::v3::Response::new(Vec::new()), page))
}

async fn public_rooms_filtered(
    services: Arc<Services>,
    req: Req<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response, ApiError> {
    let body = req.body;
    let page = services
        .rooms
        .directory_page(body.server.as_deref(), &body.filter, body.limit, body.since.as_deref())
        .await?;
    Ok(crate::public_rooms_response!(get_public_rooms_filtered::v3::Response::new(), page))
}
