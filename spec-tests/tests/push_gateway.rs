//! Push notifications reach a push gateway (the push gateway API) in the format the spec
//! gives, in order, through failures, restarts and rejected push keys; and pushers may only
//! point where outbound requests are allowed to go.

use std::time::Duration;

use spec_tests::{push_gateway::*, rooms::PASSWORD, *};

/// Test servers reach the test's gateway on loopback only because this opens it.
const OPEN_LOOPBACK: &str = r#"
[rate_limits]
enabled = false
[outbound]
allowed_networks = ["127.0.0.0/8"]
"#;

const WAIT: Duration = Duration::from_secs(10);

fn pusher(gateway_url: &str, pushkey: &str, extra_data: Value) -> Value {
    let mut data = json!({"url": gateway_url});
    data.as_object_mut().unwrap().extend(extra_data.as_object().cloned().unwrap_or_default());
    json!({
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": pushkey,
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": data,
    })
}

async fn set_pusher(client: &Client, body: &Value) {
    client.post("/_matrix/client/v3/pushers/set", body).await.expect(200);
}

/// Alice and Bob in a room named "Lounge"; `extra` more members make it a group room.
async fn lounge(server: &Server, extra: usize) -> (Client, Client, String) {
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "Lounge", "preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    for i in 0..extra {
        server.client().register(&format!("member{i}"), PASSWORD).await.join_room(&room).await.expect(200);
    }
    (alice, bob, room)
}

#[tokio::test]
async fn a_message_reaches_the_gateway_in_the_full_format() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({"custom": "kept"}))).await;

    let event_id = alice.send_text(&room, "hello bob").await;
    let notification = gateway.wait_for_events(1, WAIT).await.remove(0);
    assert_eq!(notification["event_id"], event_id.as_str(), "{notification:#}");
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["type"], "m.room.message");
    assert_eq!(notification["sender"], alice.user_id());
    assert_eq!(notification["sender_display_name"], "alice");
    assert_eq!(notification["room_name"], "Lounge");
    assert_eq!(notification["content"]["body"], "hello bob");
    assert_eq!(notification["counts"]["unread"], 1);
    // A one-to-one room rings (sound), so the push is high priority (the default: omitted).
    assert!(notification.get("prio").is_none_or(|p| p == "high"), "{notification:#}");
    let device = &notification["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["pushkey"], "bob-phone");
    assert!(
        device["pushkey_ts"].as_u64().is_some_and(|ts| ts > 1_700_000_000 && ts < 4_000_000_000),
        "{device}"
    );
    // `data` is the pusher's data without the URL.
    assert_eq!(device["data"], json!({"custom": "kept"}));
    assert_eq!(device["tweaks"], json!({"sound": "default"}));

    // Alice's own message does not push to her (she has no pusher), and Bob's own message
    // does not push to Bob.
    bob.send_text(&room, "my own words").await;
    let second = alice.send_text(&room, "@room is everyone here?").await;
    let arrived = gateway.wait_for_events(2, WAIT).await;
    assert_eq!(arrived[1]["event_id"], second.as_str(), "Bob's own message was pushed: {arrived:#?}");
}

#[tokio::test]
async fn group_messages_are_low_priority_and_mentions_highlight() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 1).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;

    alice.send_text(&room, "chatter").await;
    let plain = gateway.wait_for_events(1, WAIT).await.remove(0);
    assert_eq!(plain["prio"], "low", "{plain:#}");
    assert!(plain["devices"][0].get("tweaks").is_none(), "{plain:#}");

    let mention = json!({
        "msgtype": "m.text",
        "body": "bob: look",
        "m.mentions": {"user_ids": [bob.user_id()]},
    });
    alice.send_event(&room, "m.room.message", &mention).await.expect(200);
    let mentioned = gateway.wait_for_events(2, WAIT).await.remove(1);
    assert!(mentioned.get("prio").is_none_or(|p| p == "high"), "{mentioned:#}");
    assert_eq!(mentioned["devices"][0]["tweaks"]["highlight"], true, "{mentioned:#}");
    assert_eq!(mentioned["counts"]["unread"], 1, "one room with unread messages");
}

