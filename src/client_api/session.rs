//! Logging in and out, and login tokens for logging in another client.

use std::sync::Arc;

use ruma::api::client::{
    session::{
        get_login_token,
        get_login_types::{
            self,
            v3::{ApplicationServiceLoginType, LoginType, PasswordLoginType, TokenLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all,
    },
    uiaa::UserIdentifier,
};

use crate::{
    accounts::{LoggedIn, PasswordLogin, TokenLogin},
    config::Config,
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router, config: &Config) {
    router.ruma(login_types);
    router.ruma_limited(RateLimitClass::Login, login);
    router.ruma(logout);
    router.ruma(logout_all);
    // Off, the endpoint is not there at all (404 M_UNRECOGNIZED), as for any optional
    // endpoint a server does not offer. It shares the login rate limit: a token is a login.
    if config.login.token_login {
        router.ruma_limited(RateLimitClass::Login, get_token);
    }
}

async fn login_types(
    services: Arc<Services>,
    _: Req<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response, ApiError> {
    let mut flows = vec![LoginType::Password(PasswordLoginType::new())];
    if services.accounts.token_login_enabled() {
        let mut token = TokenLoginType::new();
        token.get_login_token = true;
        flows.push(LoginType::Token(token));
    }
    if !services.appservices.is_empty() {
        flows.push(LoginType::ApplicationService(ApplicationServiceLoginType::new()));
    }
    Ok(get_login_types::v3::Response::new(flows))
}

async fn login(
    services: Arc<Services>,
    req: Req<login::v3::Request>,
) -> Result<login::v3::Response, ApiError> {
    let request = req.body;
    let client_ip = Some(req.client_ip.to_string());
    let password = match request.login_info {
        LoginInfo::Password(password) => password,
        // Not offered unless configured: then it is an unsupported login type like any other.
        LoginInfo::Token(token) if services.accounts.token_login_enabled() => {
            let logged_in = services
                .accounts
                .login_with_token(TokenLogin {
                    token: token.token,
                    device_id: request.device_id,
                    initial_device_display_name: request.initial_device_display_name,
                    client_ip,
                })
                .await?;
            return Ok(response(logged_in));
        }
        LoginInfo::ApplicationService(login) => {
            let Some(service) = req.auth else { return Err(ApiError::missing_token()) };
            #[allow(deprecated)] // `user` predates `identifier`.
            let user = match (login.identifier, login.user) {
                (Some(UserIdentifier::Matrix(id)), _) => id.user,
                (None, Some(user)) => user,
                _ => return Err(ApiError::missing_param("identifier is required")),
            };
            let logged_in = services
                .accounts
                .login_for_appservice(
                    &service.registered,
                    &user,
                    request.device_id,
                    request.initial_device_display_name,
                    client_ip,
                )
                .await?;
            return Ok(response(logged_in));
        }
        _ => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::Unknown,
                "Only the login types GET /login offers are supported",
            ));
        }
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
            client_ip,
        })
        .await?;
    Ok(response(logged_in))
}

fn response(logged_in: LoggedIn) -> login::v3::Response {
    login::v3::Response::new(logged_in.user_id, logged_in.access_token, logged_in.device_id)
}

/// `POST /login/get_token`: a single-use token for another client, after UIA.
async fn get_token(
    services: Arc<Services>,
    req: Req<get_login_token::v1::Request>,
) -> Result<get_login_token::v1::Response, ApiError> {
    let (token, lifetime) = services.accounts.issue_login_token(&req.auth, req.body.auth).await?;
    Ok(get_login_token::v1::Response::new(lifetime, token))
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
