//! `/sync`, the filters that shape it, and sliding sync (MSC4186).

use std::{sync::Arc, time::Duration};

use ruma::api::client::{
    filter::{create_filter, get_filter},
    sync::sync_events::{self, v3::Filter, v5},
};

use super::sync_body::SyncBody;
use crate::{
    accounts::Session,
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
    sync::{SyncParams, SyncToken, sliding::params::SlidingParams},
};

pub fn routes(router: &mut Router) {
    router.ruma(sync);
    router.ruma(sliding_sync);
    router.ruma(upload_filter);
    router.ruma(download_filter);
}

/// Long-polls longer than this are cut short; reverse proxies commonly time out at 60 s.
const MAX_TIMEOUT: Duration = Duration::from_secs(50);

/// Not an `async fn`: the request is turned into [`SyncParams`] before the long-poll starts, so
/// a parked `/sync` does not keep ruma's request (over 1 KiB) and copies of it for its whole
/// wait. With thousands of clients parked, that is most of their memory beyond hyper's buffers.
fn sync(
    services: Arc<Services>,
    req: Req<sync_events::v3::Request>,
) -> impl Future<Output = Result<SyncBody, ApiError>> + Send {
    let parsed = sync_params(&services, req);
    async move {
        let (session, params, timeout) = parsed?;
        Ok(SyncBody(services.sync.sync(&services.rooms, &session, params, timeout).await?))
    }
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`. A missing `timeout`
/// means "answer at once", as matrix-sdk expects while its room list grows. Like `/sync`,
/// the request is checked before the long-poll starts.
fn sliding_sync(
    services: Arc<Services>,
    req: Req<v5::Request>,
) -> impl Future<Output = Result<v5::Response, ApiError>> + Send {
    let timeout = req.body.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let session = req.auth;
    let params = SlidingParams::check(req.body, &session.user_id);
    async move { Ok(services.sync.sliding_sync(&services.rooms, &session, params?, timeout).await?) }
}

fn sync_params(
    services: &Services,
    req: Req<sync_events::v3::Request>,
) -> Result<(Session, SyncParams, Duration), ApiError> {
    let body = req.body;
    let since = body
        .since
        .as_deref()
        .map(|s| {
            SyncToken::parse(s)
                .ok_or_else(|| ApiError::invalid_param("since is not a sync token from this server"))
        })
        .transpose()?;
    let filter = match body.filter {
        None => Default::default(),
        Some(Filter::FilterDefinition(definition)) => definition,
        Some(Filter::FilterId(id)) => services
            .sync
            .filter(&req.auth.user_id, &id)
            .map_err(|_| ApiError::invalid_param(format!("unknown filter {id}")))?,
        Some(_) => return Err(ApiError::invalid_param("unsupported filter")),
    };
    let timeout = body.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let params = SyncParams {
        since,
        set_presence: body.set_presence,
        full_state: body.full_state,
        filter: Box::new(filter),
    };
    Ok((req.auth, params, timeout))
}

async fn upload_filter(
    services: Arc<Services>,
    req: Req<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response, ApiError> {
    if req.body.user_id != req.auth.user_id {
        return Err(ApiError::forbidden("You can only create filters for yourself"));
    }
    let id = services.sync.create_filter(&req.auth.user_id, &req.body.filter).await?;
    Ok(create_filter::v3::Response::new(id))
}

async fn download_filter(
    services: Arc<Services>,
    req: Req<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response, ApiError> {
    if req.body.user_id != req.auth.user_id {
        return Err(ApiError::forbidden("You can only read your own filters"));
    }
    Ok(get_filter::v3::Response::new(services.sync.filter(&req.auth.user_id, &req.body.filter_id)?))
}
