//! Media: a user's uploads, deleting one file, quarantine.

use std::sync::Arc;

use http::Method;
use ruma::{OwnedServerName, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{self, AdminCall};
use crate::{
    admin::Page,
    http::{ApiError, Response, router::Router},
    media::MediaInfo,
    services::Services,
};

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, "/_synapse/admin/v1/users/{user_id}/media", user_media);
    call::route(router, Method::DELETE, "/_synapse/admin/v1/media/{server_name}/{media_id}", delete);
    call::route(
        router,
        Method::POST,
        "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
        |s, c| quarantine(s, c, true),
    );
    call::route(
        router,
        Method::POST,
        "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}",
        |s, c| quarantine(s, c, false),
    );
}

/// A file as Synapse lists one. Myelin records no accesses and protects nothing from
/// quarantine.
#[derive(Serialize)]
struct MediaJson {
    media_id: String,
    media_type: Option<String>,
    media_length: u64,
    upload_name: Option<String>,
    created_ts: u64,
    last_access_ts: Option<u64>,
    quarantined_by: Option<OwnedUserId>,
    safe_from_quarantine: bool,
}

impl From<MediaInfo> for MediaJson {
    fn from(info: MediaInfo) -> Self {
        Self {
            media_id: info.media_id,
            media_type: info.content_type,
            media_length: info.size,
            upload_name: info.filename,
            created_ts: info.created_ts,
            last_access_ts: None,
            quarantined_by: info.quarantined_by,
            safe_from_quarantine: false,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    from: usize,
    #[serde(default = "call::default_limit")]
    limit: usize,
    order_by: Option<String>,
    dir: Option<String>,
}

async fn user_media(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let user_id = call.input.local_user(&services, 0)?;
    services.accounts.user_info(&user_id)?;
    let q: ListQuery = call.input.query()?;
    let mut media = services.media.user_media(&user_id)?;
    // Without order or direction: newest first (Synapse's default).
    let descending = match (&q.order_by, &q.dir) {
        (None, None) => true,
        _ => call::backwards(q.dir.as_deref())?,
    };
    // Ties stay in media id order: the list comes sorted by it and the sorts are stable.
    match q.order_by.as_deref().unwrap_or("created_ts") {
        // Nothing is accessed-tracked or protected here: every file ties.
        "media_id" | "last_access_ts" | "safe_from_quarantine" => {}
        "created_ts" => media.sort_by_key(|m| m.created_ts),
        "upload_name" => media.sort_by(|a, b| a.filename.cmp(&b.filename)),
        "media_length" => media.sort_by_key(|m| m.size),
        "media_type" => media.sort_by(|a, b| a.content_type.cmp(&b.content_type)),
        "quarantined_by" => media.sort_by(|a, b| a.quarantined_by.cmp(&b.quarantined_by)),
        other => return Err(ApiError::invalid_param(format!("unknown order_by {other:?}"))),
    }
    if descending {
        media.reverse();
    }
    let page = Page::of(media, q.from, q.limit);
    let mut body = json!({
        "media": page.items.into_iter().map(MediaJson::from).collect::<Vec<_>>(),
        "total": page.total,
    });
    if let Some(next) = page.next {
        body["next_token"] = json!(next);
    }
    call::ok(&body)
}

fn server_arg(call: &AdminCall) -> Result<OwnedServerName, ApiError> {
    OwnedServerName::try_from(call.input.arg(0))
        .map_err(|e| ApiError::invalid_param(format!("invalid server name: {e}")))
}

async fn delete(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let server = server_arg(&call)?;
    let media_id = call.input.arg(1);
    services.media.delete(&server, media_id).await?;
    call::ok(&json!({ "deleted_media": [media_id], "total": 1 }))
}

async fn quarantine(services: Arc<Services>, call: AdminCall, on: bool) -> Result<Response, ApiError> {
    let server = server_arg(&call)?;
    let by = on.then_some(&*call.admin);
    services.media.set_quarantine(&server, call.input.arg(1), by).await?;
    call::empty()
}
