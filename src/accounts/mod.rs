//! Users, devices, access tokens, passwords, profiles, user-interactive auth and
//! registration tokens.
//!
//! Handlers and the admin CLI both call [`Accounts`]; it knows nothing of HTTP. Errors are
//! [`Error`], which the HTTP layer turns into Matrix errors and the CLI into messages.

mod appservice_users;
mod devices;
mod login_tokens;
mod password;
mod profiles;
mod registration_tokens;
mod secrets;
mod shared_secret;
mod uia;
mod user_admin;

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId,
    api::{
        client::uiaa::{AuthData, AuthType, UiaaInfo, UserIdentifier},
        error::ErrorKind,
    },
};
use serde_json::Value as JsonValue;

pub use devices::Device;
pub use login_tokens::TokenLogin;
pub use registration_tokens::RegistrationTokenInfo;
use shared_secret::SharedSecret;
pub use shared_secret::SharedSecretRegistration;
pub use user_admin::{NewUser, UserInfo};

use crate::{
    appservices::Appservices,
    config::{RateLimit, RegistrationMode},
    federation::Federation,
    notifier::Notifier,
    now_ms,
    rate_limiter::RateLimiter,
    storage::{CreateUserError, NewDevice, StorageError, Store, UserRecord},
};

/// The identity behind a valid access token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// What a successful login or registration hands the client.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
}

