//! Signing keys: ours (`GET /_matrix/key/v2/server`), and other servers' as a notary
//! (`/_matrix/key/v2/query`), countersigned by us.

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, ServerName, ServerSigningKeyId,
    api::federation::discovery::{
        ServerSigningKeys, VerifyKey, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
    },
    canonical_json::to_canonical_value,
    serde::{Base64, Raw},
    signatures::sign_json,
};

use crate::{
    http::{ApiError, router::Req},
    services::Services,
};

/// How long other servers may cache our key list. The spec asks for at least an hour;
/// Synapse publishes a day.
const KEY_VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

/// `GET /_matrix/key/v2/server`: our verify key, signed by itself.
pub(super) async fn server_keys(
    services: Arc<Services>,
    _: Req<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response, ApiError> {
    let raw = serde_json::value::to_raw_value(&own_key_list(&services)?).map_err(|_| ApiError::internal())?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
}

/// Our key list, signed by our key.
fn own_key_list(services: &Services) -> Result<CanonicalJsonObject, ApiError> {
    let key = &services.signing_key;
    let server_name = &services.config.server_name;
    let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let valid_until = MilliSecondsSinceUnixEpoch::from_system_time(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(now + KEY_VALIDITY_MS),
    )
    .ok_or_else(ApiError::internal)?;
    let mut keys = ServerSigningKeys::new(server_name.clone(), valid_until);
    let key_id = ServerSigningKeyId::parse(key.key_id()).map_err(|e| {
        tracing::error!(error = %e, "the signing key id is invalid");
        ApiError::internal()
    })?;
    keys.verify_keys.insert(key_id, VerifyKey::new(Base64::new(key.pair().public_key().to_vec())));
    let ruma::CanonicalJsonValue::Object(mut object) = to_canonical_value(&keys).map_err(|e| {
        tracing::error!(error = %e, "server keys are not canonical JSON");
        ApiError::internal()
    })?
    else {
        return Err(ApiError::internal());
    };
    sign_json(server_name.as_str(), key.as_ref(), &mut object).map_err(|e| {
        tracing::error!(error = %e, "could not sign the server keys");
        ApiError::internal()
    })?;
    Ok(object)
}

/// `GET /_matrix/key/v2/query/{serverName}`: as a notary, one server's keys.
pub(super) async fn query_one(
    services: Arc<Services>,
    req: Req<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response, ApiError> {
    let keys = notarised(&services, &req.body.server_name).await?;
    Ok(get_remote_server_keys::v2::Response::new(keys.into_iter().collect()))
}

/// `POST /_matrix/key/v2/query`: as a notary, several servers' keys.
pub(super) async fn query_batch(
    services: Arc<Services>,
    req: Req<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response, ApiError> {
    let mut all = Vec::new();
    for server in req.body.server_keys.keys().take(MAX_NOTARY_SERVERS) {
        all.extend(notarised(&services, server).await?);
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(all))
}

/// How many servers one notary request may ask about.
const MAX_NOTARY_SERVERS: usize = 32;

/// A server's key list as it signed it (fetched or from the cache), with our signature
/// added; nothing when it cannot be had.
async fn notarised(
    services: &Services,
    server: &ServerName,
) -> Result<Option<Raw<ServerSigningKeys>>, ApiError> {
    let mut object = if server == services.config.server_name {
        own_key_list(services)?
    } else {
        let federation = &services.federation;
        let Ok(keys) = federation.keys.key_list(&federation.client, server).await else { return Ok(None) };
        match serde_json::from_value::<CanonicalJsonObject>(keys) {
            Ok(object) => object,
            Err(_) => return Ok(None),
        }
    };
    sign_json(services.config.server_name.as_str(), services.signing_key.as_ref(), &mut object)
        .map_err(|_| ApiError::internal())?;
    let raw = serde_json::value::to_raw_value(&object).map_err(|_| ApiError::internal())?;
    Ok(Some(Raw::from_json(raw)))
}
