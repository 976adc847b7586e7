//! `/sync` basics: initial and incremental syncs, gaps and `prev_batch`, invites, leaving,
//! the fields every response carries, bad tokens, and tokens that outlive a `kill -9`.

mod sync_support;

use spec_tests::*;
use sync_support::*;

#[tokio::test]
async fn initial_sync_shows_a_joined_room_with_its_state_and_timeline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Lobby"})).await;
    let message = send_text(&alice, &room, "hello").await;

    let body = sync(&alice, None, 0, None).await;
    assert!(body["next_batch"].is_string(), "{body}");
    let section = joined(&body, &room);
    assert!(timeline_ids(section).contains(&message), "{section}");
    // Everything up to the first timeline event is in `state`, the rest in the timeline.
    let mut kinds: Vec<String> = events(&section["state"])
        .iter()
        .chain(events(&section["timeline"]).iter())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    for kind in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name"]
    {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(section["summary"]["m.joined_member_count"], 1, "{section}");
}

/// Found by Hydrogen (spec-tests/clients/browser): a prev_batch offered before the room's
/// creation made it show a gap above the start of every small room.
#[tokio::test]
async fn a_timeline_that_starts_at_the_room_creation_has_no_prev_batch() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = create_room(&alice, json!({"preset": "private_chat"})).await;
    send_text(&alice, &room, "hello").await;

    let body = sync(&alice, None, 0, None).await;
    let timeline = &joined(&body, &room)["timeline"];
    assert_eq!(events(timeline)[0]["type"], "m.room.create", "{timeline}");
    assert!(timeline.get("prev_batch").is_none_or(Value::is_null), "{timeline}");

    // With the creation cut off by the limit, the token is there to page back to it.
    let filter = json!({"room": {"timeline": {"limit": 2}}}).to_string();
    let body = sync(&alice, None, 0, Some(&filter)).await;
    let timeline = &joined(&body, &room)["timeline"];
    assert!(timeline["prev_batch"].is_string(), "{timeline}");
}

#[tokio::test]
async fn every_sync_response_carries_one_time_key_counts_and_fallback_key_types() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let initial = sync(&alice, None, 0, None).await;
    let incremental = sync(&alice, Some(&next_batch(&initial)), 0, None).await;
    for body in [initial, incremental] {
        assert!(body["device_one_time_keys_count"].is_object(), "{body}");
        assert!(body["device_unused_fallback_key_types"].is_array(), "{body}");
    }
}

#[tokio::test]
async fn incremental_sync_returns_only_events_after_its_token() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let before = send_text(&alice, &room, "before").await;
    let token = next_batch(&sync(&alice, None, 0, None).await);
    let after = send_text(&alice, &room, "after").await;

    let body = sync(&alice, Some(&token), 0, None).await;
    let section = joined(&body, &room);
    assert_eq!(timeline_ids(section), vec![after], "{section}");
    // `limited` may be left out when false.
    assert!(!section["timeline"]["limited"].as_bool().unwrap_or(false), "{section}");
    assert!(!timeline_ids(section).contains(&before));
    // The client already has the room's state: an incremental sync without a gap sends none.
    assert!(events(&section["state"]).is_empty(), "{section}");

    // Nothing new: the room is absent and the token does not go backwards.
    let again = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(joined(&again, &room).is_null(), "{again}");
    assert!(next_batch(&again).parse::<u64>().unwrap() >= next_batch(&body).parse::<u64>().unwrap());
}

#[tokio::test]
async fn gappy_sync_is_limited_and_its_prev_batch_continues_exactly_before_the_timeline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let filter = r#"{"room":{"timeline":{"limit":3}}}"#;
    let token = next_batch(&sync(&alice, None, 0, Some(filter)).await);
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(send_text(&alice, &room, &format!("message {i}")).await);
    }

    let body = sync(&alice, Some(&token), 0, Some(filter)).await;
    let section = joined(&body, &room);
    assert_eq!(section["timeline"]["limited"], true, "{section}");
    assert_eq!(timeline_ids(section), sent[7..].to_vec(), "{section}");
    let prev_batch = section["timeline"]["prev_batch"].as_str().expect("prev_batch");

    let path =
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=4&from={}", enc(&room), enc(prev_batch));
    let page = alice.get(&path).await.expect(200);
    let older: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    // Newest first: message 6 directly precedes message 7, the first timeline event.
    assert_eq!(older, vec![&sent[6], &sent[5], &sent[4], &sent[3]], "{page}");
}

