//! Registration and the checks clients make before it.

use std::sync::Arc;

use ruma::api::client::account::{
    check_registration_token_validity, get_username_availability,
    register::{self, LoginType, RegistrationKind},
};

use crate::{
    accounts::{self, Registration},
    config::RegistrationMode,
    http::{
        ApiError,
        router::{RateLimitClass, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma_limited(RateLimitClass::Register, register);
    router.ruma_limited(RateLimitClass::Register, availability);
    // The spec asks for a rate limit here: without one, tokens could be guessed freely.
    router.ruma_limited(RateLimitClass::Register, token_validity);
}

async fn register(
    services: Arc<Services>,
    req: Req<register::v3::Request>,
) -> Result<register::v3::Response, ApiError> {
    let request = req.body;
    if request.kind == RegistrationKind::Guest {
        return Err(accounts::Error::GuestAccessForbidden.into());
    }
    let by_appservice = request.login_type == Some(LoginType::ApplicationService);
    let registration = Registration {
        username: request.username,
        password: request.password,
        device_id: request.device_id,
        initial_device_display_name: request.initial_device_display_name,
        inhibit_login: request.inhibit_login,
        auth: request.auth,
        client_ip: Some(req.client_ip.to_string()),
    };
    let (user_id, logged_in) = match (req.auth, by_appservice) {
        (Some(service), true) => {
            services.accounts.register_for_appservice(&service.registered, registration).await?
        }
        (None, true) => return Err(ApiError::missing_token()),
        // A service registering without saying so gets the answer Synapse gives.
        (Some(_), false) => {
            return Err(ApiError::bad_json(
                "An application service registers with type m.login.application_service",
            ));
        }
        (None, false) => services.accounts.register(registration).await?,
    };
    let mut response = register::v3::Response::new(user_id);
    if let Some(logged_in) = logged_in {
        response.access_token = Some(logged_in.access_token);
        response.device_id = Some(logged_in.device_id);
    }
    Ok(response)
}

async fn availability(
    services: Arc<Services>,
    req: Req<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response, ApiError> {
    services.accounts.check_username_available(&req.body.username)?;
    Ok(get_username_availability::v3::Response::new(true))
}

async fn token_validity(
    services: Arc<Services>,
    req: Req<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response, ApiError> {
    if services.accounts.registration_mode() != RegistrationMode::Token {
        return Err(ApiError::forbidden("This server does not use registration tokens"));
    }
    let valid = services.accounts.registration_token_valid(&req.body.token)?;
    Ok(check_registration_token_validity::v1::Response::new(valid))
}
