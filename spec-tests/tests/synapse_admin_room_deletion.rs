//! Synapse-compatible admin API: deleting rooms (`DELETE /v2/rooms/{id}` in the background
//! with its status, `DELETE /v1/rooms/{id}`), moving members and aliases to a new room,
//! purging, and blocking rooms.

use std::time::{Duration, Instant};

use spec_tests::{
    admin_api::*,
    rooms::{PASSWORD, room_path},
    *,
};

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

fn room(version: &str, room_id: &str, rest: &str) -> String {
    admin_path(&format!("{version}/rooms/{}{rest}", enc(room_id)))
}

/// Waits for a deletion to finish; returns its status.
async fn finished(root: &Client, delete_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = root.get(&admin_path(&format!("v2/rooms/delete_status/{delete_id}"))).await.expect(200);
        if status["status"] == "complete" || status["status"] == "failed" {
            return status;
        }
        assert!(Instant::now() < deadline, "deletion still running: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deletion_and_block_endpoints_are_for_admins_only() {
    let server = Server::start().await;
    admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("DELETE", room("v2", &room_id, ""), Some(json!({}))),
        ("DELETE", room("v1", &room_id, ""), Some(json!({}))),
        ("GET", room("v2", &room_id, "/delete_status"), None),
        ("GET", admin_path("v2/rooms/delete_status/abc"), None),
        ("GET", room("v1", &room_id, "/block"), None),
        ("PUT", room("v1", &room_id, "/block"), Some(json!({"block": true}))),
    ];
    for (method, path, body) in &cases {
        assert_admin_only(&server, &alice, method, path, body.as_ref()).await;
    }
    alice.send_text(&room_id, "still here").await;
}

