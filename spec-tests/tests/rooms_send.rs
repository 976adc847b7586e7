//! Sending: messages and state, transaction-id idempotency per device, reading state and
//! single events back, and the refusals (non-members, members without power, bad content,
//! oversized events, unknown and malformed rooms).

use spec_tests::{rooms::*, *};

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

#[tokio::test]
async fn a_non_member_cannot_send_to_or_read_a_joined_only_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let eve = server.client().register("eve", PASSWORD).await;
    let room = alice
        .create_room(&json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
        }))
        .await;
    let event = alice.send_text(&room, "members only").await;

    eve.send_event(&room, "m.room.message", &text("hello?")).await.expect_error(403, "M_FORBIDDEN");
    eve.put_state(&room, "m.room.topic", "", &json!({"topic": "mine now"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    eve.messages(&room, "dir=b").await.expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, &format!("event/{}", enc(&event)))).await.expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, &format!("context/{}", enc(&event)))).await.expect_error(403, "M_FORBIDDEN");
    eve.get(&format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(&event)))
        .await
        .expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, "state")).await.expect_error(403, "M_FORBIDDEN");

    // Nothing eve tried reached the timeline.
    let history = alice.messages(&room, "dir=b&limit=100").await.expect(200);
    assert!(history["chunk"].as_array().unwrap().iter().all(|e| e["sender"] != eve.user_id()), "{history}");
}

#[tokio::test]
async fn a_member_without_power_cannot_change_power_levels_or_send_state() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "room_version": "11"})).await;
    bob.join_room(&room).await.expect(200);

    let mut power = alice.get_state(&room, "m.room.power_levels", "").await.expect(200);
    let original = power.clone();
    power["users"][bob.user_id()] = json!(100);
    bob.put_state(&room, "m.room.power_levels", "", &power).await.expect_error(403, "M_FORBIDDEN");
    bob.put_state(&room, "m.room.name", "", &json!({"name": "bob's"})).await.expect_error(403, "M_FORBIDDEN");
    bob.put_state(&room, "org.example.custom", "", &json!({"x": 1})).await.expect_error(403, "M_FORBIDDEN");
    bob.put_state(&room, "m.room.join_rules", "", &json!({"join_rule": "invite"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    assert_eq!(alice.get_state(&room, "m.room.power_levels", "").await.expect(200), original);

    // Messages need no power, and the creator may do all of the above.
    bob.send_text(&room, "just talking").await;
    alice.put_state(&room, "m.room.name", "", &json!({"name": "alice's"})).await.expect(200);
    alice.put_state(&room, "m.room.power_levels", "", &power).await.expect(200);
    bob.put_state(&room, "m.room.name", "", &json!({"name": "bob's now"})).await.expect(200);
}

#[tokio::test]
async fn a_transaction_id_is_idempotent_per_device() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let alice_phone = server.client().login("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);

    let path = room_path(&room, "send/m.room.message/same-txn");
    let first = alice.put(&path, &text("once")).await.expect(200)["event_id"].clone();
    let retried = alice.put(&path, &text("once")).await.expect(200)["event_id"].clone();
    assert_eq!(first, retried, "a retried request returns the first event");
    let phone = alice_phone.put(&path, &text("from my phone")).await.expect(200)["event_id"].clone();
    assert_ne!(phone, first, "another device's transaction is another event");
    let other_user = bob.put(&path, &text("bob")).await.expect(200)["event_id"].clone();
    assert_ne!(other_user, first);

    let history = alice.messages(&room, "dir=b&limit=100").await.expect(200);
    let mut bodies: Vec<&str> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["bob", "from my phone", "once"]);

    // Only the sending device sees its transaction id echoed back.
    let event_path = room_path(&room, &format!("event/{}", enc(first.as_str().unwrap())));
    let seen_by_sender = alice.get(&event_path).await.expect(200);
    assert_eq!(seen_by_sender["unsigned"]["transaction_id"], "same-txn", "{seen_by_sender}");
    let seen_by_phone = alice_phone.get(&event_path).await.expect(200);
    assert!(seen_by_phone["unsigned"].get("transaction_id").is_none(), "{seen_by_phone}");
}

#[tokio::test]
async fn state_is_written_and_read_with_or_without_a_trailing_slash() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;

    // An empty state key may be left out, with or without the final slash.
    let topic =
        alice.put(&room_path(&room, "state/m.room.topic"), &json!({"topic": "one"})).await.expect(200);
    assert_eq!(alice.get(&room_path(&room, "state/m.room.topic/")).await.expect(200)["topic"], "one");
    alice.put(&room_path(&room, "state/m.room.topic/"), &json!({"topic": "two"})).await.expect(200);
    assert_eq!(alice.get(&room_path(&room, "state/m.room.topic")).await.expect(200)["topic"], "two");
    assert_ne!(topic["event_id"], Value::Null);

    let custom =
        alice.put_state(&room, "org.example.list", "shopping", &json!({"items": ["tea"]})).await.expect(200);
    assert_eq!(
        alice.get_state(&room, "org.example.list", "shopping").await.expect(200),
        json!({"items": ["tea"]})
    );
    alice.get_state(&room, "org.example.list", "other").await.expect_error(404, "M_NOT_FOUND");
    alice.get_state(&room, "org.example.absent", "").await.expect_error(404, "M_NOT_FOUND");

    let all = alice.get(&room_path(&room, "state")).await.expect(200);
    let all = all.as_array().expect("the state is an array of events");
    let find =
        |kind: &str, key: &str| all.iter().find(|e| e["type"] == kind && e["state_key"] == key).cloned();
    let list = find("org.example.list", "shopping").expect("custom state listed");
    assert_eq!(list["event_id"], custom["event_id"]);
    assert_eq!(find("m.room.topic", "").expect("topic listed")["content"]["topic"], "two");
    assert!(find("m.room.create", "").is_some());
    assert!(find("m.room.member", alice.user_id()).is_some());
    assert_eq!(all.iter().filter(|e| e["type"] == "m.room.topic").count(), 1, "only the current topic");
}

