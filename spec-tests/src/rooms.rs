//! Helpers for the room tests: the requests most room scenarios repeat, as methods on
//! [`Client`]. Each returns the raw [`Resp`] unless its name says it expects success.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Client, Resp, Value, enc, json};

/// A password good enough for test accounts.
pub const PASSWORD: &str = "correct horse battery staple";

static NEXT_TXN: AtomicU64 = AtomicU64::new(1);

/// A transaction id no other request of this test process uses.
pub fn txn_id() -> String {
    format!("txn-{}", NEXT_TXN.fetch_add(1, Ordering::Relaxed))
}

/// `/_matrix/client/v3/rooms/{room_id}/{rest}`.
pub fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", enc(room_id))
}

/// The server name part of a user id.
pub fn server_name_of(user_id: &str) -> &str {
    user_id.split_once(':').map(|(_, server)| server).expect("user ids contain a colon")
}

impl Client {
    /// `POST /createRoom`, expecting success; returns the room id.
    pub async fn create_room(&self, body: &Value) -> String {
        let reply = self.post("/_matrix/client/v3/createRoom", body).await.expect(200);
        reply["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `PUT /rooms/{id}/send/{kind}/{txn}` with a fresh transaction id.
    pub async fn send_event(&self, room_id: &str, kind: &str, content: &Value) -> Resp {
        self.put(&room_path(room_id, &format!("send/{}/{}", enc(kind), txn_id())), content).await
    }

    /// Sends an `m.text` message, expecting success; returns the event id.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let reply =
            self.send_event(room_id, "m.room.message", &json!({"msgtype": "m.text", "body": body})).await;
        reply.expect(200)["event_id"].as_str().expect("event_id").to_owned()
    }

    /// `PUT /rooms/{id}/state/{kind}/{state_key}`.
    pub async fn put_state(&self, room_id: &str, kind: &str, state_key: &str, content: &Value) -> Resp {
        self.put(&room_path(room_id, &format!("state/{}/{}", enc(kind), enc(state_key))), content).await
    }

    /// `GET /rooms/{id}/state/{kind}/{state_key}`: the content.
    pub async fn get_state(&self, room_id: &str, kind: &str, state_key: &str) -> Resp {
        self.get(&room_path(room_id, &format!("state/{}/{}", enc(kind), enc(state_key)))).await
    }

    /// `POST /join/{room_id_or_alias}`.
    pub async fn join_room(&self, room_id_or_alias: &str) -> Resp {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room_id_or_alias)), &json!({})).await
    }

    /// `POST /knock/{room_id_or_alias}` with `body` (such as `{"reason": ...}`).
    pub async fn knock_room(&self, room_id_or_alias: &str, body: &Value) -> Resp {
        self.post(&format!("/_matrix/client/v3/knock/{}", enc(room_id_or_alias)), body).await
    }

    /// `POST /rooms/{id}/{action}` for `invite`, `kick`, `ban`, `unban` aimed at `user_id`.
    pub async fn membership_action(&self, room_id: &str, action: &str, user_id: &str) -> Resp {
        self.post(&room_path(room_id, action), &json!({"user_id": user_id})).await
    }

    /// `GET /rooms/{id}/messages?{query}`.
    pub async fn messages(&self, room_id: &str, query: &str) -> Resp {
        self.get(&room_path(room_id, &format!("messages?{query}"))).await
    }

    /// `GET /joined_rooms`, expecting success.
    pub async fn joined_rooms(&self) -> Vec<String> {
        let reply = self.get("/_matrix/client/v3/joined_rooms").await.expect(200);
        reply["joined_rooms"]
            .as_array()
            .expect("joined_rooms")
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }
}
