//! Small records with no domain of their own: content reports and OpenID tokens.
//!
//! Trees: `reports`: position → [`Report`]; `openid_tokens`: token → [`OpenIdToken`].

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{Result, Store, decode, encode};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub reporter: OwnedUserId,
    pub room_id: OwnedRoomId,
    pub event_id: Option<OwnedEventId>,
    pub reason: Option<String>,
    pub ts: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenIdToken {
    pub user_id: OwnedUserId,
    pub expires_ts: u64,
}

impl Store {
    pub async fn add_report(&self, report: &Report) -> Result<()> {
        self.reports.insert(self.db.generate_id()?.to_be_bytes(), encode(report))?;
        self.durable().await
    }

    pub async fn add_openid_token(&self, token: &str, record: &OpenIdToken) -> Result<()> {
        self.openid_tokens.insert(token.as_bytes(), encode(record))?;
        self.durable().await
    }

    pub fn openid_token(&self, token: &str) -> Result<Option<OpenIdToken>> {
        self.openid_tokens.get(token.as_bytes())?.map(|b| decode("openid token", &b)).transpose()
    }
}