#[tokio::test]
async fn room_mentions_need_the_power_level_notices_stay_quiet_and_encrypted_events_push() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 1).await;
    let member = server.client().login("member0", PASSWORD).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    let at_room = json!({"msgtype": "m.text", "body": "@room lunch?", "m.mentions": {"room": true}});

    // `@room` needs the `notifications.room` power level (50 by default): a member at 0 only
    // gets an ordinary notification; Alice (100) highlights.
    let unprivileged = member.send_event(&room, "m.room.message", &at_room).await.expect(200);
    let privileged = alice.send_event(&room, "m.room.message", &at_room).await.expect(200);
    // Notices (bots) do not push (`.m.rule.suppress_notices`).
    alice
        .send_event(&room, "m.room.message", &json!({"msgtype": "m.notice", "body": "beep"}))
        .await
        .expect(200);
    // Encrypted events push: the server cannot read them, the phone decides.
    let ciphertext = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "device_id": "D",
        "sender_key": "k", "session_id": "s"});
    let encrypted = alice.send_event(&room, "m.room.encrypted", &ciphertext).await.expect(200);

    let arrived = gateway.wait_for_events(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<Value> = gateway.received().iter().map(|n| n["event_id"].clone()).collect();
    let expected: Vec<Value> =
        [unprivileged, privileged, encrypted].iter().map(|r| r["event_id"].clone()).collect();
    assert_eq!(ids, expected, "{arrived:#?}");
    assert!(arrived[0]["devices"][0].get("tweaks").is_none(), "{:#}", arrived[0]);
    assert_eq!(arrived[1]["devices"][0]["tweaks"]["highlight"], true, "{:#}", arrived[1]);
    assert_eq!(arrived[2]["type"], "m.room.encrypted");
    assert!(arrived[2].get("prio").is_none_or(|p| p == "high"), "{:#}", arrived[2]);
}

#[tokio::test]
async fn event_id_only_pushers_get_ids_and_counts_only() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({"format": "event_id_only"}))).await;

    let event_id = alice.send_text(&room, "secret-ish").await;
    let notification = gateway.wait_for_events(1, WAIT).await.remove(0);
    assert_eq!(notification["event_id"], event_id.as_str());
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["counts"]["unread"], 1);
    for absent in ["type", "sender", "sender_display_name", "room_name", "content"] {
        assert!(notification.get(absent).is_none(), "{absent} in {notification:#}");
    }
    let device = &notification["devices"][0];
    assert_eq!(device["data"], json!({"format": "event_id_only"}));
    assert!(device.get("tweaks").is_none(), "{device}");
}

#[tokio::test]
async fn muted_rooms_and_ignored_senders_do_not_push() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    let other = alice.create_room(&json!({"preset": "public_chat", "name": "Other"})).await;
    bob.join_room(&other).await.expect(200);
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    // Bob mutes the lounge with a room rule that does not notify.
    bob.put(&format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&room)), &json!({"actions": []}))
        .await
        .expect(200);

    alice.send_text(&room, "muted").await;
    let heard = alice.send_text(&other, "heard").await;
    let arrived = gateway.wait_for_events(1, WAIT).await;
    assert_eq!(arrived[0]["event_id"], heard.as_str(), "{arrived:#?}");

    let ignore = json!({"ignored_users": {alice.user_id(): {}}});
    bob.put(
        &format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(bob.user_id())),
        &ignore,
    )
    .await
    .expect(200);
    alice.send_text(&other, "ignored").await;
    let carol = server.client().register("carol", PASSWORD).await;
    carol.join_room(&other).await.expect(200);
    let from_carol = carol.send_text(&other, "from carol").await;
    let arrived = gateway.wait_for_events(2, WAIT).await;
    assert_eq!(arrived[1]["event_id"], from_carol.as_str(), "{arrived:#?}");
}

#[tokio::test]
async fn reading_on_another_device_clears_the_badge() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    let event_id = alice.send_text(&room, "unread").await;
    gateway.wait_for_events(1, WAIT).await;

    let laptop = server.client().login("bob", PASSWORD).await;
    laptop
        .post(&rooms::room_path(&room, &format!("receipt/m.read/{}", enc(&event_id))), &json!({}))
        .await
        .expect(200);
    let badge = gateway.wait_for(1, WAIT, |n| n.get("event_id").is_none()).await.remove(0);
    assert_eq!(badge["counts"]["unread"], 0, "{badge:#}");
    assert_eq!(badge["devices"][0]["pushkey"], "bob-phone");
}

