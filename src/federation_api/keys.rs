//! `GET /_matrix/key/v2/server`: our signing key, signed by itself.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, ServerSigningKeyId,
    api::federation::discovery::{ServerSigningKeys, VerifyKey, get_server_keys},
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
    let raw = serde_json::value::to_raw_value(&object).map_err(|_| ApiError::internal())?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
}