#[derive(Debug)]
pub enum Error {
    UserInUse,
    InvalidUsername(String),
    UserDeactivated,
    /// Bad credentials or an action the caller may not take; the text says which.
    Forbidden(String),
    GuestAccessForbidden,
    NotFound(String),
    InvalidParam(String),
    /// User-interactive auth is needed (or the last stage failed): answer with this 401.
    AuthRequired(Box<UiaaInfo>),
    /// A token this server did not issue, or that expired.
    UnknownToken(String),
    /// The user id is reserved for an application service (or outside the calling
    /// service's namespaces).
    Exclusive(String),
    /// Too many wrong passwords for the account: try again after this long.
    LimitExceeded(std::time::Duration),
    Storage(StorageError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserInUse => f.write_str("a user with that id already exists"),
            Self::InvalidUsername(why) => write!(f, "invalid username: {why}"),
            Self::UserDeactivated => f.write_str("the account has been deactivated"),
            Self::Forbidden(why)
            | Self::NotFound(why)
            | Self::InvalidParam(why)
            | Self::UnknownToken(why)
            | Self::Exclusive(why) => f.write_str(why),
            Self::GuestAccessForbidden => f.write_str("guest access is not supported"),
            Self::LimitExceeded(_) => {
                f.write_str("too many wrong passwords for this account; try again later")
            }
            Self::AuthRequired(_) => f.write_str("user-interactive authentication required"),
            Self::Storage(e) => e.fmt(f),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// For domains that call accounts as part of their own operations (a profile change goes
/// on to the user's rooms): the failures such a call can have, in their terms.
impl From<Error> for crate::error::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Forbidden(why) => Self::Forbidden(why),
            Error::NotFound(why) => Self::NotFound(why),
            Error::InvalidParam(why) => Self::InvalidParam(why),
            Error::Storage(e) => Self::Storage(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// A registration request, already parsed.
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub auth: Option<AuthData>,
    pub client_ip: Option<String>,
}

/// A password login request, already parsed.
pub struct PasswordLogin {
    /// A localpart or a full user id.
    pub user: String,
    pub password: String,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub client_ip: Option<String>,
}

pub struct Accounts {
    store: Arc<Store>,
    notifier: Arc<Notifier>,
    server_name: OwnedServerName,
    registration: RegistrationMode,
    /// `login.token_login`: login tokens are offered.
    token_login: bool,
    /// Asks other servers for their users' profiles.
    federation: Arc<Federation>,
    /// Shared-secret registration's secret and outstanding nonces.
    shared_secret: SharedSecret,
    /// Whose user namespaces are reserved from registration, and who may act as whom.
    appservices: Arc<Appservices>,
    /// Wrong passwords per account; `None` with rate limits off.
    failed_logins: Option<RateLimiter<OwnedUserId>>,
}

const INVALID_LOGIN: &str = "Invalid username or password";

/// How accounts come to be and log in, from the config.
pub struct AccountRules {
    pub registration: RegistrationMode,
    /// `login.token_login`.
    pub token_login: bool,
    /// `registration.shared_secret`, if set.
    pub shared_secret: Option<String>,
    /// `rate_limits.failed_login`, unless rate limits are off.
    pub failed_login_limit: Option<RateLimit>,
}

impl Accounts {
    pub fn new(
        store: Arc<Store>,
        notifier: Arc<Notifier>,
        server_name: OwnedServerName,
        rules: AccountRules,
        federation: Arc<Federation>,
        appservices: Arc<Appservices>,
    ) -> Self {
        let AccountRules { registration, token_login, shared_secret, failed_login_limit } = rules;
        let shared_secret = SharedSecret::new(shared_secret);
        let failed_logins = failed_login_limit.map(RateLimiter::new);
        Self {
            store,
            notifier,
            server_name,
            registration,
            token_login,
            federation,
            shared_secret,
            appservices,
            failed_logins,
        }
    }

    /// Wakes everyone who tracks `user`'s devices (the store recorded the change when it
    /// removed devices): their clients must stop encrypting for the removed ones.
    fn devices_removed(&self, user: &UserId) -> Result<()> {
        let position = self.store.last_key_change(user)?;
        let peers = self.store.room_peers(user)?;
        self.notifier.notify(peers.iter().map(|u| &**u), position);
        Ok(())
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    /// The user id a new account with this localpart would get, if the localpart is allowed
    /// (spec: lower-case letters, digits and `._=-/+`; the whole id at most 255 bytes).
    /// Upper case is folded to lower case, as other servers do.
    pub fn user_id_for_new_localpart(&self, localpart: &str) -> Result<OwnedUserId> {
        let localpart = localpart.to_lowercase();
        if localpart.is_empty() {
            return Err(Error::InvalidUsername("the username is empty".to_owned()));
        }
        if let Some(c) = localpart
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+'))
        {
            return Err(Error::InvalidUsername(format!(
                "{c:?} is not allowed; use lower-case letters, digits and . _ = - / +"
            )));
        }
        let id = format!("@{localpart}:{}", self.server_name);
        if id.len() > 255 {
            return Err(Error::InvalidUsername("the user id would exceed 255 bytes".to_owned()));
        }
        UserId::parse(id).map_err(|e| Error::InvalidUsername(e.to_string()))
    }

    /// Resolves what a person typed to log in (`alice` or `@alice:server`) to a local user id.
    fn local_user_id(&self, user: &str) -> Option<OwnedUserId> {
        let id = if user.starts_with('@') {
            user.to_lowercase()
        } else {
            format!("@{}:{}", user.to_lowercase(), self.server_name)
        };
        UserId::parse(id).ok().filter(|id| id.server_name() == self.server_name)
    }

    /// Fails with `M_USER_IN_USE`, `M_INVALID_USERNAME` or `M_EXCLUSIVE` unless the
    /// localpart can be registered by a person.
    pub fn check_username_available(&self, localpart: &str) -> Result<OwnedUserId> {
        let user_id = self.user_id_for_new_localpart(localpart)?;
        if let Some(service) = self.appservices.exclusive_owner_of_user(&user_id) {
            return Err(Error::Exclusive(format!(
                "{user_id} is reserved for the application service {:?}",
                service.registered.id()
            )));
        }
        if self.store.user(&user_id)?.is_some() {
            return Err(Error::UserInUse);
        }
        Ok(user_id)
    }

    pub fn registration_mode(&self) -> RegistrationMode {
        self.registration
    }

    /// The UIA stages `/register` offers in the configured mode.
    fn registration_stages(&self) -> &'static [AuthType] {
        match self.registration {
            RegistrationMode::Open => &[AuthType::Dummy],
            RegistrationMode::Token => &[AuthType::RegistrationToken],
            RegistrationMode::Disabled => &[],
        }
    }

    /// `/register`: checks the username, runs UIA, creates the account and (unless
    /// `inhibit_login`) its first device.
    pub async fn register(&self, mut request: Registration) -> Result<(OwnedUserId, Option<LoggedIn>)> {
        if self.registration == RegistrationMode::Disabled {
            return Err(Error::Forbidden(
                "Registration is disabled on this server; ask its administrator for an account".to_owned(),
            ));
        }
        // The username is judged before UIA so a client learns of a taken name at once.
        let user_id = match &request.username {
            Some(name) => self.check_username_available(name)?,
            None => self.check_username_available(&secrets::new_localpart())?,
        };

        let stages = self.registration_stages();
        let session = request.auth.as_ref().and_then(AuthData::session).map(str::to_owned);
        let refuse = |why: &str| {
            Error::AuthRequired(Box::new(uia::challenge(
                stages,
                session.clone(),
                Some((ErrorKind::Forbidden, why)),
            )))
        };
        const INVALID_TOKEN: &str = "This registration token is not valid";
        let registration_token = match request.auth.take() {
            None => return Err(Error::AuthRequired(Box::new(uia::challenge(stages, None, None)))),
            Some(AuthData::Dummy(_)) if self.registration == RegistrationMode::Open => None,
            Some(AuthData::RegistrationToken(t)) if self.registration == RegistrationMode::Token => {
                if !self.registration_token_valid(&t.token)? {
                    return Err(refuse(INVALID_TOKEN));
                }
                Some(t.token)
            }
            Some(_) => return Err(refuse("That authentication type is not offered here")),
        };

        self.create_registered(user_id, request, registration_token.as_deref(), refuse(INVALID_TOKEN)).await
    }

    /// Creates the account a registration asked for and, unless `inhibit_login`, its first
    /// device. `token_spent` is the answer when the registration token was used up meanwhile.
    async fn create_registered(
        &self,
        user_id: OwnedUserId,
        request: Registration,
        registration_token: Option<&str>,
        token_spent: Error,
    ) -> Result<(OwnedUserId, Option<LoggedIn>)> {
        let now = now_ms();
        let password_hash = match request.password {
            Some(password) => Some(password::hash(password).await),
            None => None,
        };
        let record = UserRecord::new(password_hash, false, now);
        let login = (!request.inhibit_login).then(|| {
            self.new_device(request.device_id, request.initial_device_display_name, request.client_ip)
        });
        let profile = default_profile(&user_id);
        self.store
            .create_user(&user_id, &record, &profile, login.as_ref().map(|(d, _)| d), registration_token)
            .await
            .map_err(|e| match e {
                CreateUserError::UserExists => Error::UserInUse,
                // Spent by a concurrent registration since the check above: the same answer
                // as any other unusable token, so the client can ask for another one.
                CreateUserError::RegistrationTokenInvalid => token_spent,
                CreateUserError::Storage(e) => Error::Storage(e),
            })?;
        tracing::info!(%user_id, "registered");
        let logged_in = login.map(|(device, access_token)| LoggedIn {
            user_id: user_id.clone(),
            device_id: device.device_id,
            access_token,
        });
        Ok((user_id, logged_in))
    }

    /// A device with a fresh token, not yet stored.
    fn new_device(
        &self,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<String>,
    ) -> (NewDevice, String) {
        let access_token = secrets::new_access_token();
        let device = NewDevice {
            device_id: device_id.unwrap_or_else(|| secrets::new_device_id().into()),
            display_name,
            token_hash: secrets::hash_token(&access_token),
            ip,
            now_ms: now_ms(),
        };
        (device, access_token)
    }

    /// `POST /login` with `m.login.password`.
    pub async fn login_with_password(&self, request: PasswordLogin) -> Result<LoggedIn> {
        let user_id =
            self.local_user_id(&request.user).ok_or_else(|| Error::Forbidden(INVALID_LOGIN.to_owned()))?;
        self.check_password(&user_id, &request.password).await?;
        let (device, access_token) =
            self.new_device(request.device_id, request.initial_device_display_name, request.client_ip);
        self.store.add_device(&user_id, &device).await?;
        Ok(LoggedIn { user_id, device_id: device.device_id, access_token })
    }

    /// Succeeds only for an active local user whose password is `password`.
    async fn check_password(&self, user_id: &UserId, password: &str) -> Result<()> {
        // An account whose wrong guesses used up its allowance is not even checked: the
        // answer would say nothing, and the hash costs the server time.
        if let Some(limiter) = &self.failed_logins {
            limiter.peek(user_id).map_err(Error::LimitExceeded)?;
        }
        let wrong = || {
            if let Some(limiter) = &self.failed_logins {
                let _ = limiter.check(user_id);
            }
            Error::Forbidden(INVALID_LOGIN.to_owned())
        };
        let user = self.store.user(user_id)?.ok_or_else(wrong)?;
        if user.deactivated {
            return Err(Error::UserDeactivated);
        }
        let Some(hash) = user.password_hash else {
            return Err(wrong());
        };
        if !password::verify(hash.clone(), password.to_owned()).await {
            return Err(wrong());
        }
        if !password::is_current(&hash) {
            let rehashed = password::hash(password.to_owned()).await;
            // Only over the hash just verified: a password changed meanwhile stays changed.
            let replaced = self.store.update_user(user_id, |user| {
                if user.password_hash.as_ref() == Some(&hash) {
                    user.password_hash = Some(rehashed.clone());
                }
            });
            // The old hash still works, so a failure here need not fail the login.
            if let Err(error) = replaced.await {
                tracing::warn!(%user_id, %error, "could not store the password's new hash");
            }
        }
        Ok(())
    }

    /// Resolves an access token. `None` for tokens that are unknown or were revoked.
    pub fn authenticate(&self, access_token: &str) -> Result<Option<Session>> {
        Ok(self
            .store
            .token_owner(&secrets::hash_token(access_token))?
            .map(|owner| Session { user_id: owner.user_id, device_id: owner.device_id }))
    }

    /// UIA with `m.login.password` for an action by `session`'s user on itself.
    pub async fn authorize_with_password(&self, session: &Session, auth: Option<AuthData>) -> Result<()> {
        const STAGES: &[AuthType] = &[AuthType::Password];
        let Some(auth) = auth else {
            return Err(Error::AuthRequired(Box::new(uia::challenge(STAGES, None, None))));
        };
        let session_id = auth.session().map(str::to_owned);
        let refuse = |why: &str| {
            Error::AuthRequired(Box::new(uia::challenge(
                STAGES,
                session_id.clone(),
                Some((ErrorKind::Forbidden, why)),
            )))
        };
        let AuthData::Password(password) = auth else {
            return Err(refuse("Only m.login.password is offered for this action"));
        };
        let claimed = match &password.identifier {
            UserIdentifier::Matrix(id) => self.local_user_id(&id.user),
            _ => None,
        };
        if claimed.as_deref() != Some(session.user_id.as_ref()) {
            return Err(refuse("The identifier does not match the logged-in user"));
        }
        match self.check_password(&session.user_id, &password.password).await {
            Ok(()) => Ok(()),
            Err(Error::Forbidden(_)) => Err(refuse(INVALID_LOGIN)),
            Err(other) => Err(other),
        }
    }

    /// `/logout`: the token stops working and its device is deleted.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.store.remove_devices(&session.user_id, std::slice::from_ref(&session.device_id)).await?;
        self.devices_removed(&session.user_id)
    }

    /// `/logout/all`: every token of the user stops working.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        self.store.remove_devices_except(user_id, None).await?;
        self.devices_removed(user_id)
    }

