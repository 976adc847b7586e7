//! Profiles: display name, avatar and (spec v1.16) custom fields, all stored as one JSON
//! object per user.

use std::sync::Arc;

use ruma::{
    api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field},
    profile::ProfileFieldValue,
};

use crate::{
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(get_all);
    router.ruma(get_field);
    router.ruma(set_field);
    router.ruma(delete_field);
}

async fn get_all(
    services: Arc<Services>,
    req: Req<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response, ApiError> {
    let profile = services.accounts.profile_anywhere(&req.body.user_id).await?;
    Ok(profile.into_iter().collect())
}

async fn get_field(
    services: Arc<Services>,
    req: Req<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response, ApiError> {
    let profile = services.accounts.profile_anywhere(&req.body.user_id).await?;
    let field = req.body.field.as_str();
    let value = profile
        .get(field)
        .ok_or_else(|| ApiError::not_found(format!("{} has no {field}", req.body.user_id)))?;
    let value = ProfileFieldValue::new(field, value.clone())
        .map_err(|e| ApiError::invalid_param(format!("stored {field} is malformed: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

async fn set_field(
    services: Arc<Services>,
    req: Req<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response, ApiError> {
    let value = req.body.value;
    let field = value.field_name();
    let json = value.value().into_owned();
    services
        .rooms
        .set_profile_field(&req.auth.user_id, &req.body.user_id, field.as_str(), Some(json))
        .await?;
    Ok(set_profile_field::v3::Response::new())
}

async fn delete_field(
    services: Arc<Services>,
    req: Req<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response, ApiError> {
    services
        .rooms
        .set_profile_field(&req.auth.user_id, &req.body.user_id, req.body.field.as_str(), None)
        .await?;
    Ok(delete_profile_field::v3::Response::new())
}
