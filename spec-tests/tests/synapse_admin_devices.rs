//! Synapse-compatible admin API: a user's devices (list, show, rename, delete), whois (and
//! the client-server API's `/admin/whois`), and shadow bans (a shadow-banned user's sends
//! are answered and reach nobody).

use spec_tests::{
    admin_api::*,
    rooms::{PASSWORD, room_path},
    *,
};

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

fn devices(user_id: &str, rest: &str) -> String {
    user_path("v2/users", user_id, rest)
}

#[tokio::test]
async fn device_endpoints_are_for_admins_only() {
    let server = Server::start().await;
    admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let (me, device) = (alice.user_id().to_owned(), alice.device_id.clone().unwrap());
    let one = devices(&me, &format!("/devices/{device}"));
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", devices(&me, "/devices"), None),
        ("GET", one.clone(), None),
        ("PUT", one.clone(), Some(json!({"display_name": "x"}))),
        ("DELETE", one.clone(), None),
        ("POST", devices(&me, "/delete_devices"), Some(json!({"devices": [device]}))),
        ("GET", user_path("v1/whois", &me, ""), None),
        ("POST", user_path("v1/users", &me, "/shadow_ban"), None),
        ("DELETE", user_path("v1/users", &me, "/shadow_ban"), None),
    ];
    for (method, path, body) in &cases {
        assert_admin_only(&server, &alice, method, path, body.as_ref()).await;
    }
    alice.get(WHOAMI).await.expect(200);
}

#[tokio::test]
async fn list_show_rename_and_delete_devices() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let phone = server.client().register("alice", PASSWORD).await;
    let laptop = server.client().login("alice", PASSWORD).await;
    let (phone_id, laptop_id) = (phone.device_id.clone().unwrap(), laptop.device_id.clone().unwrap());
    let me = "@alice:localhost";

    let listed = root.get(&devices(me, "/devices")).await.expect(200);
    assert_eq!(listed["total"], 2);
    let mut ids: Vec<&str> =
        listed["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![phone_id.as_str(), laptop_id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    let device = &listed["devices"][0];
    assert_eq!(device["user_id"], me);
    assert_eq!(device["last_seen_ip"], "127.0.0.1");
    assert!(device["last_seen_ts"].as_u64().is_some(), "{device}");

    let phone_path = devices(me, &format!("/devices/{phone_id}"));
    root.put(&phone_path, &json!({"display_name": "Alice's phone"})).await.expect(200);
    let shown = root.get(&phone_path).await.expect(200);
    assert_eq!(
        (shown["device_id"].clone(), shown["display_name"].clone()),
        (json!(phone_id), json!("Alice's phone"))
    );

    root.delete(&phone_path, None).await.expect(200);
    phone.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    root.get(&phone_path).await.expect_error(404, "M_NOT_FOUND");
    root.post(&devices(me, "/delete_devices"), &json!({"devices": [laptop_id]})).await.expect(200);
    laptop.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(root.get(&devices(me, "/devices")).await.expect(200)["total"], 0);

    root.put(&phone_path, &json!({"display_name": "gone"})).await.expect_error(404, "M_NOT_FOUND");
    root.post(&devices(me, "/delete_devices"), &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    root.request_raw("PUT", &phone_path, "not json").await.expect_error(400, "M_NOT_JSON");
    root.get(&devices("@nobody:localhost", "/devices")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&devices("nobody", "/devices")).await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn whois_lists_each_device_with_its_last_connection() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let body = root.get(&user_path("v1/whois", "@alice:localhost", "")).await.expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    let device = &body["devices"][alice.device_id.as_deref().unwrap()];
    let connection = &device["sessions"][0]["connections"][0];
    assert_eq!(connection["ip"], "127.0.0.1", "{body}");
    assert!(connection["last_seen"].as_u64().is_some(), "{body}");
    root.get(&user_path("v1/whois", "@nobody:localhost", "")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&user_path("v1/whois", "@x:elsewhere.example", "")).await.expect_error(400, "M_INVALID_PARAM");

    // The client-server API's whois: users look themselves up, admins anyone.
    let bob = server.client().register("bob", PASSWORD).await;
    let client_whois = |user: &str| format!("/_matrix/client/v3/admin/whois/{}", enc(user));
    let own = alice.get(&client_whois("@alice:localhost")).await.expect(200);
    assert_eq!(own["devices"], body["devices"], "the same answer as the admin API's");
    bob.get(&client_whois("@alice:localhost")).await.expect_error(403, "M_FORBIDDEN");
    let by_admin = root.get(&client_whois("@bob:localhost")).await.expect(200);
    assert_eq!(by_admin["user_id"], "@bob:localhost");
    root.get(&client_whois("@nobody:localhost")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&client_whois("@x:elsewhere.example")).await.expect_error(400, "M_INVALID_PARAM");
    server.client().get(&client_whois("@alice:localhost")).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_shadow_banned_users_sends_reach_nobody() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let spammer = server.client().register("spammer", PASSWORD).await;
    let victim = server.client().register("victim", PASSWORD).await;
    let room = root.create_room(&json!({"preset": "public_chat"})).await;
    spammer.join_room(&room).await.expect(200);
    let ban = user_path("v1/users", "@spammer:localhost", "/shadow_ban");
    assert_eq!(root.post(&ban, &json!({})).await.expect(200), json!({}));
    assert_eq!(
        root.get(&user_path("v2/users", "@spammer:localhost", "")).await.expect(200)["shadow_banned"],
        true
    );

    // Answered as if it worked...
    let dropped = spammer.send_text(&room, "buy now").await;
    assert!(dropped.starts_with('$'), "{dropped}");
    let topic =
        spammer.put_state(&room, "m.room.topic", "", &json!({"topic": "cheap pills"})).await.expect(200);
    assert!(topic["event_id"].is_string());
    spammer.membership_action(&room, "invite", "@victim:localhost").await.expect(200);
    // ...and seen by nobody.
    root.get(&room_path(&room, &format!("event/{}", enc(&dropped)))).await.expect_error(404, "M_NOT_FOUND");
    let history = root.messages(&room, "dir=b&limit=50").await.expect(200);
    for dropped in ["buy now", "cheap pills", "@victim:localhost"] {
        assert!(!history.to_string().contains(dropped), "{dropped}: {history}");
    }
    let sync = victim.get("/_matrix/client/v3/sync").await.expect(200);
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "the invite was dropped: {sync}");
    // Sending to a room that does not exist still fails, as for anyone.
    spammer
        .send_event("!nowhere:localhost", "m.room.message", &json!({"body": "x"}))
        .await
        .expect_error(404, "M_NOT_FOUND");

    root.delete(&ban, None).await.expect(200);
    let heard = spammer.send_text(&room, "sorry").await;
    root.get(&room_path(&room, &format!("event/{}", enc(&heard)))).await.expect(200);
    root.post(&user_path("v1/users", "@nobody:localhost", "/shadow_ban"), &json!({}))
        .await
        .expect_error(404, "M_NOT_FOUND");
}