    /// Sets a new password; with `keep_device`, every other device is logged out, and with
    /// `None` all of them are.
    pub async fn set_password(
        &self,
        user_id: &UserId,
        new_password: String,
        logout: Logout<'_>,
    ) -> Result<()> {
        let hash = password::hash(new_password).await;
        let found = self.store.update_user(user_id, |u| u.password_hash = Some(hash.clone())).await?;
        if !found {
            return Err(Error::NotFound(format!("no user {user_id}")));
        }
        match logout {
            Logout::None => return Ok(()),
            Logout::AllBut(device) => self.store.remove_devices_except(user_id, Some(device)).await?,
            Logout::All => self.store.remove_devices_except(user_id, None).await?,
        }
        self.devices_removed(user_id)
    }

    /// Deactivates a local account; `erase` records that its owner asked to be forgotten.
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> Result<()> {
        if !self.store.deactivate_user(user_id, erase).await? {
            return Err(Error::NotFound(format!("no user {user_id}")));
        }
        self.devices_removed(user_id)?;
        tracing::info!(%user_id, "deactivated");
        Ok(())
    }

    /// Whether a local account with this id exists (deactivated ones included).
    pub fn exists(&self, user_id: &UserId) -> crate::storage::Result<bool> {
        Ok(self.store.user(user_id)?.is_some())
    }

