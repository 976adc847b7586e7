//! Presence across servers (issue #26): a user's presence and status message reach the
//! users of another server who share a room with them, in `/sync` and in `GET
//! /presence/{userId}/status`, both ways; a server cannot set the presence of another
//! server's users.

mod federation_support;
mod sync_support;

use federation_support::{CROSSING, Feed, shared_room, signing::signed_request, two_servers};
use spec_tests::*;

fn presence_path(user: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(user))
}

/// The content of the newest `m.presence` event for `user` in a `/sync` response.
fn presence_of(body: &Value, user: &str) -> Option<Value> {
    body["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["type"] == "m.presence" && e["sender"] == user)
        .map(|e| e["content"].clone())
}

#[tokio::test]
async fn presence_and_status_messages_cross_between_servers_both_ways() {
    let (a, b) = two_servers().await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;

    let status = json!({"presence": "unavailable", "status_msg": "at lunch"});
    alice.put(&presence_path(alice.user_id()), &status).await.expect(200);
    let seen = bob_feed
        .until(CROSSING, "Alice's presence", |body| {
            presence_of(body, alice.user_id()).filter(|c| c["status_msg"] == "at lunch")
        })
        .await;
    assert_eq!(seen["presence"], "unavailable", "{seen}");
    let asked = bob.get(&presence_path(alice.user_id())).await.expect(200);
    assert_eq!((&asked["presence"], &asked["status_msg"]), (&json!("unavailable"), &json!("at lunch")));

    let status = json!({"presence": "online", "status_msg": "back"});
    bob.put(&presence_path(bob.user_id()), &status).await.expect(200);
    let seen = alice_feed
        .until(CROSSING, "Bob's presence", |body| {
            presence_of(body, bob.user_id()).filter(|c| c["status_msg"] == "back")
        })
        .await;
    assert_eq!((&seen["presence"], &seen["currently_active"]), (&json!("online"), &json!(true)), "{seen}");
    let asked = alice.get(&presence_path(bob.user_id())).await.expect(200);
    assert_eq!(asked["presence"], "online");
}

#[tokio::test]
async fn a_server_cannot_set_the_presence_of_another_servers_users() {
    let (a, b) = two_servers().await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    alice
        .put(&presence_path(alice.user_id()), &json!({"presence": "online", "status_msg": "real"}))
        .await
        .expect(200);

    // B, signing as itself, claims Alice (a user of A) is offline, and sets Bob's presence.
    let transaction = json!({
        "origin": b.server_name(),
        "origin_server_ts": 1,
        "pdus": [],
        "edus": [{"edu_type": "m.presence", "content": {"push": [
            {"user_id": alice.user_id(), "presence": "offline", "status_msg": "forged", "last_active_ago": 0},
        ]}}],
    });
    let uri = "/_matrix/federation/v1/send/presence-forgery";
    let reply = signed_request(&b, &a, "PUT", uri, Some(&transaction)).await;
    assert!(reply.status == 200 || reply.status == 403, "{}", reply.body);
    let asked = alice.get(&presence_path(alice.user_id())).await.expect(200);
    assert_eq!((&asked["presence"], &asked["status_msg"]), (&json!("online"), &json!("real")), "{asked}");

    let transaction = json!({
        "origin": b.server_name(),
        "origin_server_ts": 2,
        "pdus": [],
        "edus": [{"edu_type": "m.presence", "content": {"push": [
            {"user_id": bob.user_id(), "presence": "unavailable", "status_msg": "from B", "last_active_ago": 5000},
        ]}}],
    });
    let uri = "/_matrix/federation/v1/send/presence-real";
    signed_request(&b, &a, "PUT", uri, Some(&transaction)).await.expect(200);
    let asked = alice.get(&presence_path(bob.user_id())).await.expect(200);
    assert_eq!(
        (&asked["presence"], &asked["status_msg"]),
        (&json!("unavailable"), &json!("from B")),
        "{asked}"
    );
    let ago = asked["last_active_ago"].as_u64().unwrap();
    assert!((5000..60_000).contains(&ago), "last_active_ago {ago}");
}
