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

const MAX_TOKEN_LENGTH: usize = 64;
const DEFAULT_TOKEN_LENGTH: usize = 16;

fn not_found(token: &str) -> Error {
    Error::NotFound(format!("no registration token {token}"))
}

/// A token cannot be made to expire in the past.
fn check_expiry(expiry_time: Option<u64>, now: u64) -> Result<()> {
    match expiry_time {
        Some(expiry) if expiry < now => {
            Err(Error::InvalidParam("expiry_time must not be in the past".to_owned()))
        }
        _ => Ok(()),
    }
}

/// The spec's alphabet for registration tokens: `[A-Za-z0-9._~-]`, at most 64 characters.
fn check_token_syntax(token: &str) -> Result<()> {
    if token.is_empty()
        || token.len() > MAX_TOKEN_LENGTH
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

    /// Creates a token; when `token` is `None`, a random one of `length` characters (16 if
    /// `None`).
    pub async fn create_registration_token(
        &self,
        token: Option<String>,
        length: Option<usize>,
        uses_allowed: Option<u32>,
        expiry_time: Option<u64>,
    ) -> Result<RegistrationTokenInfo> {
        let token = match (token, length) {
            (Some(token), _) => token,
            (None, Some(length)) if !(1..=MAX_TOKEN_LENGTH).contains(&length) => {
                return Err(Error::InvalidParam(format!(
                    "a registration token's length is 1 to {MAX_TOKEN_LENGTH}"
                )));
            }
            (None, length) => secrets::new_registration_token(length.unwrap_or(DEFAULT_TOKEN_LENGTH)),
        };
        check_token_syntax(&token)?;
        let now = now_ms();
        check_expiry(expiry_time, now)?;
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

    pub fn registration_token(&self, token: &str) -> Result<RegistrationTokenInfo> {
        let record = self.store.registration_token(token)?.ok_or_else(|| not_found(token))?;
        Ok(RegistrationTokenInfo::new(token.to_owned(), &record, now_ms()))
    }

    /// Changes how often and until when a token may be used; `None` leaves a limit as it
    /// is, `Some(None)` lifts it.
    pub async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<u32>>,
        expiry_time: Option<Option<u64>>,
    ) -> Result<RegistrationTokenInfo> {
        let now = now_ms();
        if let Some(expiry_time) = expiry_time {
            check_expiry(expiry_time, now)?;
        }
        let record = self
            .store
            .update_registration_token(token, |record| {
                if let Some(uses_allowed) = uses_allowed {
                    record.uses_allowed = uses_allowed;
                }
                if let Some(expiry_time) = expiry_time {
                    record.expiry_time = expiry_time;
                }
            })
            .await?
            .ok_or_else(|| not_found(token))?;
        Ok(RegistrationTokenInfo::new(token.to_owned(), &record, now))
    }

    pub async fn revoke_registration_token(&self, token: &str) -> Result<()> {
        if !self.store.delete_registration_token(token).await? {
            return Err(not_found(token));
        }
        Ok(())
    }
}
