//! Profiles (display name, avatar and custom fields, one JSON object per user), and the
//! OpenID tokens with which a user proves who they are to a third party.

use std::{collections::BTreeMap, time::Duration};

use ruma::{OwnedUserId, UserId, api::federation::query::get_profile_information};
use serde_json::Value as JsonValue;

use super::{Accounts, Error, Result, secrets};
use crate::{now_ms, storage::OpenIdToken};

/// How long an OpenID token proves the user's identity to a third party.
const OPENID_LIFETIME: Duration = Duration::from_secs(3600);

impl Accounts {
    /// The profile of a local user; `NotFound` when there is no such user.
    pub fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, JsonValue>> {
        self.store.profile(user_id)?.ok_or_else(|| Error::NotFound(format!("no profile for {user_id}")))
    }

    /// The profile of a local user, or of another server's user as their server answers
    /// `/query/profile`; `NotFound` when there is none to be had.
    pub async fn profile_anywhere(&self, user_id: &UserId) -> Result<BTreeMap<String, JsonValue>> {
        if user_id.server_name() == self.server_name {
            return self.profile(user_id);
        }
        let request = get_profile_information::v1::Request::new(user_id.to_owned());
        let response = self
            .federation
            .client
            .send(user_id.server_name(), request)
            .await
            .map_err(|e| Error::NotFound(format!("profile of {user_id} not available: {e}")))?;
        Ok(response.iter().map(|(field, value)| (field.clone(), value.clone())).collect())
    }

    /// Sets or (with `None`) removes a field of the requester's own profile.
    pub async fn set_profile_field(
        &self,
        requester: &UserId,
        target: &UserId,
        field: &str,
        value: Option<JsonValue>,
    ) -> Result<()> {
        if requester != target {
            return Err(Error::Forbidden("You cannot change another user's profile".to_owned()));
        }
        if field.len() > 255 {
            return Err(Error::InvalidParam("profile field names are at most 255 bytes".to_owned()));
        }
        self.store.set_profile_field(target, field, value).await?;
        Ok(())
    }

    /// The user an OpenID token was issued to, while it is valid: how another service (an
    /// integration manager, a widget) learns who presented it, through federation.
    pub fn openid_user(&self, token: &str) -> Result<OwnedUserId> {
        match self.store.openid_token(&secrets::hash_token(token))? {
            Some(record) if record.expires_ts > now_ms() => Ok(record.user_id),
            _ => Err(Error::UnknownToken("the OpenID token is unknown or has expired".to_owned())),
        }
    }

    /// A new OpenID token for `user` and how long it is valid.
    pub async fn issue_openid_token(&self, user: &UserId) -> Result<(String, Duration)> {
        let token = secrets::new_openid_token();
        let record = OpenIdToken {
            user_id: user.to_owned(),
            expires_ts: now_ms() + OPENID_LIFETIME.as_millis() as u64,
        };
        // Stored by hash, as access tokens are: a copy of the database lends no one an identity.
        self.store.add_openid_token(&secrets::hash_token(&token), &record).await?;
        Ok((token, OPENID_LIFETIME))
    }
}
