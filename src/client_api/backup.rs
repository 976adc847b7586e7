//! Server-side key backup.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedRoomId, UInt,
    api::client::backup::{
        RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
    },
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};

use super::rooms::raw;
use crate::{
    e2ee::{BackedUpKey, BackupVersion},
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(create_version);
    router.ruma(latest_version);
    router.ruma(get_version);
    router.ruma(update_version);
    router.ruma(delete_version);
    router.ruma(put_all);
    router.ruma(put_room);
    router.ruma(put_session);
    router.ruma(get_all);
    router.ruma(get_room);
    router.ruma(get_session);
    router.ruma(delete_all);
    router.ruma(delete_room);
    router.ruma(delete_session);
}

/// Splits the flattened `{algorithm, auth_data}` object clients send.
fn algorithm<T>(raw_algorithm: &Raw<T>) -> Result<(String, JsonValue), ApiError> {
    let value: JsonValue =
        serde_json::from_str(raw_algorithm.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let name = value["algorithm"]
        .as_str()
        .ok_or_else(|| ApiError::missing_param("algorithm is required"))?
        .to_owned();
    let auth_data = value.get("auth_data").ok_or_else(|| ApiError::missing_param("auth_data is required"))?;
    if !auth_data.is_object() {
        return Err(ApiError::bad_json("auth_data must be an object"));
    }
    Ok((name, auth_data.clone()))
}

/// Checks that backed-up key data has the fields the replacement rules and clients read.
fn check_key_data(data: &JsonValue) -> Result<(), ApiError> {
    let valid = data["first_message_index"].is_u64()
        && data["forwarded_count"].is_u64()
        && data["is_verified"].is_boolean()
        && data["session_data"].is_object();
    if !valid {
        return Err(ApiError::bad_json(
            "key data needs first_message_index, forwarded_count, is_verified and a session_data object",
        ));
    }
    Ok(())
}

fn info_algorithm<T>(info: &BackupVersion) -> Raw<T> {
    raw(json!({"algorithm": info.algorithm, "auth_data": info.auth_data}))
}

fn sessions_json<T>(
    sessions: &BTreeMap<String, Raw<T>>,
    room: &OwnedRoomId,
) -> Result<Vec<BackedUpKey>, ApiError> {
    sessions
        .iter()
        .map(|(session, data)| {
            let data: JsonValue =
                serde_json::from_str(data.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
            check_key_data(&data)?;
            Ok(BackedUpKey { room_id: room.to_string(), session_id: session.clone(), data })
        })
        .collect()
}

fn by_room(keys: Vec<BackedUpKey>) -> BTreeMap<OwnedRoomId, RoomKeyBackup> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, _>> = BTreeMap::new();
    for key in keys {
        if let Ok(room) = OwnedRoomId::try_from(key.room_id) {
            rooms.entry(room).or_default().insert(key.session_id, raw(key.data));
        }
    }
    rooms.into_iter().map(|(room, sessions)| (room, RoomKeyBackup::new(sessions))).collect()
}

fn count(n: u64) -> UInt {
    UInt::new_saturating(n)
}

async fn create_version(
    services: Arc<Services>,
    req: Req<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response, ApiError> {
    let (name, auth_data) = algorithm(&req.body.algorithm)?;
    let version = services.e2ee.create_backup(&req.auth.user_id, name, auth_data).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

async fn latest_version(
    services: Arc<Services>,
    req: Req<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response, ApiError> {
    let info = services.e2ee.backup_info(&req.auth.user_id, None)?;
    Ok(get_latest_backup_info::v3::Response::new(
        info_algorithm(&info),
        count(info.count),
        info.etag.clone(),
        info.version.clone(),
    ))
}

async fn get_version(
    services: Arc<Services>,
    req: Req<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response, ApiError> {
    let info = services.e2ee.backup_info(&req.auth.user_id, Some(&req.body.version))?;
    Ok(get_backup_info::v3::Response::new(
        info_algorithm(&info),
        count(info.count),
        info.etag.clone(),
        info.version.clone(),
    ))
}

async fn update_version(
    services: Arc<Services>,
    req: Req<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response, ApiError> {
    let body: JsonValue = serde_json::from_str(req.body.algorithm.json().get()).unwrap_or_default();
    if let Some(version) = body.get("version").and_then(JsonValue::as_str)
        && version != req.body.version
    {
        return Err(ApiError::invalid_param("the version in the body does not match the path"));
    }
    let (name, auth_data) = algorithm(&req.body.algorithm)?;
    services.e2ee.update_backup(&req.auth.user_id, &req.body.version, name, auth_data).await?;
    Ok(update_backup_version::v3::Response::new())
}

async fn delete_version(
    services: Arc<Services>,
    req: Req<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response, ApiError> {
    services.e2ee.delete_backup(&req.auth.user_id, &req.body.version).await?;
    Ok(delete_backup_version::v3::Response::new())
}

async fn put_all(
    services: Arc<Services>,
    req: Req<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response, ApiError> {
    let mut sessions = Vec::new();
    for (room, backup) in &req.body.rooms {
        sessions.extend(sessions_json(&backup.sessions, room)?);
    }
    let (etag, n) = services.e2ee.put_backup_keys(&req.auth.user_id, &req.body.version, sessions).await?;
    Ok(add_backup_keys::v3::Response::new(etag, count(n)))
}

async fn put_room(
    services: Arc<Services>,
    req: Req<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response, ApiError> {
    let sessions = sessions_json(&req.body.sessions, &req.body.room_id)?;
    let (etag, n) = services.e2ee.put_backup_keys(&req.auth.user_id, &req.body.version, sessions).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count(n)))
}

async fn put_session(
    services: Arc<Services>,
    req: Req<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response, ApiError> {
    let b = req.body;
    let sessions = sessions_json(&BTreeMap::from([(b.session_id.clone(), b.session_data)]), &b.room_id)?;
    let (etag, n) = services.e2ee.put_backup_keys(&req.auth.user_id, &b.version, sessions).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count(n)))
}

async fn get_all(
    services: Arc<Services>,
    req: Req<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response, ApiError> {
    let keys = services.e2ee.get_backup_keys(&req.auth.user_id, &req.body.version, None, None)?;
    Ok(get_backup_keys::v3::Response::new(by_room(keys)))
}

async fn get_room(
    services: Arc<Services>,
    req: Req<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response, ApiError> {
    let keys = services.e2ee.get_backup_keys(
        &req.auth.user_id,
        &req.body.version,
        Some(req.body.room_id.as_str()),
        None,
    )?;
    Ok(get_backup_keys_for_room::v3::Response::new(
        keys.into_iter().map(|key| (key.session_id, raw(key.data))).collect(),
    ))
}

async fn get_session(
    services: Arc<Services>,
    req: Req<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response, ApiError> {
    let b = req.body;
    let mut keys = services.e2ee.get_backup_keys(
        &req.auth.user_id,
        &b.version,
        Some(b.room_id.as_str()),
        Some(&b.session_id),
    )?;
    Ok(get_backup_keys_for_session::v3::Response::new(raw(keys.remove(0).data)))
}

async fn delete_all(
    services: Arc<Services>,
    req: Req<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response, ApiError> {
    let (etag, n) =
        services.e2ee.delete_backup_keys(&req.auth.user_id, &req.body.version, None, None).await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count(n)))
}

async fn delete_room(
    services: Arc<Services>,
    req: Req<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response, ApiError> {
    let b = req.body;
    let (etag, n) = services
        .e2ee
        .delete_backup_keys(&req.auth.user_id, &b.version, Some(b.room_id.as_str()), None)
        .await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count(n)))
}

async fn delete_session(
    services: Arc<Services>,
    req: Req<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response, ApiError> {
    let b = req.body;
    let (etag, n) = services
        .e2ee
        .delete_backup_keys(&req.auth.user_id, &b.version, Some(b.room_id.as_str()), Some(&b.session_id))
        .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count(n)))
}
