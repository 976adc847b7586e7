//! Login tokens (`m.login.token`): a logged-in user, after confirming their password, gets
//! a token with which one other client logs in as them within a short time (spec v1.7,
//! `POST /login/get_token`). Offered only when `login.token_login` is on.

use std::time::Duration;

use ruma::api::client::uiaa::AuthData;

use super::{Accounts, Error, LoggedIn, Result, Session, secrets};
use crate::{now_ms, storage::LoginTokenRecord};

/// How long a login token works: the spec recommends two minutes.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

const INVALID_TOKEN: &str = "This login token is unknown, used or expired";

/// An `m.login.token` login request, already parsed.
pub struct TokenLogin {
    pub token: String,
    pub device_id: Option<ruma::OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub client_ip: Option<String>,
}

impl Accounts {
    /// Whether users may make login tokens (and log in with them).
    pub fn token_login_enabled(&self) -> bool {
        self.token_login
    }

    /// `POST /login/get_token`: after UIA (asked again on every call, as the spec requires,
    /// since no UIA state outlives a request), a new single-use token for the session's
    /// user, and how long it works.
    pub async fn issue_login_token(
        &self,
        session: &Session,
        auth: Option<AuthData>,
    ) -> Result<(String, Duration)> {
        if !self.token_login {
            return Err(Error::Forbidden("Login tokens are not offered on this server".to_owned()));
        }
        self.authorize_with_password(session, auth).await?;
        let token = secrets::new_login_token();
        let now = now_ms();
        let record = LoginTokenRecord {
            user_id: session.user_id.clone(),
            expires_ts: now + LOGIN_TOKEN_LIFETIME.as_millis() as u64,
        };
        self.store.add_login_token(&secrets::hash_token(&token), &record, now).await?;
        tracing::info!(user_id = %session.user_id, "login token issued");
        Ok((token, LOGIN_TOKEN_LIFETIME))
    }

    /// `POST /login` with `m.login.token`: spends the token (whether or not the login
    /// then succeeds) and logs its user in on a new device.
    pub async fn login_with_token(&self, request: TokenLogin) -> Result<LoggedIn> {
        if !self.token_login {
            return Err(Error::Forbidden(INVALID_TOKEN.to_owned()));
        }
        let record = self
            .store
            .take_login_token(&secrets::hash_token(&request.token))
            .await?
            .filter(|record| now_ms() < record.expires_ts)
            .ok_or_else(|| Error::Forbidden(INVALID_TOKEN.to_owned()))?;
        let user_id = record.user_id;
        let user = self.store.user(&user_id)?.ok_or_else(|| Error::Forbidden(INVALID_TOKEN.to_owned()))?;
        if user.deactivated {
            return Err(Error::UserDeactivated);
        }
        let (device, access_token) =
            self.new_device(request.device_id, request.initial_device_display_name, request.client_ip);
        self.store.add_device(&user_id, &device).await?;
        Ok(LoggedIn { user_id, device_id: device.device_id, access_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(token: &str) -> TokenLogin {
        TokenLogin {
            token: token.to_owned(),
            device_id: None,
            initial_device_display_name: None,
            client_ip: None,
        }
    }

    /// A token past its lifetime is refused like a spent one (and is spent by the attempt),
    /// and issuing a token sweeps out the expired ones.
    #[tokio::test]
    async fn an_expired_login_token_is_refused() {
        let (store, accounts) = super::super::accounts_for_test("expired-login-token", true);
        let user_id = accounts.create_user(crate::accounts::NewUser::named("alice")).await.unwrap();
        let now = now_ms();
        let expired = LoginTokenRecord { user_id: user_id.clone(), expires_ts: now - 1 };
        store.add_login_token(&secrets::hash_token("old"), &expired, now).await.unwrap();
        let valid = LoginTokenRecord { user_id: user_id.clone(), expires_ts: now + 60_000 };
        store.add_login_token(&secrets::hash_token("new"), &valid, now).await.unwrap();
        assert!(matches!(accounts.login_with_token(login("old")).await, Err(Error::Forbidden(_))));
        assert_eq!(accounts.login_with_token(login("new")).await.unwrap().user_id, user_id);

        let stale = LoginTokenRecord { user_id: user_id.clone(), expires_ts: now - 1 };
        store.add_login_token(&secrets::hash_token("stale"), &stale, now - 2).await.unwrap();
        store.add_login_token(&secrets::hash_token("fresh"), &valid, now).await.unwrap();
        assert!(store.take_login_token(&secrets::hash_token("stale")).await.unwrap().is_none(), "swept");
    }
}
