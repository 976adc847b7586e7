//! Account administration that spans domains or needs more than one call: listing with
//! filters, and creating or changing an account in one request (password, admin flag,
//! deactivation, profile).

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::{Error, Page};
use crate::{
    accounts::{self, Logout, NewUser, UserInfo},
    services::Services,
};

/// What the user list is sorted by (Synapse's `order_by` values that mean something here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserOrder {
    #[default]
    Name,
    Displayname,
    Admin,
    Deactivated,
    ShadowBanned,
    AvatarUrl,
    CreationTs,
    LastSeenTs,
}

/// Which accounts to list, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Only accounts whose user id contains this (case-insensitive).
    pub user_id: Option<String>,
    /// Only accounts whose user id or display name contains this (case-insensitive).
    pub name: Option<String>,
    /// Deactivated accounts are left out unless this is set.
    pub include_deactivated: bool,
    /// Only admins (`Some(true)`) or only the others (`Some(false)`).
    pub admins: Option<bool>,
    pub order: UserOrder,
    pub descending: bool,
    pub from: usize,
    pub limit: usize,
}

pub fn list_users(services: &Services, query: &UserQuery) -> Result<Page<UserInfo>, Error> {
    let contains = |haystack: &str, needle: &str| haystack.to_lowercase().contains(&needle.to_lowercase());
    let mut users: Vec<UserInfo> = services
        .accounts
        .user_infos()?
        .into_iter()
        .filter(|u| query.include_deactivated || !u.deactivated)
        .filter(|u| query.admins.is_none_or(|admins| u.admin == admins))
        .filter(|u| query.user_id.as_deref().is_none_or(|id| contains(u.user_id.as_str(), id)))
        .filter(|u| {
            query.name.as_deref().is_none_or(|name| {
                contains(u.user_id.as_str(), name)
                    || u.displayname.as_deref().is_some_and(|d| contains(d, name))
            })
        })
        .collect();
    // Stable, and the store lists by user id: ties stay in name order.
    match query.order {
        UserOrder::Name => {}
        UserOrder::Displayname => users.sort_by(|a, b| a.displayname.cmp(&b.displayname)),
        UserOrder::Admin => users.sort_by_key(|u| u.admin),
        UserOrder::Deactivated => users.sort_by_key(|u| u.deactivated),
        UserOrder::ShadowBanned => users.sort_by_key(|u| u.shadow_banned),
        UserOrder::AvatarUrl => users.sort_by(|a, b| a.avatar_url.cmp(&b.avatar_url)),
        UserOrder::CreationTs => users.sort_by_key(|u| u.created_ts),
        UserOrder::LastSeenTs => users.sort_by_key(|u| u.last_seen_ts),
    }
    if query.descending {
        users.reverse();
    }
    Ok(Page::of(users, query.from, query.limit))
}

/// What one "create or modify" request asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub password: Option<String>,
    /// A new password logs out every device unless this is false.
    pub logout_devices: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
}

/// Creates the account if there is none, else changes it. `true` when it was created.
pub async fn put_user(services: &Services, user_id: &UserId, changes: UserChanges) -> Result<bool, Error> {
    let accounts = &services.accounts;
    let existing = match accounts.user_info(user_id) {
        Ok(info) => Some(info),
        Err(accounts::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(existing) = existing else {
        let new = NewUser {
            name: user_id.to_string(),
            password: changes.password,
            admin: changes.admin.unwrap_or(false),
            displayname: changes.displayname,
        };
        accounts.create_user(new).await?;
        if let Some(url) = changes.avatar_url {
            set_profile(services, user_id, "avatar_url", url).await?;
        }
        if changes.deactivated == Some(true) {
            services.rooms.deactivate_account(user_id, false).await?;
        }
        return Ok(true);
    };
    // Checked before anything changes, so that a refused request changes nothing.
    let reactivating = changes.deactivated == Some(false) && existing.deactivated;
    let deactivating = changes.deactivated == Some(true) && !existing.deactivated;
    let ends_deactivated = changes.deactivated.unwrap_or(existing.deactivated);
    let invalid = |why: &str| Error::from(accounts::Error::InvalidParam(why.to_owned()));
    if reactivating && changes.password.is_none() {
        return Err(invalid("a password is needed to reactivate an account"));
    }
    if ends_deactivated && changes.password.is_some() {
        return Err(invalid("a deactivated account has no password to set"));
    }
    let mut password = changes.password;
    if deactivating {
        services.rooms.deactivate_account(user_id, false).await?;
    }
    if reactivating && let Some(password) = password.take() {
        accounts.reactivate(user_id, password).await?;
    }
    if let Some(password) = password {
        let logout = if changes.logout_devices { Logout::All } else { Logout::None };
        accounts.set_password(user_id, password, logout).await?;
    }
    if let Some(admin) = changes.admin {
        accounts.set_admin(user_id, admin).await?;
    }
    if let Some(name) = changes.displayname {
        set_profile(services, user_id, "displayname", name).await?;
    }
    if let Some(url) = changes.avatar_url {
        set_profile(services, user_id, "avatar_url", url).await?;
    }
    Ok(false)
}

/// A profile field set for the user, as if by the user: the change reaches their rooms.
async fn set_profile(services: &Services, user_id: &UserId, field: &str, value: String) -> Result<(), Error> {
    let value = (!value.is_empty()).then_some(JsonValue::String(value));
    services.rooms.set_profile_field(user_id, user_id, field, value).await?;
    Ok(())
}
