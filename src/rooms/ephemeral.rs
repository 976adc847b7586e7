//! Receipts and typing notifications: what `/sync` puts in a room's `ephemeral` section.
//!
//! Receipts are stored; typing lives in memory only, expiring on its own. Both take stream
//! positions so an incremental sync sends only what changed.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, RoomId, UserId,
    events::room::member::MembershipState,
};
use serde_json::{Map, Value as JsonValue, json};

use super::{Error, Event, Result, Rooms};
use crate::{
    notifier::Notifier,
    storage::{AppserviceItem, MAIN_THREAD, ReceiptRecord, Store},
};

/// Longest a client may claim to be typing for.
const MAX_TYPING: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Typing {
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
}

#[derive(Default)]
struct RoomTyping {
    until: HashMap<OwnedUserId, Instant>,
    position: u64,
}

impl Typing {
    /// Sets or clears a typer; returns the position of the change, if anything changed.
    fn set(
        &self,
        store: &Store,
        room: &RoomId,
        user: &UserId,
        until: Option<Instant>,
    ) -> Result<Option<u64>> {
        let mut rooms = self.rooms.lock().expect("typing lock is never poisoned");
        let entry = rooms.entry(room.to_owned()).or_default();
        let changed = match until {
            Some(until) => entry.until.insert(user.to_owned(), until).is_none(),
            None => entry.until.remove(user).is_some(),
        };
        if !changed {
            return Ok(None);
        }
        // Typing is not stored, but it is ordered like everything else.
        entry.position = store.begin_position()?.position();
        Ok(Some(entry.position))
    }

    /// Drops typers whose time is up; returns the position of the change, if any.
    fn expire(&self, store: &Store, room: &RoomId) -> Result<Option<u64>> {
        let mut rooms = self.rooms.lock().expect("typing lock is never poisoned");
        let Some(entry) = rooms.get_mut(room) else { return Ok(None) };
        let now = Instant::now();
        let before = entry.until.len();
        entry.until.retain(|_, until| *until > now);
        if entry.until.len() == before {
            return Ok(None);
        }
        entry.position = store.begin_position()?.position();
        Ok(Some(entry.position))
    }

    /// The typers of a room if they changed after `after`.
    fn since(&self, room: &RoomId, after: Option<u64>, upto: u64) -> Option<Vec<OwnedUserId>> {
        let rooms = self.rooms.lock().expect("typing lock is never poisoned");
        let entry = rooms.get(room)?;
        let changed = after.is_none_or(|a| entry.position > a) && entry.position <= upto;
        let now = Instant::now();
        let users: Vec<OwnedUserId> =
            entry.until.iter().filter(|(_, until)| **until > now).map(|(u, _)| u.clone()).collect();
        (changed && (after.is_some() || !users.is_empty())).then_some(users)
    }
}

fn notify_room(store: &Store, notifier: &Notifier, room: &RoomId, position: u64) -> Result<()> {
    let members = store.memberships(room)?;
    notifier.notify(members.iter().filter(|(_, m)| *m == MembershipState::Join).map(|(u, _)| &**u), position);
    Ok(())
}

impl Rooms {
    /// The other servers with a joined member in the room, that federation may reach.
    fn remote_servers(&self, room_id: &RoomId) -> Result<std::collections::BTreeSet<ruma::OwnedServerName>> {
        let servers = self.servers_in_room(room_id)?;
        Ok(self.outbox.remote(servers.iter().map(|s| &**s)))
    }

    fn require_joined(&self, room_id: &RoomId, user: &UserId) -> Result<()> {
        if self.membership(room_id, user)? != Some(MembershipState::Join) {
            return Err(Error::Forbidden(format!("{user} is not in room {room_id}")));
        }
        Ok(())
    }