#[tokio::test]
async fn invites_show_stripped_state_under_rooms_invite() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let token = next_batch(&sync(&bob, None, 0, None).await);
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Secret plans"})).await;
    invite(&alice, &room, bob.user_id()).await;

    let body = sync(&bob, Some(&token), 5000, None).await;
    assert!(joined(&body, &room).is_null(), "{body}");
    let state = events(&body["rooms"]["invite"][&room]["invite_state"]);
    let find = |kind: &str, key: &str| {
        state
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .unwrap_or_else(|| panic!("{kind} missing from {state:?}"))
            .clone()
    };
    find("m.room.create", "");
    assert_eq!(find("m.room.join_rules", "")["content"]["join_rule"], "invite");
    assert_eq!(find("m.room.name", "")["content"]["name"], "Secret plans");
    let member = find("m.room.member", bob.user_id());
    assert_eq!(member["content"]["membership"], "invite");
    assert_eq!(member["sender"], alice.user_id());
    // Stripped state is just that: no event ids, no timestamps of the full events.
    assert!(state.iter().all(|e| e.get("event_id").is_none()), "{state:?}");

    // An initial sync shows the pending invite too.
    let initial = sync(&bob, None, 0, None).await;
    assert!(initial["rooms"]["invite"][&room].is_object(), "{initial}");
}

#[tokio::test]
async fn a_user_who_leaves_gets_the_room_under_leave_once_and_never_its_later_messages() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);
    let seen = send_text(&alice, &room, "still here?").await;
    leave(&bob, &room).await;
    let unseen = send_text(&alice, &room, "bob is gone").await;

    let body = sync(&bob, Some(&token), 0, None).await;
    assert!(joined(&body, &room).is_null(), "{body}");
    let left = &body["rooms"]["leave"][&room];
    let ids = timeline_ids(left);
    assert!(ids.contains(&seen), "{left}");
    assert!(!ids.contains(&unseen), "{left}");
    let last = events(&left["timeline"]).last().cloned().expect("the leave event");
    assert_eq!(
        (last["type"].as_str(), last["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id()))
    );
    assert_eq!(last["content"]["membership"], "leave");

    // Later syncs: neither the room nor Alice's new messages, however long Bob waits.
    send_text(&alice, &room, "talking to myself").await;
    let later = sync(&bob, Some(&next_batch(&body)), 300, None).await;
    assert!(later["rooms"]["leave"][&room].is_null(), "{later}");
    assert!(joined(&later, &room).is_null(), "{later}");
}

#[tokio::test]
async fn a_malformed_since_token_is_an_invalid_param() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    try_sync(&alice, Some("not-a-token"), 0, None).await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn sync_needs_a_valid_access_token() {
    let server = Server::start().await;
    server.client().get("/_matrix/client/v3/sync").await.expect_error(401, "M_MISSING_TOKEN");
    server
        .client()
        .with_token("nope")
        .get("/_matrix/client/v3/sync")
        .await
        .expect_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn sync_tokens_from_before_a_kill_9_still_work_and_return_only_newer_events() {
    let mut server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let old_token = next_batch(&sync(&alice, None, 0, None).await);
    let before_crash = send_text(&alice, &room, "before the crash").await;
    let token = next_batch(&sync(&alice, Some(&old_token), 0, None).await);

    server.kill9();
    server.restart().await;
    let after_restart = send_text(&alice, &room, "after the restart").await;

    let body = sync(&alice, Some(&token), 5000, None).await;
    assert_eq!(timeline_ids(joined(&body, &room)), vec![after_restart.clone()], "{body}");
    let from_old = sync(&alice, Some(&old_token), 0, None).await;
    assert_eq!(timeline_ids(joined(&from_old, &room)), vec![before_crash, after_restart], "{from_old}");
    // The new token still moves forwards past the restart.
    let newest = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(joined(&newest, &room).is_null(), "{newest}");
}

/// Types of the state and timeline events of a room section.
fn kinds_in(section: &Value) -> Vec<String> {
    events(&section["state"])
        .iter()
        .chain(events(&section["timeline"]).iter())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_room_joined_after_the_token_comes_with_its_full_state() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Open house"})).await;
    send_text(&alice, &room, "welcome").await;
    let token = next_batch(&sync(&bob, None, 0, None).await);
    join(&bob, &room).await;

    let body = sync(&bob, Some(&token), 5000, None).await;
    let section = joined(&body, &room);
    let kinds = kinds_in(section);
    for kind in ["m.room.create", "m.room.name", "m.room.power_levels", "m.room.join_rules"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {section}");
    }
    let last = events(&section["timeline"]).last().cloned().unwrap_or_else(|| panic!("{section}"));
    assert_eq!(
        (last["state_key"].as_str(), last["content"]["membership"].as_str()),
        (Some(bob.user_id()), Some("join"))
    );
}

#[tokio::test]
async fn full_state_resends_the_rooms_state_in_an_incremental_sync() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);
    send_text(&alice, &room, "something new").await;

    let path = format!("/_matrix/client/v3/sync?full_state=true&timeout=0&since={}", enc(&token));
    let body = alice.get(&path).await.expect(200);
    let kinds = kinds_in(joined(&body, &room));
    assert!(kinds.iter().any(|k| k == "m.room.create"), "{body}");
    // Even a room with nothing new is sent in full.
    let path = format!("/_matrix/client/v3/sync?full_state=true&timeout=0&since={}", enc(&next_batch(&body)));
    let body = alice.get(&path).await.expect(200);
    assert!(kinds_in(joined(&body, &room)).iter().any(|k| k == "m.room.create"), "{body}");
}

