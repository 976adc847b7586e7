//! Accounts as administrators manage them: created directly (no UIA), listed with their
//! profiles, promoted, reactivated and shadow-banned. Every admin door (the CLI, the
//! Synapse-compatible admin API) comes here.

use ruma::{OwnedUserId, UserId};
use serde_json::Value as JsonValue;

use super::{Accounts, Error, LoggedIn, Result, default_profile, password};
use crate::{
    now_ms,
    storage::{CreateUserError, UserRecord},
};

/// An account an administrator creates.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// A localpart or a full user id of this server.
    pub name: String,
    pub password: Option<String>,
    pub admin: bool,
    /// The display name; the localpart when `None`.
    pub displayname: Option<String>,
}

impl NewUser {
    /// A plain user without password.
    pub fn named(name: &str) -> Self {
        Self { name: name.to_owned(), password: None, admin: false, displayname: None }
    }
}

/// A local account as administrators see it.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub user_id: OwnedUserId,
    pub admin: bool,
    pub deactivated: bool,
    /// Deactivated at its owner's request to be forgotten.
    pub erased: bool,
    pub shadow_banned: bool,
    /// Milliseconds since the epoch.
    pub created_ts: u64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// The latest activity of any of its devices, in milliseconds since the epoch.
    pub last_seen_ts: Option<u64>,
}

impl Accounts {
    /// Creates an account directly: no UIA, no device.
    pub async fn create_user(&self, user: NewUser) -> Result<OwnedUserId> {
        Ok(self.create(user, false).await?.0)
    }

    /// Creates an account and logs it in on a new device.
    pub async fn create_user_and_log_in(&self, user: NewUser) -> Result<(OwnedUserId, LoggedIn)> {
        let (user_id, login) = self.create(user, true).await?;
        Ok((user_id, login.expect("a login was asked for")))
    }

    async fn create(&self, user: NewUser, log_in: bool) -> Result<(OwnedUserId, Option<LoggedIn>)> {
        let localpart = match user.name.strip_prefix('@') {
            Some(_) => self
                .own_user_id(&user.name)
                .map_err(|e| Error::InvalidUsername(e.to_string()))?
                .localpart()
                .to_owned(),
            None => user.name,
        };
        let user_id = self.user_id_for_new_localpart(&localpart)?;
        let password_hash = match user.password {
            Some(p) => Some(password::hash(p).await),
            None => None,
        };
        let record = UserRecord::new(password_hash, user.admin, now_ms());
        let mut profile = default_profile(&user_id);
        if let Some(name) = user.displayname {
            profile.insert("displayname".to_owned(), JsonValue::String(name));
        }
        let login = log_in.then(|| self.new_device(None, None, None));
        self.store
            .create_user(&user_id, &record, &profile, login.as_ref().map(|(device, _)| device), None)
            .await
            .map_err(|e| match e {
                CreateUserError::UserExists => Error::UserInUse,
                CreateUserError::RegistrationTokenInvalid => unreachable!("no token was given"),
                CreateUserError::Storage(e) => Error::Storage(e),
            })?;
        tracing::info!(%user_id, admin = user.admin, "user created by an administrator");
        let login = login.map(|(device, access_token)| LoggedIn {
            user_id: user_id.clone(),
            device_id: device.device_id,
            access_token,
        });
        Ok((user_id, login))
    }

    /// Parses a full user id and checks it belongs to this server (it need not exist).
    pub fn own_user_id(&self, user_id: &str) -> Result<OwnedUserId> {
        let id = UserId::parse(user_id).map_err(|e| Error::InvalidParam(format!("invalid user id: {e}")))?;
        if id.server_name() != self.server_name {
            return Err(Error::InvalidParam(format!(
                "{user_id} belongs to another server; this one is {}",
                self.server_name
            )));
        }
        Ok(id)
    }

    /// Whether the user is a server administrator (an unknown user is not).
    pub fn is_admin(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.store.user(user_id)?.is_some_and(|user| user.admin))
    }

    /// Whether the user's sends are to be swallowed (an unknown user's are not).
    pub fn is_shadow_banned(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.store.user(user_id)?.is_some_and(|user| user.shadow_banned))
    }

    /// Makes a user a server administrator or takes that away.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        self.update(user_id, |user| user.admin = admin).await?;
        tracing::info!(%user_id, admin, "admin flag changed");
        Ok(())
    }

    pub async fn set_shadow_banned(&self, user_id: &UserId, banned: bool) -> Result<()> {
        self.update(user_id, |user| user.shadow_banned = banned).await?;
        tracing::info!(%user_id, banned, "shadow ban changed");
        Ok(())
    }

    /// Lets a deactivated account log in again, with a new password (it lost its old one).
    pub async fn reactivate(&self, user_id: &UserId, new_password: String) -> Result<()> {
        let hash = password::hash(new_password).await;
        self.update(user_id, |user| {
            user.deactivated = false;
            user.erased = false;
            user.password_hash = Some(hash.clone());
        })
        .await?;
        tracing::info!(%user_id, "reactivated");
        Ok(())
    }

    async fn update(&self, user_id: &UserId, change: impl Fn(&mut UserRecord)) -> Result<()> {
        if !self.store.update_user(user_id, change).await? {
            return Err(Error::NotFound(format!("no user {user_id}")));
        }
        Ok(())
    }

    /// One local account; `NotFound` when there is none.
    pub fn user_info(&self, user_id: &UserId) -> Result<UserInfo> {
        let record =
            self.store.user(user_id)?.ok_or_else(|| Error::NotFound(format!("no user {user_id}")))?;
        self.info_of(user_id.to_owned(), record)
    }

    /// Every local account, in user id order.
    pub fn user_infos(&self) -> Result<Vec<UserInfo>> {
        self.store.users()?.into_iter().map(|(user_id, record)| self.info_of(user_id, record)).collect()
    }

    fn info_of(&self, user_id: OwnedUserId, record: UserRecord) -> Result<UserInfo> {
        let profile = self.store.profile(&user_id)?.unwrap_or_default();
        let text = |field: &str| profile.get(field).and_then(JsonValue::as_str).map(str::to_owned);
        let last_seen_ts =
            self.store.devices(&user_id)?.into_iter().filter_map(|(_, device)| device.last_seen_ts).max();
        Ok(UserInfo {
            displayname: text("displayname"),
            avatar_url: text("avatar_url"),
            last_seen_ts,
            user_id,
            admin: record.admin,
            deactivated: record.deactivated,
            erased: record.erased,
            shadow_banned: record.shadow_banned,
            created_ts: record.created_ts,
        })
    }
}
