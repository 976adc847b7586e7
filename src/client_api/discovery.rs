//! What a client asks before logging in: versions, `.well-known`, capabilities.

use std::sync::Arc;

use ruma::{
    RoomVersionId,
    api::client::discovery::{
        discover_homeserver::{self, HomeserverInfo},
        get_capabilities::{
            self,
            v3::{
                Capabilities, GetLoginTokenCapability, ProfileFieldsCapability, RoomVersionStability,
                RoomVersionsCapability,
            },
        },
        get_supported_versions,
    },
};

use crate::{
    http::{
        ApiError,
        router::{JsonObject, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(versions);
    router.ruma(well_known);
    router.ruma(capabilities);
}

/// Spec versions whose every required endpoint for clients we serve. Raise this only
/// together with what the version switches on in clients (see CLIENTS.md).
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
    "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
];

/// Unstable features clients look for before they use them, each implemented here:
/// native sliding sync (Element X refuses a server without it), and cross-signing, which
/// Element Web sets up only when it sees this flag.
const UNSTABLE_FEATURES: &[&str] = &["org.matrix.simplified_msc3575", "org.matrix.e2e_cross_signing"];

async fn versions(
    _: Arc<Services>,
    _: Req<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response, ApiError> {
    let mut response =
        get_supported_versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features =
        UNSTABLE_FEATURES.iter().map(|feature| ((*feature).to_owned(), true)).collect();
    Ok(response)
}

async fn well_known(
    services: Arc<Services>,
    _: Req<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response, ApiError> {
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(services.config.client_base_url())))
}

/// Capabilities listed even when they say what clients assume without them: ruma leaves
/// out a capability at its default, and clients differ in what they assume for a missing one.
const ALWAYS_LISTED: &[&str] =
    &["m.change_password", "m.set_displayname", "m.set_avatar_url", "m.3pid_changes", "m.get_login_token"];

async fn capabilities(
    services: Arc<Services>,
    _: Req<get_capabilities::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let mut capabilities = Capabilities::new();
    capabilities.change_password.enabled = true;
    capabilities.profile_fields = Some(ProfileFieldsCapability::new(true));
    // Deprecated by `m.profile_fields`, but clients older than spec v1.16 read only these.
    #[allow(deprecated)]
    {
        capabilities.set_displayname.enabled = true;
        capabilities.set_avatar_url.enabled = true;
    }
    capabilities.thirdparty_id_changes.enabled = false;
    capabilities.get_login_token = GetLoginTokenCapability::new(services.accounts.token_login_enabled());
    capabilities.room_versions = RoomVersionsCapability::new(
        RoomVersionId::V12,
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
            .into_iter()
            .map(|v| (v, RoomVersionStability::Stable))
            .collect(),
    );
    let mut listed = serde_json::to_value(&capabilities).map_err(|_| ApiError::internal())?;
    for name in ALWAYS_LISTED {
        if let (Some(object), Some(value)) = (listed.as_object_mut(), capabilities.get(name)) {
            object.insert((*name).to_owned(), value.into_owned());
        }
    }
    Ok(JsonObject(serde_json::json!({ "capabilities": listed })))
}