#[tokio::test]
async fn a_rejected_invite_moves_to_rooms_leave_with_the_rejection() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = create_room(&alice, json!({"preset": "private_chat"})).await;
    invite(&alice, &room, bob.user_id()).await;
    let body = sync(&bob, None, 0, None).await;
    assert!(body["rooms"]["invite"][&room].is_object(), "{body}");
    send_text(&alice, &room, "are you coming?").await;

    leave(&bob, &room).await;
    let body = sync(&bob, Some(&next_batch(&body)), 5000, None).await;
    assert!(body["rooms"]["invite"][&room].is_null(), "{body}");
    let left = &body["rooms"]["leave"][&room];
    let rejection =
        events(&left["timeline"]).last().cloned().unwrap_or_else(|| panic!("no leave event: {body}"));
    assert_eq!(rejection["state_key"], bob.user_id());
    assert_eq!(rejection["content"]["membership"], "leave");
    // Alice's messages in a room Bob never joined stay hidden from him.
    assert!(of_type(&left["timeline"], "m.room.message").is_empty(), "{left}");
}

#[tokio::test]
async fn a_gappy_sync_carries_the_state_changed_in_the_gap_and_nothing_else() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Old name"})).await;
    let filter = r#"{"room":{"timeline":{"limit":2}}}"#;
    let token = next_batch(&sync(&alice, None, 0, Some(filter)).await);
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room));
    alice.put(&path, &json!({"name": "New name"})).await.expect(200);
    for i in 0..5 {
        send_text(&alice, &room, &format!("chatter {i}")).await;
    }

    let body = sync(&alice, Some(&token), 0, Some(filter)).await;
    let section = joined(&body, &room);
    assert_eq!(section["timeline"]["limited"], true, "{section}");
    let state = events(&section["state"]);
    let names: Vec<&Value> = state.iter().filter(|e| e["type"] == "m.room.name").collect();
    assert_eq!(names.len(), 1, "the rename happened in the gap: {section}");
    assert_eq!(names[0]["content"]["name"], "New name");
    assert!(state.iter().all(|e| e["type"] != "m.room.create"), "unchanged state is not resent: {section}");
}

/// Clients written against Synapse (matrix-nio checks a schema) expect every section of a
/// joined room, with its `events` list, even when there is nothing in it.
#[tokio::test]
async fn a_joined_room_carries_every_section_even_when_empty() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = alice.create_room(&json!({})).await;
    let sync = alice.get("/_matrix/client/v3/sync").await.expect(200);
    let joined = &sync["rooms"]["join"][&room];
    for section in ["state", "ephemeral", "account_data"] {
        assert!(joined[section]["events"].is_array(), "{section} missing: {joined}");
    }
    assert!(joined["timeline"]["events"].is_array());
    assert_eq!(joined["timeline"]["limited"], false);
    assert!(joined["summary"].is_object(), "{joined}");
    assert!(joined["unread_notifications"].is_object(), "{joined}");
    assert!(sync["next_batch"].is_string());

    // Also on an incremental sync that only carries a new message.
    let next = sync["next_batch"].as_str().unwrap();
    alice.send_text(&room, "hello").await;
    let sync = alice.get(&format!("/_matrix/client/v3/sync?since={}", enc(next))).await.expect(200);
    let joined = &sync["rooms"]["join"][&room];
    assert!(
        joined["ephemeral"]["events"].is_array() && joined["account_data"]["events"].is_array(),
        "{joined}"
    );
    assert!(joined["state"]["events"].is_array(), "{joined}");
}