#[tokio::test]
async fn delete_moves_members_and_aliases_to_a_new_room_then_purges() {
    let mut server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let old =
        alice.create_room(&json!({"preset": "public_chat", "room_alias_name": "den", "name": "Den"})).await;
    bob.join_room(&old).await.expect(200);
    let bad = bob.send_text(&old, "illegal content").await;
    let kept = alice.create_room(&json!({"name": "Kept"})).await;
    alice.send_text(&kept, "unrelated").await;
    let since =
        alice.get("/_matrix/client/v3/sync").await.expect(200)["next_batch"].as_str().unwrap().to_owned();
    // A sliding sync connection that has sent the room and subscribes to it.
    let sliding_body = json!({
        "conn_id": "main",
        "lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 5, "required_state": [["*", "*"]]}},
        "room_subscriptions": {old.as_str(): {"timeline_limit": 5, "required_state": [["*", "*"]]}}
    });
    let first = alice.post(SLIDING, &sliding_body).await.expect(200);
    assert!(first["rooms"].get(old.as_str()).is_some(), "{first}");
    let pos = first["pos"].as_str().unwrap().to_owned();

    let body =
        json!({"new_room_user_id": "@root:localhost", "room_name": "Moved", "message": "Den was shut down"});
    let reply = root.delete(&room("v2", &old, ""), Some(&body)).await.expect(200);
    let delete_id = reply["delete_id"].as_str().unwrap().to_owned();
    let status = finished(&root, &delete_id).await;
    assert_eq!(status["status"], "complete", "{status}");
    assert_eq!((status["delete_id"].clone(), status["room_id"].clone()), (json!(delete_id), json!(old)));
    let shutdown = &status["shutdown_room"];
    let mut kicked: Vec<&str> =
        shutdown["kicked_users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    kicked.sort();
    assert_eq!(kicked, ["@alice:localhost", "@bob:localhost"], "{status}");
    assert_eq!(shutdown["failed_to_kick_users"], json!([]));
    assert_eq!(shutdown["local_aliases"], json!(["#den:localhost"]));
    let new_room = shutdown["new_room_id"].as_str().unwrap().to_owned();

    // The members and the alias are in the new room, which says why.
    assert_eq!(alice.joined_rooms().await.iter().filter(|r| **r == new_room).count(), 1);
    assert!(!bob.joined_rooms().await.contains(&old));
    let alias =
        alice.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#den:localhost"))).await.expect(200);
    assert_eq!(alias["room_id"], new_room.as_str());
    let history = alice.messages(&new_room, "dir=b&limit=20").await.expect(200);
    assert!(history.to_string().contains("Den was shut down"), "{history}");
    let name = alice.get_state(&new_room, "m.room.name", "").await.expect(200);
    assert_eq!(name["name"], "Moved");
    // Moved members may not speak there.
    let speak =
        bob.send_event(&new_room, "m.room.message", &json!({"msgtype": "m.text", "body": "hi?"})).await;
    speak.expect_error(403, "M_FORBIDDEN");

    // The old room is gone: from the admin API, from its members' views and from sync.
    root.get(&room("v1", &old, "")).await.expect_error(404, "M_NOT_FOUND");
    let rooms = root.get(&admin_path("v1/rooms")).await.expect(200);
    assert!(!rooms.to_string().contains(old.as_str()), "{rooms}");
    for client in [&alice, &bob] {
        // A room this server no longer has is one nobody may read (403, as Synapse answers).
        let resp = client.get(&room_path(&old, &format!("event/{}", enc(&bad)))).await;
        resp.expect_error(403, "M_FORBIDDEN");
    }
    alice.get(&format!("/_matrix/client/v3/sync?since={since}")).await.expect(200);
    let sliding_after =
        alice.post(&format!("{SLIDING}?pos={}&timeout=0", enc(&pos)), &sliding_body).await.expect(200);
    assert!(sliding_after["rooms"].get(old.as_str()).is_none(), "{sliding_after}");
    alice.get("/_matrix/client/v3/sync").await.expect(200);
    alice.messages(&kept, "dir=b&limit=10").await.expect(200);

    let by_room = root.get(&room("v2", &old, "/delete_status")).await.expect(200);
    assert_eq!(by_room["results"][0]["delete_id"], delete_id.as_str());

    // The purge is on disk: after a restart the room is still gone, the other one intact.
    server.stop().await;
    server.restart().await;
    root.get(&room("v1", &old, "")).await.expect_error(404, "M_NOT_FOUND");
    let history = alice.messages(&kept, "dir=b&limit=10").await.expect(200);
    assert!(history.to_string().contains("unrelated"));
}

#[tokio::test]
async fn a_blocked_room_cannot_be_joined() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;

    // The older API answers when done; without purge the room stays, empty and blocked.
    let reply = root
        .delete(&room("v1", &room_id, ""), Some(&json!({"block": true, "purge": false})))
        .await
        .expect(200);
    assert_eq!(reply["kicked_users"], json!(["@alice:localhost"]), "{reply}");
    assert!(reply["new_room_id"].is_null());
    assert_eq!(root.get(&room("v1", &room_id, "")).await.expect(200)["joined_members"], 0);
    let block = root.get(&room("v1", &room_id, "/block")).await.expect(200);
    assert_eq!(block, json!({"block": true, "user_id": "@root:localhost"}));
    bob.join_room(&room_id).await.expect_error(403, "M_FORBIDDEN");
    alice.join_room(&room_id).await.expect_error(403, "M_FORBIDDEN");

    assert_eq!(
        root.put(&room("v1", &room_id, "/block"), &json!({"block": false})).await.expect(200),
        json!({"block": false})
    );
    assert_eq!(root.get(&room("v1", &room_id, "/block")).await.expect(200), json!({"block": false}));
    bob.join_room(&room_id).await.expect(200);

    // A room this server does not know yet can be blocked too.
    root.put(&room("v1", "!elsewhere:remote.example", "/block"), &json!({"block": true})).await.expect(200);
    assert_eq!(root.get(&room("v1", "!elsewhere:remote.example", "/block")).await.expect(200)["block"], true);
    // Invites into a blocked room are refused.
    let other = alice.create_room(&json!({})).await;
    root.put(&room("v1", &other, "/block"), &json!({"block": true})).await.expect(200);
    alice.membership_action(&other, "invite", "@bob:localhost").await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn bad_deletion_requests_are_refused() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    root.delete(&room("v2", "!unknown:localhost", ""), Some(&json!({})))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.delete(&room("v2", "not-a-room", ""), Some(&json!({}))).await.expect_error(400, "M_INVALID_PARAM");
    let remote = json!({"new_room_user_id": "@x:elsewhere.example"});
    root.delete(&room("v2", &room_id, ""), Some(&remote)).await.expect_error(400, "M_INVALID_PARAM");
    let unknown = json!({"new_room_user_id": "@nobody:localhost"});
    root.delete(&room("v2", &room_id, ""), Some(&unknown)).await.expect_error(404, "M_NOT_FOUND");
    root.request_raw("DELETE", &room("v2", &room_id, ""), "{").await.expect_error(400, "M_NOT_JSON");
    root.delete(&room("v2", &room_id, ""), Some(&json!({"purge": "yes"})))
        .await
        .expect_error(400, "M_BAD_JSON");
    root.get(&admin_path("v2/rooms/delete_status/nope")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&room("v2", &room_id, "/delete_status")).await.expect_error(404, "M_NOT_FOUND");
    root.put(&room("v1", &room_id, "/block"), &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    root.get(&room("v1", "bad", "/block")).await.expect_error(400, "M_INVALID_PARAM");
    // None of that touched the room.
    alice.send_text(&room_id, "still here").await;
}
