//! Sync filters uploaded by clients. Tree `filters`: user id, `0xff`, filter id → the
//! filter's JSON as uploaded.

use ruma::UserId;

use super::{Result, Store, composite_key};

impl Store {
    /// Stores a filter and returns its id (decimal, unique per server).
    pub async fn create_filter(&self, user: &UserId, json: &[u8]) -> Result<String> {
        let id = self.db.generate_id()?.to_string();
        self.filters.insert(composite_key(&[user.as_bytes(), id.as_bytes()]), json)?;
        self.durable().await?;
        Ok(id)
    }

    pub fn filter(&self, user: &UserId, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.filters.get(composite_key(&[user.as_bytes(), id.as_bytes()]))?.map(|b| b.to_vec()))
    }
}