#[tokio::test]
async fn a_failing_gateway_gets_every_notification_in_order_once_it_recovers() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    gateway.answer(Answer::Fail(503));
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;

    let started = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(alice.send_text(&room, &format!("message {i}")).await);
    }
    // Sending does not wait for the gateway.
    assert!(started.elapsed() < Duration::from_secs(3), "sends took {:?}", started.elapsed());
    while gateway.failed() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.answer(Answer::Accept);
    let arrived = gateway.wait_for_events(3, WAIT).await;
    let ids: Vec<&str> = arrived.iter().map(|n| n["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, sent, "every notification, in the order sent, once");
}

#[tokio::test]
async fn a_rejected_pushkey_removes_the_pusher() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    gateway.answer(Answer::Reject(vec!["bob-phone".to_owned()]));
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;

    alice.send_text(&room, "to an uninstalled app").await;
    gateway.wait_for_events(1, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed = bob.get("/_matrix/client/v3/pushers").await.expect(200);
        if listed["pushers"] == json!([]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "pusher still there: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.answer(Answer::Accept);
    alice.send_text(&room, "nobody hears this").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(gateway.received().len(), 1, "{:#?}", gateway.received());
}

#[tokio::test]
async fn logging_out_a_device_removes_the_pushers_it_set() {
    let server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    let bob_tablet = server.client().login("bob", PASSWORD).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    set_pusher(&bob_tablet, &pusher(&gateway.url(), "bob-tablet", json!({}))).await;

    bob.post("/_matrix/client/v3/logout", &json!({})).await.expect(200);
    let listed = bob_tablet.get("/_matrix/client/v3/pushers").await.expect(200);
    let keys: Vec<&Value> = listed["pushers"].as_array().unwrap().iter().map(|p| &p["pushkey"]).collect();
    assert_eq!(keys, [&json!("bob-tablet")], "{listed}");

    alice.send_text(&room, "only the tablet rings").await;
    let arrived = gateway.wait_for_events(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushkeys: Vec<Value> =
        gateway.received().iter().map(|n| n["devices"][0]["pushkey"].clone()).collect();
    assert_eq!(pushkeys, [json!("bob-tablet")], "{arrived:#?}");
}

#[tokio::test]
async fn notifications_queued_for_a_down_gateway_survive_kill_9() {
    let mut server = Server::start_with_config(OPEN_LOOPBACK).await;
    let mut gateway = PushGateway::down();
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(alice.send_text(&room, &format!("queued {i}")).await);
    }
    // Let delivery fail at least once, then crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    server.restart().await;
    gateway.up().await;
    let arrived = gateway.wait_for_events(3, Duration::from_secs(20)).await;
    let ids: Vec<&str> = arrived.iter().map(|n| n["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, sent, "each queued notification once, in order");

    // What the gateway acknowledged is not sent again after another restart. (Without the
    // pause, the last ones may be sent again: cursors reach the disk within about a second.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    server.restart().await;
    let later = alice.send_text(&room, "after the second restart").await;
    let arrived = gateway.wait_for_events(4, WAIT).await;
    assert_eq!(arrived.len(), 4, "{arrived:#?}");
    assert_eq!(arrived[3]["event_id"], later.as_str());
}

#[tokio::test]
async fn a_clean_restart_right_after_delivery_sends_nothing_twice() {
    let mut server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    alice.send_text(&room, "before the restart").await;
    gateway.wait_for_events(1, WAIT).await;

    // Cursors are written in batches; stopping cleanly writes the last one.
    assert!(server.stop().await.success());
    server.restart().await;
    let later = alice.send_text(&room, "after the restart").await;
    gateway.wait_for_events(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = gateway.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[1]["event_id"], later.as_str());
}

#[tokio::test]
async fn a_gateway_failing_too_long_loses_old_notifications_not_new_ones() {
    let config = format!("{OPEN_LOOPBACK}\n[push]\ngive_up_after_secs = 1\n");
    let server = Server::start_with_config(&config).await;
    let gateway = PushGateway::start().await;
    gateway.answer(Answer::Fail(500));
    let (alice, bob, room) = lounge(&server, 0).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;
    alice.send_text(&room, "stale").await;
    // First try, then a retry a second later that finds the gateway failing for ≥ 1 s.
    while gateway.failed() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.answer(Answer::Accept);
    let fresh = alice.send_text(&room, "fresh").await;
    let arrived = gateway.wait_for_events(1, WAIT).await;
    assert_eq!(arrived[0]["event_id"], fresh.as_str(), "{arrived:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gateway.received().len(), 1, "{:#?}", gateway.received());
}

// Multi-threaded: the CLI is run blocking while the gateway must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushers_may_only_point_where_outbound_requests_may_go() {
    // The default config: no network opened.
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let port = gateway.port();
    for url in [
        format!("http://127.0.0.1:{port}/_matrix/push/v1/notify"),
        format!("https://127.0.0.1:{port}/_matrix/push/v1/notify"),
        format!("https://[::1]:{port}/_matrix/push/v1/notify"),
        format!("https://0x7f.1:{port}/_matrix/push/v1/notify"),
        "https://10.0.0.1/_matrix/push/v1/notify".to_owned(),
        "https://169.254.169.254/_matrix/push/v1/notify".to_owned(),
        "https://push.example.org/wrong/path".to_owned(),
        "https://push.example.org/_matrix/push/v1/notify?x=1".to_owned(),
        "ftp://push.example.org/_matrix/push/v1/notify".to_owned(),
        "not a url".to_owned(),
    ] {
        bob.post("/_matrix/client/v3/pushers/set", &pusher(&url, "k", json!({})))
            .await
            .expect_error(400, "M_INVALID_PARAM");
    }
    // A name is checked when it is resolved: accepted, but nothing is delivered to loopback.
    let by_name = format!("https://localhost:{port}/_matrix/push/v1/notify");
    set_pusher(&bob, &pusher(&by_name, "by-name", json!({}))).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    alice.send_text(&room, "must not reach loopback").await;
    let report = cli_ok(&server.cli(&["pushers", "test", bob.user_id()], None));
    assert!(report.contains("by-name: error: refused"), "{report}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gateway.received().is_empty() && gateway.failed() == 0, "{:#?}", gateway.received());
}

#[tokio::test]
async fn bad_pusher_requests_get_the_spec_errors() {
    let server = Server::start().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    let set = |body: Value| {
        let bob = bob.clone();
        async move { bob.post("/_matrix/client/v3/pushers/set", &body).await }
    };
    let mut no_url = pusher(url, "k", json!({}));
    no_url["data"] = json!({});
    set(no_url).await.expect_error(400, "M_MISSING_PARAM");
    let mut no_lang = pusher(url, "k", json!({}));
    no_lang.as_object_mut().unwrap().remove("lang");
    set(no_lang).await.expect_error(400, "M_MISSING_PARAM");
    set(pusher(url, &"k".repeat(513), json!({}))).await.expect_error(400, "M_INVALID_PARAM");
    let mut long_app = pusher(url, "k", json!({}));
    long_app["app_id"] = json!("a".repeat(65));
    set(long_app).await.expect_error(400, "M_INVALID_PARAM");
    let mut odd_kind = pusher(url, "k", json!({}));
    odd_kind["kind"] = json!("carrier-pigeon");
    set(odd_kind).await.expect_error(400, "M_INVALID_PARAM");
    bob.request_raw("POST", "/_matrix/client/v3/pushers/set", "{not json")
        .await
        .expect_error(400, "M_NOT_JSON");
    server
        .client()
        .post("/_matrix/client/v3/pushers/set", &pusher(url, "k", json!({})))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
    assert_eq!(bob.get("/_matrix/client/v3/pushers").await.expect(200), json!({"pushers": []}));
}

#[tokio::test]
async fn a_pushkey_moves_to_the_account_that_sets_it_unless_appended() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    set_pusher(&alice, &pusher(url, "shared-phone", json!({}))).await;
    let mut appended = pusher(url, "shared-phone", json!({}));
    appended["append"] = json!(true);
    set_pusher(&bob, &appended).await;
    let count = |client: Client| async move {
        client.get("/_matrix/client/v3/pushers").await.expect(200)["pushers"].as_array().unwrap().len()
    };
    assert_eq!((count(alice.clone()).await, count(bob.clone()).await), (1, 1));
    // Without `append` the phone now belongs to Carol alone.
    set_pusher(&carol, &pusher(url, "shared-phone", json!({}))).await;
    assert_eq!((count(alice).await, count(bob).await, count(carol).await), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_test_pushers_from_the_cli() {
    let mut server = Server::start_with_config(OPEN_LOOPBACK).await;
    let gateway = PushGateway::start().await;
    let bob = server.client().register("bob", PASSWORD).await;
    set_pusher(&bob, &pusher(&gateway.url(), "bob-phone", json!({}))).await;

    let listed = cli_ok(&server.cli(&["pushers", "list", bob.user_id()], None));
    assert!(listed.contains("org.example.app bob-phone http") && listed.contains(&gateway.url()), "{listed}");
    let tested = cli_ok(&server.cli(&["pushers", "test", bob.user_id()], None));
    assert!(tested.contains("bob-phone: ok"), "{tested}");
    let badge = gateway.wait_for(1, WAIT, |n| n.get("event_id").is_none()).await.remove(0);
    assert_eq!(badge["counts"]["unread"], 0, "{badge:#}");

    // With the server stopped, the CLI works on the store directly.
    server.stop().await;
    let json = cli_ok(&server.cli(&["--json", "pushers", "list", bob.user_id()], None));
    let reply: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(reply["pushers"][0]["pushkey"], "bob-phone", "{reply}");
    let tested = cli_ok(&server.cli(&["pushers", "test", bob.user_id()], None));
    assert!(tested.contains("bob-phone: ok"), "{tested}");
    gateway.answer(Answer::Reject(vec!["bob-phone".to_owned()]));
    let tested = cli_ok(&server.cli(&["pushers", "test", bob.user_id()], None));
    assert!(tested.contains("bob-phone: rejected"), "{tested}");
}
