//! Account data (global and per room), room tags (the `m.tag` room account data) and the
//! users a user ignores (`m.ignored_user_list`). Every change wakes the user's syncs.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    notifier::Notifier,
    pdu::Pdu,
    storage::{AccountDataEntry, Store},
};

/// Types the server writes itself; clients change them through their own endpoints.
const SERVER_MANAGED: &[&str] = &["m.push_rules", "m.fully_read"];

const IGNORED_USERS_TYPE: &str = "m.ignored_user_list";

/// The users one user ignores.
pub type IgnoredUsers = Arc<BTreeSet<OwnedUserId>>;

/// Whether an event is a message from a user the reader ignores, which the reader is not
/// shown (state events are, whoever sends them).
pub fn hidden_by_ignoring(pdu: &Pdu, ignored: &BTreeSet<OwnedUserId>) -> bool {
    pdu.state_key.is_none() && ignored.contains(&pdu.sender)
}

pub struct AccountData {
    store: Arc<Store>,
    notifier: Arc<Notifier>,
    /// Ignored users by user, parsed once: push evaluation asks for every member at every
    /// event. Replaced whenever the list is written.
    ignored: Mutex<HashMap<OwnedUserId, IgnoredUsers>>,
}

impl AccountData {
    pub fn new(store: Arc<Store>, notifier: Arc<Notifier>) -> Self {
        Self { store, notifier, ignored: Mutex::default() }
    }

    /// The users `user` ignores: their messages and invites do not reach `user` (state
    /// events still do, as the spec requires), nor notify them.
    pub fn ignored_users(&self, user: &UserId) -> Result<IgnoredUsers> {
        if let Some(ignored) = self.ignored.lock().expect("never poisoned").get(user) {
            return Ok(ignored.clone());
        }
        let content = self.store.account_data(user, None, IGNORED_USERS_TYPE)?.map(|record| record.content);
        let ignored: IgnoredUsers = Arc::new(
            content
                .as_ref()
                .and_then(|content| content["ignored_users"].as_object())
                .into_iter()
                .flat_map(|users| users.keys())
                .filter_map(|user| UserId::parse(user).ok())
                .collect(),
        );
        self.ignored.lock().expect("never poisoned").insert(user.to_owned(), ignored.clone());
        Ok(ignored)
    }

    pub fn get(&self, user: &UserId, room: Option<&RoomId>, kind: &str) -> Result<JsonValue> {
        self.store
            .account_data(user, room, kind)?
            .map(|record| record.content)
            .ok_or_else(|| Error::NotFound(format!("no {kind} account data")))
    }

    /// A client's write: refuses the types the server manages.
    pub async fn set(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: JsonValue,
    ) -> Result<()> {
        if SERVER_MANAGED.contains(&kind) {
            return Err(Error::ServerManaged(format!("Cannot set {kind} through this API")));
        }
        if !content.is_object() {
            return Err(Error::BadJson("account data content must be a JSON object".to_owned()));
        }
        if room.is_none() && kind == IGNORED_USERS_TYPE && !content["ignored_users"].is_object() {
            return Err(Error::BadJson("m.ignored_user_list needs an ignored_users object".to_owned()));
        }
        self.set_managed(user, room, kind, &content).await
    }

    /// The server's own write of any type.
    pub async fn set_managed(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &JsonValue,
    ) -> Result<()> {
        let position = self.store.set_account_data(user, room, kind, content).await?;
        if room.is_none() && kind == IGNORED_USERS_TYPE {
            self.ignored.lock().expect("never poisoned").remove(user);
        }
        self.notifier.notify([user], position);
        Ok(())
    }

    /// Entries written after `after` (all with `None`) and at or before `upto`.
    pub fn changed(&self, user: &UserId, after: Option<u64>, upto: u64) -> Result<Vec<AccountDataEntry>> {
        Ok(self
            .store
            .all_account_data(user)?
            .into_iter()
            .filter(|(_, _, record)| after.is_none_or(|a| record.position > a) && record.position <= upto)
            .collect())
    }

    /// The room's tags: `{tag: {order?}}`.
    pub fn tags(&self, user: &UserId, room: &RoomId) -> Result<JsonValue> {
        Ok(self
            .store
            .account_data(user, Some(room), "m.tag")?
            .map_or_else(|| json!({}), |r| r.content["tags"].clone()))
    }

    /// Adds or replaces (`Some`) or removes (`None`) one tag.
    pub async fn set_tag(
        &self,
        user: &UserId,
        room: &RoomId,
        tag: &str,
        info: Option<JsonValue>,
    ) -> Result<()> {
        let mut tags = self.tags(user, room)?;
        if !tags.is_object() {
            tags = json!({});
        }
        let map = tags.as_object_mut().expect("made an object above");
        match info {
            Some(info) => map.insert(tag.to_owned(), info),
            None => map.remove(tag),
        };
        self.set_managed(user, Some(room), "m.tag", &json!({"tags": tags})).await
    }
}
