//! Registration tokens (`m.login.registration_token`): made by administrators, spent by
//! `/register` in token mode.

use serde::Serialize;

use super::{Accounts, Error, Result, now_ms, secrets};
use crate::storage::RegistrationTokenRecord;

/// A token as administrators see it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RegistrationTokenInfo {
    pub token: String,
    pub uses_allowed: Option<u32>,
    pub completed: u32,
    pub expiry_time: Option<u64>,
    pub valid: bool,
}

impl RegistrationTokenInfo {
    fn new(token: String, record: &RegistrationTokenRecord, now: u64) -> Self {
        Self {
            token,
            uses_allowed: record.uses_allowed,
            completed: record.completed,
            expiry_time: record.expiry_time,
            valid: record.is_usable(now),
        }
    }
}

/// The spec's alphabet for registration tokens: `[A-Za-z0-9._~-]`, at most 64 characters.
fn check_token_syntax(token: &str) -> Result<()> {
    if token.is_empty()
        || token.len() > 64
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    {
        return Err(Error::InvalidParam(
            "a registration token is 1 to 64 characters of A-Z a-z 0-9 . _ ~ -".to_owned(),
        ));
    }
    Ok(())
}

impl Accounts {
    /// Whether `token` can be used to register right now.
    pub fn registration_token_valid(&self, token: &str) -> Result<bool> {
        Ok(self.store.registration_token(token)?.is_some_and(|r| r.is_usable(now_ms())))
    }

    /// Creates a token; a random one when `token` is `None`.
    pub async fn create_registration_token(
        &self,
        token: Option<String>,
        uses_allowed: Option<u32>,
        expiry_time: Option<u64>,
    ) -> Result<RegistrationTokenInfo> {
        let token = token.unwrap_or_else(secrets::new_registration_token);
        check_token_syntax(&token)?;
        let now = now_ms();
        let record = RegistrationTokenRecord { uses_allowed, completed: 0, expiry_time, created_ts: now };
        if !self.store.create_registration_token(&token, &record).await? {
            return Err(Error::InvalidParam(format!("registration token {token} already exists")));
        }
        Ok(RegistrationTokenInfo::new(token, &record, now))
    }

    pub fn registration_tokens(&self) -> Result<Vec<RegistrationTokenInfo>> {
        let now = now_ms();
        Ok(self
            .store
            .registration_tokens()?
            .into_iter()
            .map(|(token, record)| RegistrationTokenInfo::new(token, &record, now))
            .collect())
    }

    pub async fn revoke_registration_token(&self, token: &str) -> Result<()> {
        if !self.store.delete_registration_token(token).await? {
            return Err(Error::NotFound(format!("no registration token {token}")));
        }
        Ok(())
    }
}
