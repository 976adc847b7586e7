//! The accounts side of application services: a service registers and logs in the users
//! of its namespaces without passwords or UIA, and acts as them with its own token.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

use super::{Accounts, Error, LoggedIn, Registration, Result, Session, default_profile};
use crate::{
    appservices::Registered,
    now_ms,
    storage::{CreateUserError, UserRecord},
};

/// The device a service's request is made from when it names none. Not a device anyone
/// logged in: to-device messages and keys for it go nowhere, and `/whoami` leaves it out.
pub const APPSERVICE_DEVICE: &str = "_appservice";

impl Accounts {
    /// The user a service's request acts as: `user_id` if given (a local user of the
    /// service's namespaces who exists), else the service's own user; from `device_id` if
    /// given (one of that user's devices).
    pub fn appservice_session(
        &self,
        service: &Registered,
        user_id: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<Session> {
        let user_id = match user_id {
            None => service.sender.clone(),
            Some(user_id) => {
                let user_id = UserId::parse(user_id)
                    .map_err(|e| Error::InvalidParam(format!("user_id {user_id:?}: {e}")))?;
                if user_id.server_name() != self.server_name || !service.owns_user(&user_id) {
                    return Err(Error::Forbidden(format!(
                        "The application service {:?} cannot act as {user_id}",
                        service.id()
                    )));
                }
                if user_id != service.sender && self.store.user(&user_id)?.is_none() {
                    return Err(Error::Forbidden(format!(
                        "The application service {:?} has not registered {user_id}",
                        service.id()
                    )));
                }
                user_id
            }
        };
        let device_id: OwnedDeviceId = match device_id {
            None => APPSERVICE_DEVICE.into(),
            Some(device_id) => {
                let device_id: OwnedDeviceId = device_id.into();
                if self.store.device(&user_id, &device_id)?.is_none() {
                    return Err(Error::Forbidden(format!("{user_id} has no device {device_id}")));
                }
                device_id
            }
        };
        Ok(Session { user_id, device_id })
    }

    /// Whether a session is a service acting without a device of its own.
    pub fn is_appservice_device(device_id: &DeviceId) -> bool {
        device_id.as_str() == APPSERVICE_DEVICE
    }

    /// `/register` with `m.login.application_service`: a user of the service's namespaces,
    /// whatever the registration mode, without UIA.
    pub async fn register_for_appservice(
        &self,
        service: &Registered,
        request: Registration,
    ) -> Result<(OwnedUserId, Option<LoggedIn>)> {
        let Some(username) = &request.username else {
            return Err(Error::InvalidParam(
                "an application service must name the user to register".to_owned(),
            ));
        };
        let user_id = self.user_id_for_new_localpart(username)?;
        if !service.owns_user(&user_id) {
            return Err(Error::Exclusive(format!(
                "{user_id} is outside the namespaces of the application service {:?}",
                service.id()
            )));
        }
        if self.store.user(&user_id)?.is_some() {
            return Err(Error::UserInUse);
        }
        // No registration token is spent, so the last argument is never the answer.
        self.create_registered(user_id, request, None, Error::UserInUse).await
    }

    /// `/login` with `m.login.application_service`: a new device for a user of the
    /// service's namespaces.
    pub async fn login_for_appservice(
        &self,
        service: &Registered,
        user: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<String>,
    ) -> Result<LoggedIn> {
        let forbidden =
            || Error::Forbidden(format!("The application service {:?} cannot log in {user}", service.id()));
        let user_id = self.local_user_id(user).ok_or_else(forbidden)?;
        if !service.owns_user(&user_id) || self.store.user(&user_id)?.is_none() {
            return Err(forbidden());
        }
        let (device, access_token) = self.new_device(device_id, display_name, ip);
        self.store.add_device(&user_id, &device).await?;
        Ok(LoggedIn { user_id, device_id: device.device_id, access_token })
    }

    /// Creates the service's own user if it does not exist yet, so that the service can
    /// act as it from the start (Synapse does the same).
    pub async fn ensure_appservice_user(&self, service: &Registered) -> Result<()> {
        let user_id = &service.sender;
        if self.store.user(user_id)?.is_some() {
            return Ok(());
        }
        let record = UserRecord::new(None, false, now_ms());
        match self.store.create_user(user_id, &record, &default_profile(user_id), None, None).await {
            Ok(()) | Err(CreateUserError::UserExists) => Ok(()),
            Err(CreateUserError::RegistrationTokenInvalid) => Ok(()),
            Err(CreateUserError::Storage(e)) => Err(e.into()),
        }
    }
}