#[tokio::test]
async fn events_are_served_in_client_format_and_unknown_ones_are_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let other_room = alice.create_room(&json!({})).await;
    let event_id = alice.send_text(&room, "hello").await;

    let event = alice.get(&room_path(&room, &format!("event/{}", enc(&event_id)))).await.expect(200);
    assert_eq!(event["event_id"], event_id);
    assert_eq!(event["room_id"], room);
    assert_eq!(event["sender"], alice.user_id());
    assert_eq!(event["type"], "m.room.message");
    assert_eq!(event["content"], text("hello"));
    assert!(event["origin_server_ts"].as_u64().is_some());
    assert!(event["unsigned"]["age"].as_u64().is_some(), "{event}");
    for federation_only in ["hashes", "signatures", "auth_events", "prev_events", "depth"] {
        assert!(event.get(federation_only).is_none(), "{federation_only} leaked: {event}");
    }

    let unknown = "$doesnotexistdoesnotexistdoesnotexist12345";
    alice.get(&room_path(&room, &format!("event/{}", enc(unknown)))).await.expect_error(404, "M_NOT_FOUND");
    alice
        .get(&room_path(&other_room, &format!("event/{}", enc(&event_id))))
        .await
        .expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn event_content_must_be_a_json_object() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;

    for content in [json!([1, 2]), json!("text"), json!(42), json!(null)] {
        alice.send_event(&room, "m.room.message", &content).await.expect_error(400, "M_BAD_JSON");
        alice.put_state(&room, "org.example.state", "", &content).await.expect_error(400, "M_BAD_JSON");
    }
    let broken =
        alice.request_raw("PUT", &room_path(&room, &format!("send/m.room.message/{}", txn_id())), "{").await;
    broken.expect_error(400, "M_NOT_JSON");
    let history = alice.messages(&room, "dir=b&limit=100").await.expect(200);
    assert!(history["chunk"].as_array().unwrap().iter().all(|e| e["type"] != "m.room.message"), "{history}");
}

#[tokio::test]
async fn an_event_over_the_pdu_size_limit_is_refused_as_too_large() {
    // A body limit far above the 64 KiB PDU limit, so the event rule is what refuses.
    let config = format!("{TEST_CONFIG}\n[limits]\nmax_request_bytes = 1048576\n");
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;

    alice.send_text(&room, &"a".repeat(60_000)).await;
    alice
        .send_event(&room, "m.room.message", &text(&"b".repeat(70_000)))
        .await
        .expect_error(413, "M_TOO_LARGE");
    alice
        .put_state(&room, "org.example.big", "", &json!({"blob": "c".repeat(70_000)}))
        .await
        .expect_error(413, "M_TOO_LARGE");
    alice.get_state(&room, "org.example.big", "").await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn unknown_rooms_are_refused_and_malformed_room_ids_are_bad_requests() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let unknown = format!("!unknown:{}", server_name_of(alice.user_id()));

    for resp in [
        alice.send_event(&unknown, "m.room.message", &text("hi")).await,
        alice.put_state(&unknown, "m.room.topic", "", &json!({"topic": "t"})).await,
        alice.messages(&unknown, "dir=b").await,
        alice.get(&room_path(&unknown, "state")).await,
    ] {
        assert!(
            matches!((resp.status, resp.errcode()), (404, "M_NOT_FOUND") | (403, "M_FORBIDDEN")),
            "{resp:?}"
        );
    }
    for resp in [
        alice.send_event("no-sigil", "m.room.message", &text("hi")).await,
        alice.get(&room_path("no-sigil", "state")).await,
        alice.messages(alice.user_id(), "dir=b").await,
        alice.get(&room_path(&format!("#alias:{}", server_name_of(alice.user_id())), "members")).await,
    ] {
        assert_eq!(resp.status, 400, "{resp:?}");
    }
}
