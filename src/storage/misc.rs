//! Small records with no domain of their own: content reports and OpenID tokens.
//!
//! Trees: `reports`: position → [`Report`]; `openid_tokens`: SHA-256 of the token → [`OpenIdToken`].

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{Result, Store, decode, encode, positioned};

/// A report to the administrators: of an event (room and event id), a room (room id
/// only) or a user (user id only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub reporter: OwnedUserId,
    /// Always set before user reports existed, so older records read as they were.
    pub room_id: Option<OwnedRoomId>,
    pub event_id: Option<OwnedEventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<OwnedUserId>,
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

    /// Every report, oldest first, with its id (for administrators; not on any hot path).
    pub fn reports(&self) -> Result<Vec<(u64, Report)>> {
        self.reports.iter().map(|item| positioned("report", item)).collect()
    }

    /// Deletes a report; `false` if there was none with that id.
    pub async fn delete_report(&self, id: u64) -> Result<bool> {
        let existed = self.reports.remove(id.to_be_bytes())?.is_some();
        self.durable().await?;
        Ok(existed)
    }

    /// Stores an OpenID token's record under the token's hash.
    pub async fn add_openid_token(&self, token_hash: &[u8; 32], record: &OpenIdToken) -> Result<()> {
        self.openid_tokens.insert(token_hash, encode(record))?;
        self.durable().await
    }

    pub fn openid_token(&self, token_hash: &[u8; 32]) -> Result<Option<OpenIdToken>> {
        self.openid_tokens.get(token_hash)?.map(|b| decode("openid token", &b)).transpose()
    }
}
