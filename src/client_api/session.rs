//! Logging in and out.

use std::sync::Arc;

use ruma::api::client::{
    session::{
        get_login_types::{
            self,
            v3::{LoginType, PasswordLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all,
    },
    uiaa::UserIdentifier,
};

use crate::{
    accounts::PasswordLogin,
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(login_types);
    router.ruma_limited(RateLimitClass::Login, login);
    router.ruma(logout);
    router.ruma(logout_all);
}

async fn login_types(
    _: Arc<Services>,
    _: Req<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response, ApiError> {
    Ok(get_login_types::v3::Response::new(vec![LoginType::Password(PasswordLoginType::new())]))
}

async fn login(
    services: Arc<Services>,
    req: Req<login::v3::Request>,
) -> Result<login::v3::Response, ApiError> {
    let request = req.body;
    let LoginInfo::Password(password) = request.login_info else {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "Only m.login.password is supported",
        ));
    };
    #[allow(deprecated)] // `user` predates `identifier`; older clients still send it.
    let user = match (password.identifier, password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user,
        (None, Some(user)) => user,
        (Some(_), _) => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::Unknown,
                "Only m.id.user identifiers are supported",
            ));
        }
        (None, None) => return Err(ApiError::missing_param("identifier is required")),
    };
    let logged_in = services
        .accounts
        .login_with_password(PasswordLogin {
            user,
            password: password.password,
            device_id: request.device_id,
            initial_device_display_name: request.initial_device_display_name,
            client_ip: Some(req.client_ip.to_string()),
        })
        .await?;
    Ok(login::v3::Response::new(logged_in.user_id, logged_in.access_token, logged_in.device_id))
}

async fn logout(
    services: Arc<Services>,
    req: Req<logout::v3::Request>,
) -> Result<logout::v3::Response, ApiError> {
    services.accounts.logout(&req.auth).await?;
    Ok(logout::v3::Response::new())
}

async fn logout_all(
    services: Arc<Services>,
    req: Req<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response, ApiError> {
    services.accounts.logout_all(&req.auth.user_id).await?;
    Ok(logout_all::v3::Response::new())
}
