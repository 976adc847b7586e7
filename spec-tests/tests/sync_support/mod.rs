//! Helpers shared by the sync, ephemeral, account-data and push spec-tests: rooms,
//! messages and bounded `/sync` calls over the harness's raw HTTP client.

#![allow(dead_code)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use spec_tests::*;

/// How much longer than its own timeout a `/sync` may take before a test gives up on it.
const SYNC_GRACE: Duration = Duration::from_secs(20);

static TXN: AtomicU64 = AtomicU64::new(0);

/// A transaction id unique in this test process.
pub fn txn() -> String {
    format!("t{}", TXN.fetch_add(1, Ordering::Relaxed))
}

/// Creates a room with the given `createRoom` body and returns its id.
pub async fn create_room(client: &Client, body: Value) -> String {
    let reply = client.post("/_matrix/client/v3/createRoom", &body).await.expect(200);
    reply["room_id"].as_str().expect("room_id").to_owned()
}

/// Creates a public room that anyone may join.
pub async fn public_room(client: &Client) -> String {
    create_room(client, json!({"preset": "public_chat"})).await
}

pub async fn join(client: &Client, room: &str) {
    client.post(&format!("/_matrix/client/v3/rooms/{}/join", enc(room)), &json!({})).await.expect(200);
}

pub async fn leave(client: &Client, room: &str) {
    client.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(room)), &json!({})).await.expect(200);
}

pub async fn invite(client: &Client, room: &str, user: &str) {
    client
        .post(&format!("/_matrix/client/v3/rooms/{}/invite", enc(room)), &json!({"user_id": user}))
        .await
        .expect(200);
}

/// Sends an event of any type and returns its id.
pub async fn send_event(client: &Client, room: &str, kind: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{}", enc(room), txn());
    let reply = client.put(&path, &content).await.expect(200);
    reply["event_id"].as_str().expect("event_id").to_owned()
}

/// Sends an `m.text` message and returns its id.
pub async fn send_text(client: &Client, room: &str, body: &str) -> String {
    send_event(client, room, "m.room.message", json!({"msgtype": "m.text", "body": body})).await
}

/// `GET /sync`, failing the test if it does not answer within its timeout plus a grace
/// period. `filter` is a filter id or inline JSON.
pub async fn try_sync(client: &Client, since: Option<&str>, timeout_ms: u64, filter: Option<&str>) -> Resp {
    // These tests watch rooms. Syncing would otherwise mark the user online, and that
    // presence change is one more thing a sync may return first.
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&set_presence=offline");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", enc(since)));
    }
    if let Some(filter) = filter {
        path.push_str(&format!("&filter={}", enc(filter)));
    }
    let limit = Duration::from_millis(timeout_ms) + SYNC_GRACE;
    tokio::time::timeout(limit, client.get(&path)).await.unwrap_or_else(|_| panic!("/sync hung: {path}"))
}

/// A successful `/sync`.
pub async fn sync(client: &Client, since: Option<&str>, timeout_ms: u64, filter: Option<&str>) -> Value {
    try_sync(client, since, timeout_ms, filter).await.expect(200)
}

/// The `next_batch` token of a sync response.
pub fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// A joined room's section of a sync response (`Null` when absent).
pub fn joined<'a>(sync: &'a Value, room: &str) -> &'a Value {
    &sync["rooms"]["join"][room]
}

/// Event ids of a room section's timeline, in order.
pub fn timeline_ids(room: &Value) -> Vec<String> {
    events(&room["timeline"]).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

/// The `events` array of a section (empty when absent).
pub fn events(section: &Value) -> Vec<Value> {
    section["events"].as_array().cloned().unwrap_or_default()
}

/// Events of `kind` in a section.
pub fn of_type(section: &Value, kind: &str) -> Vec<Value> {
    events(section).into_iter().filter(|e| e["type"] == kind).collect()
}

/// Every event of a room, oldest first, as `/messages` pages through it backwards.
pub async fn messages_all(client: &Client, room: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", enc(room));
        if let Some(from) = &from {
            path.push_str(&format!("&from={}", enc(from)));
        }
        let page = client.get(&path).await.expect(200);
        all.extend(page["chunk"].as_array().cloned().unwrap_or_default());
        match page["end"].as_str() {
            Some(end) if !page["chunk"].as_array().is_none_or(Vec::is_empty) => from = Some(end.to_owned()),
            _ => break,
        }
    }
    all.reverse();
    all
}