    /// Resolves a name given to an admin command: a localpart or a full id of this server.
    pub fn existing_local_user(&self, name: &str) -> Result<OwnedUserId> {
        self.local_user_id(name)
            .filter(|id| self.store.user(id).ok().flatten().is_some())
            .ok_or_else(|| Error::NotFound(format!("no user {name} on {}", self.server_name)))
    }
}

/// Which devices a password change logs out.
#[derive(Debug, Clone, Copy)]
pub enum Logout<'a> {
    None,
    AllBut(&'a DeviceId),
    All,
}

/// New users start with their localpart as display name, as Element expects.
fn default_profile(user_id: &UserId) -> BTreeMap<String, JsonValue> {
    BTreeMap::from([("displayname".to_owned(), JsonValue::String(user_id.localpart().to_owned()))])
}

/// `Accounts` on a fresh store in a scratch directory named `name`, for unit tests.
#[cfg(test)]
fn accounts_for_test(name: &str, token_login: bool) -> (Arc<Store>, Accounts) {
    let dir = crate::storage::scratch_dir(name);
    let store = Arc::new(Store::open(&dir, 8).unwrap());
    let server_name: OwnedServerName = "example.org".try_into().unwrap();
    let key = Arc::new(crate::signing_key::SigningKey::load_or_generate(&dir).unwrap());
    let federation = Arc::new(Federation::new(
        store.clone(),
        server_name.clone(),
        key,
        crate::config::FederationConfig::default(),
        Arc::default(),
    ));
    let notifier = Arc::new(Notifier::default());
    let accounts = Accounts::new(
        store.clone(),
        notifier,
        server_name.clone(),
        AccountRules {
            registration: RegistrationMode::Open,
            token_login,
            shared_secret: None,
            failed_login_limit: None,
        },
        federation,
        Arc::new(Appservices::load(store.clone(), server_name, &[]).unwrap()),
    );
    (store, accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password stored with other argon2 settings (an older Myelin's 19 MiB) is hashed
    /// again with the current ones when its owner logs in; a wrong password changes nothing.
    #[tokio::test]
    async fn a_login_rehashes_a_password_stored_with_older_settings() {
        let (store, accounts) = accounts_for_test("rehash-on-login", false);
        let user_id = accounts.create_user(NewUser::named("alice")).await.unwrap();
        let old = password::hash_with_older_settings("correct horse");
        store.update_user(&user_id, |user| user.password_hash = Some(old.clone())).await.unwrap();
        let stored = || store.user(&user_id).unwrap().unwrap().password_hash.unwrap();

        assert!(accounts.check_password(&user_id, "battery staple").await.is_err());
        assert_eq!(stored(), old);

        accounts.check_password(&user_id, "correct horse").await.unwrap();
        let rehashed = stored();
        assert_ne!(rehashed, old);
        assert!(password::is_current(&rehashed));
        accounts.check_password(&user_id, "correct horse").await.unwrap();
        assert_eq!(stored(), rehashed, "a current hash is left alone");
    }
}
