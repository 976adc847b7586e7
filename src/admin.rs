//! Administration as one set of commands with several doors (DESIGN.md decision 8): the
//! CLI runs a [`Command`] against the admin socket of a running server, or directly on the
//! store when none runs; both end in [`execute`].

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use crate::accounts::{self, Accounts, Logout, RegistrationTokenInfo};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    UserCreate { name: String, password: Option<String>, admin: bool },
    UserList,
    UserPasswd { name: String, password: String },
    UserDeactivate { name: String },
    TokenCreate { token: Option<String>, uses_allowed: Option<u32>, expiry_time: Option<u64> },
    TokenList,
    TokenRevoke { token: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    UserCreated { user_id: OwnedUserId },
    Users { users: Vec<UserSummary> },
    PasswordChanged { user_id: OwnedUserId },
    UserDeactivated { user_id: OwnedUserId },
    Token { token: RegistrationTokenInfo },
    Tokens { tokens: Vec<RegistrationTokenInfo> },
    TokenRevoked { token: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub user_id: OwnedUserId,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: u64,
}

pub async fn execute(accounts: &Accounts, command: Command) -> Result<Reply, accounts::Error> {
    Ok(match command {
        Command::UserCreate { name, password, admin } => {
            Reply::UserCreated { user_id: accounts.create_user(&name, password, admin).await? }
        }
        Command::UserList => Reply::Users {
            users: accounts
                .users()?
                .into_iter()
                .map(|(user_id, u)| UserSummary {
                    user_id,
                    admin: u.admin,
                    deactivated: u.deactivated,
                    created_ts: u.created_ts,
                })
                .collect(),
        },
        Command::UserPasswd { name, password } => {
            let user_id = accounts.existing_local_user(&name)?;
            // A reset by an administrator assumes the old password is compromised.
            accounts.set_password(&user_id, password, Logout::All).await?;
            Reply::PasswordChanged { user_id }
        }
        Command::UserDeactivate { name } => {
            let user_id = accounts.existing_local_user(&name)?;
            accounts.deactivate(&user_id).await?;
            Reply::UserDeactivated { user_id }
        }
        Command::TokenCreate { token, uses_allowed, expiry_time } => Reply::Token {
            token: accounts.create_registration_token(token, uses_allowed, expiry_time).await?,
        },
        Command::TokenList => Reply::Tokens { tokens: accounts.registration_tokens()? },
        Command::TokenRevoke { token } => {
            accounts.revoke_registration_token(&token).await?;
            Reply::TokenRevoked { token }
        }
    })
}
