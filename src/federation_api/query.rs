//! Queries about this server's users (profiles, OpenID tokens), aliases and public rooms.

use std::sync::Arc;

use ruma::api::federation::{
    directory::{get_public_rooms, get_public_rooms_filtered},
    openid::get_openid_userinfo,
    query::{get_profile_information, get_room_information},
};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(profile);
    router.ruma(directory);
    router.ruma(public_rooms);
    router.ruma(public_rooms_filtered);
    router.ruma(openid_userinfo);
}

/// `GET /openid/userinfo`: who an OpenID token this server issued belongs to. Asked with
/// the token alone (no server signature): the token is the credential.
async fn openid_userinfo(
    services: Arc<Services>,
    req: Req<get_openid_userinfo::v1::Request>,
) -> Result<get_openid_userinfo::v1::Response, ApiError> {
    Ok(get_openid_userinfo::v1::Response::new(services.accounts.openid_user(&req.body.access_token)?))
}

/// `GET /publicRooms`: this server's room directory.
async fn public_rooms(
    services: Arc<Services>,
    req: Req<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response, ApiError> {
    let page =
        services.rooms.public_rooms_page(&Default::default(), req.body.limit, req.body.since.as_deref())?;
    Ok(crate::public_rooms_response!(get_public_rooms::v1::Response::new(), page))
}

/// `POST /publicRooms`: this server's room directory, searched.
async fn public_rooms_filtered(
    services: Arc<Services>,
    req: Req<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response, ApiError> {
    let body = req.body;
    let page = services.rooms.public_rooms_page(&body.filter, body.limit, body.since.as_deref())?;
    Ok(crate::public_rooms_response!(get_public_rooms_filtered::v1::Response::new(), page))
}

/// `GET /query/profile`: a local user's display name and avatar.
async fn profile(
    services: Arc<Services>,
    req: Req<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response, ApiError> {
    let user = &req.body.user_id;
    if user.server_name() != services.config.server_name {
        return Err(ApiError::invalid_param(format!("{user} is not a user of this server")));
    }
    let profile = services.accounts.profile(user)?;
    let field = req.body.field.as_ref().map(|f| f.as_str().to_owned());
    Ok(profile.into_iter().filter(|(name, _)| field.as_ref().is_none_or(|f| f == name)).collect())
}

/// `GET /query/directory`: the room a local alias points to, and servers to join through.
async fn directory(
    services: Arc<Services>,
    req: Req<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response, ApiError> {
    let alias = &req.body.room_alias;
    let room_id = services
        .rooms
        .find_alias(alias)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no room has the alias {alias}")))?;
    let mut servers: Vec<_> = services.rooms.servers_in_room(&room_id)?.into_iter().collect();
    // This server first: it certainly knows the room.
    servers.sort_by_key(|s| *s != services.config.server_name);
    Ok(get_room_information::v1::Response::new(room_id, servers))
}
