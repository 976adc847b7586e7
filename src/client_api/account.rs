//! The logged-in user's own account: whoami, password, deactivation.

use std::sync::Arc;

use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};

use crate::{
    accounts::{Accounts, Logout},
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(whoami);
    router.ruma(change_password);
    router.ruma(deactivate);
}

async fn whoami(_: Arc<Services>, req: Req<whoami::v3::Request>) -> Result<whoami::v3::Response, ApiError> {
    let mut response = whoami::v3::Response::new(req.auth.user_id, false);
    // An application service acting without a device has none to name.
    if !Accounts::is_appservice_device(&req.auth.device_id) {
        response.device_id = Some(req.auth.device_id);
    }
    Ok(response)
}

async fn change_password(
    services: Arc<Services>,
    req: Req<change_password::v3::Request>,
) -> Result<change_password::v3::Response, ApiError> {
    // The endpoint's token is optional in the spec only for email-based resets, which
    // Myelin does not offer.
    let session = req.auth.ok_or_else(ApiError::missing_token)?;
    services.accounts.authorize_with_password(&session, req.body.auth).await?;
    let logout = if req.body.logout_devices { Logout::AllBut(&session.device_id) } else { Logout::None };
    services.accounts.set_password(&session.user_id, req.body.new_password, logout).await?;
    Ok(change_password::v3::Response::new())
}

async fn deactivate(
    services: Arc<Services>,
    req: Req<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response, ApiError> {
    let session = req.auth.ok_or_else(ApiError::missing_token)?;
    services.accounts.authorize_with_password(&session, req.body.auth).await?;
    services.rooms.deactivate_account(&session.user_id, req.body.erase).await?;
    // Myelin keeps no third-party identifiers, so there is nothing to unbind.
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}