    /// Starts (for `timeout`) or stops a user's typing notification. A local user's goes to
    /// the other servers in the room too.
    pub async fn set_typing(&self, room_id: &RoomId, user: &UserId, timeout: Option<Duration>) -> Result<()> {
        self.require_joined(room_id, user)?;
        if user.server_name() == self.server_name {
            let edu = json!({"edu_type": "m.typing", "content": {
                "room_id": room_id, "user_id": user, "typing": timeout.is_some(),
            }});
            self.outbox.send_edu(self.remote_servers(room_id)?, edu).await?;
        }
        let until = timeout.map(|t| Instant::now() + t.min(MAX_TYPING));
        if let Some(position) = self.typing.set(&self.store, room_id, user, until)? {
            notify_room(&self.store, &self.notifier, room_id, position)?;
            if let Some(typing) = self.typing_event(room_id, None, position) {
                self.tell_appservices(room_id, typing).await?;
            }
        }
        if let Some(until) = until {
            let (typing, store, notifier, room) =
                (self.typing.clone(), self.store.clone(), self.notifier.clone(), room_id.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep_until(until.into()).await;
                match typing.expire(&store, &room) {
                    Ok(Some(position)) => {
                        let _ = notify_room(&store, &notifier, &room, position);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "expiring typing notifications"),
                }
            });
        }
        Ok(())
    }

    /// Sends an ephemeral event of the room (typing, a receipt) to the application services
    /// that asked for them (MSC2409) and have a user in the room.
    async fn tell_appservices(&self, room_id: &RoomId, mut event: JsonValue) -> Result<()> {
        if self.appservices.is_empty() {
            return Ok(());
        }
        let members = self.store.memberships(room_id)?;
        let joined = members.iter().filter(|(_, m)| *m == MembershipState::Join).map(|(u, _)| &**u);
        let services = self.appservices.wanting_ephemeral(room_id, joined);
        event["room_id"] = json!(room_id);
        self.appservices.send(&services, AppserviceItem::Ephemeral(event)).await?;
        Ok(())
    }

    /// The `m.typing` ephemeral event for a sync, if the typers changed after `after`.
    pub fn typing_event(&self, room_id: &RoomId, after: Option<u64>, upto: u64) -> Option<JsonValue> {
        let users = self.typing.since(room_id, after, upto)?;
        Some(json!({"type": "m.typing", "content": {"user_ids": users}}))
    }

    /// Records a receipt of `user` for an event in the room.
    pub async fn set_receipt(
        &self,
        room_id: &RoomId,
        user: &UserId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        self.require_joined(room_id, user)?;
        let event = self
            .event(event_id)?
            .filter(|event| event.pdu.room_id == room_id)
            .ok_or_else(|| Error::NotFound(format!("no event {event_id} in {room_id}")))?;
        if let Some(thread_id) = thread_id
            && user.server_name() == self.server_name
        {
            self.check_receipt_thread(&event, thread_id)?;
        }
        let record = ReceiptRecord {
            user_id: user.to_owned(),
            receipt_type: receipt_type.to_owned(),
            thread_id: thread_id.unwrap_or_default().to_owned(),
            event_id: event.pdu.event_id.clone(),
            ts: MilliSecondsSinceUnixEpoch::now().get().into(),
            position: 0,
        };
        let ts = record.ts;
        let position = self.store.set_receipt(room_id, record, event.stored.position).await?;
        if receipt_type == "m.read" && user.server_name() == self.server_name {
            let mut data = json!({"ts": ts});
            if let Some(thread) = thread_id {
                data["thread_id"] = json!(thread);
            }
            let edu = json!({"edu_type": "m.receipt", "content": {
                room_id.as_str(): {"m.read": {user.as_str(): {"event_ids": [event_id], "data": data}}},
            }});
            self.outbox.send_edu(self.remote_servers(room_id)?, edu).await?;
        }
        if user.server_name() == self.server_name && matches!(receipt_type, "m.read" | "m.read.private") {
            self.push.receipt_moved(user);
        }
        if receipt_type != "m.read.private" {
            let mut receipt = json!({"ts": ts});
            if let Some(thread) = thread_id {
                receipt["thread_id"] = json!(thread);
            }
            let content = json!({ event_id.as_str(): { receipt_type: { user.as_str(): receipt } } });
            self.tell_appservices(room_id, json!({"type": "m.receipt", "content": content})).await?;
        }
        if receipt_type == "m.read.private" {
            self.notifier.notify([user], position);
        } else {
            notify_room(&self.store, &self.notifier, room_id, position)?;
        }
        Ok(())
    }

    /// Refuses a local user's threaded receipt for an event outside its thread (a thread's
    /// root counts as in its own thread: clients mark it read when they open the thread).
    fn check_receipt_thread(&self, event: &Event, thread_id: &str) -> Result<()> {
        if thread_id.is_empty() {
            return Err(Error::InvalidParam("thread_id must be a non-empty string".to_owned()));
        }
        let in_thread = self.thread_of(&event.pdu.content_json())?;
        let matches = match in_thread.as_deref() {
            _ if thread_id == MAIN_THREAD => in_thread.is_none(),
            Some(root) => root.as_str() == thread_id,
            None => event.pdu.event_id.as_str() == thread_id,
        };
        if !matches {
            return Err(Error::InvalidParam(format!(
                "event {} is not in thread {thread_id}",
                event.pdu.event_id
            )));
        }
        Ok(())
    }

    /// The `m.receipt` ephemeral event with the receipts changed after `after` that `viewer`
    /// may see (private receipts are their owner's alone).
    pub fn receipt_event(
        &self,
        room_id: &RoomId,
        viewer: &UserId,
        after: Option<u64>,
        upto: u64,
    ) -> Result<Option<JsonValue>> {
        // Most rooms have no new receipts: passed over without reading them.
        if let Some(after) = after
            && self.store.newest_receipt(room_id)? <= after
        {
            return Ok(None);
        }
        self.receipts_where(room_id, |receipt| {
            let visible = receipt.receipt_type != "m.read.private" || receipt.user_id == viewer;
            visible && receipt.position <= upto && after.is_none_or(|a| receipt.position > a)
        })
    }

    /// The `m.receipt` event of `user`'s own receipts in the room (public and private) and
    /// of the public receipts on `events`: what a client needs of a room it has not been
    /// sent before to tell what is unread.
    pub fn receipts_for_new_room(
        &self,
        room_id: &RoomId,
        user: &UserId,
        events: &[ruma::OwnedEventId],
        upto: u64,
    ) -> Result<Option<JsonValue>> {
        self.receipts_where(room_id, |receipt| {
            receipt.position <= upto
                && (receipt.user_id == user
                    || receipt.receipt_type != "m.read.private" && events.contains(&receipt.event_id))
        })
    }

    fn receipts_where(
        &self,
        room_id: &RoomId,
        keep: impl Fn(&ReceiptRecord) -> bool,
    ) -> Result<Option<JsonValue>> {
        let mut content: Map<String, JsonValue> = Map::new();
        for receipt in self.store.receipts(room_id)? {
            if !keep(&receipt) {
                continue;
            }
            let mut info = json!({"ts": receipt.ts});
            if !receipt.thread_id.is_empty() {
                info["thread_id"] = json!(receipt.thread_id);
            }
            content
                .entry(receipt.event_id.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("made an object")
                .entry(receipt.receipt_type)
                .or_insert_with(|| json!({}))[receipt.user_id.as_str()] = info;
        }
        Ok((!content.is_empty()).then(|| json!({"type": "m.receipt", "content": content})))
    }
}
