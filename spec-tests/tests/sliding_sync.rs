//! Simplified sliding sync (MSC4186) over raw HTTP: lists, ranges and counts, required
//! state, timelines and gaps, `pos` and connections, invites and leaves, extensions, long
//! polls, and bad input. matrix-sdk-ui's view of the same is in `client_element_x.rs`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spec_tests::{
    Client, Server,
    rooms::{PASSWORD, room_path, txn_id},
};

const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// Element X's room list request (what matrix-sdk-ui 0.16 sends), for ranges `[0, end]`.
fn room_list(end: u64, timeline_limit: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": {"all_rooms": {
            "ranges": [[0, end]],
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""],
                ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
                ["io.element.functional_members", ""], ["m.space.parent", "*"], ["m.space.child", "*"]
            ],
            "timeline_limit": timeline_limit,
            "filters": {}
        }},
        "extensions": {
            "account_data": {"enabled": true},
            "receipts": {"enabled": true, "rooms": ["*"]},
            "typing": {"enabled": true}
        }
    })
}

async fn sliding(client: &Client, pos: Option<&str>, timeout_ms: Option<u64>, body: &Value) -> Value {
    sliding_resp(client, pos, timeout_ms, body).await.expect(200)
}

async fn sliding_resp(
    client: &Client,
    pos: Option<&str>,
    timeout_ms: Option<u64>,
    body: &Value,
) -> spec_tests::Resp {
    let mut query = Vec::new();
    if let Some(pos) = pos {
        query.push(format!("pos={}", spec_tests::enc(pos)));
    }
    if let Some(timeout) = timeout_ms {
        query.push(format!("timeout={timeout}"));
    }
    let path = if query.is_empty() { PATH.to_owned() } else { format!("{PATH}?{}", query.join("&")) };
    client.post(&path, body).await
}

fn pos(response: &Value) -> String {
    response["pos"].as_str().expect("pos").to_owned()
}

fn room<'a>(response: &'a Value, room_id: &str) -> &'a Value {
    &response["rooms"][room_id]
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .map(|events| {
            events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

fn state_keys(room: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = room["required_state"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

#[tokio::test]
async fn versions_advertise_native_sliding_sync() {
    let server = Server::start().await;
    let versions = server.client().get("/_matrix/client/versions").await.expect(200);
    assert_eq!(versions["unstable_features"]["org.matrix.simplified_msc3575"], true, "{versions}");
}

/// The list counts every room, the range picks the newest, and each room comes with the
/// state asked for, its newest event, and what a client needs to name it.
#[tokio::test]
async fn a_list_holds_the_newest_rooms_with_their_state_and_timeline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let mut rooms = Vec::new();
    for n in 0..4 {
        let room_id = alice.create_room(&json!({"name": format!("room {n}")})).await;
        alice.send_text(&room_id, &format!("hello {n}")).await;
        rooms.push(room_id);
    }
    // An unnamed room: clients name it after its heroes.
    let dm = alice.create_room(&json!({"invite": [bob.user_id()]})).await;
    bob.join_room(&dm).await.expect(200);
    alice.send_text(&dm, "newest").await;

    let response = sliding(&alice, None, None, &room_list(2, 1)).await;
    assert_eq!(response["lists"]["all_rooms"]["count"], 5, "{response}");
    let sent: Vec<&String> = response["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(sent.len(), 3, "ranges are inclusive: [0, 2] is three rooms");
    for expected in [&dm, &rooms[3], &rooms[2]] {
        assert!(sent.contains(&expected), "{expected} (one of the newest) missing: {sent:?}");
    }
    let named = room(&response, &rooms[3]);
    assert_eq!(named["name"], "room 3");
    assert_eq!(bodies(named), ["hello 3"]);
    assert_eq!(named["initial"], true);
    assert_eq!(named["limited"], true, "older events exist");
    assert!(named["prev_batch"].is_string());
    assert!(named["bump_stamp"].as_u64().is_some());
    let keys = state_keys(named);
    for wanted in ["m.room.name", "m.room.create", "m.room.power_levels", "m.room.join_rules"] {
        assert!(keys.iter().any(|(kind, _)| kind == wanted), "{wanted} missing from {keys:?}");
    }
    assert!(keys.contains(&("m.room.member".to_owned(), alice.user_id().to_owned())), "$ME: {keys:?}");

    let dm_room = room(&response, &dm);
    assert_eq!(dm_room["joined_count"], 2);
    let heroes = dm_room["heroes"].as_array().expect("heroes for an unnamed room");
    assert_eq!(heroes[0]["user_id"], bob.user_id());
    assert_eq!(heroes[0]["displayname"], "bob");
    // Lazy members: the timeline's sender.
    assert!(state_keys(dm_room).contains(&("m.room.member".to_owned(), alice.user_id().to_owned())));
}

/// A message wakes a long-poll at once, and the response carries exactly the new event.
#[tokio::test]
async fn a_message_wakes_a_long_poll_with_just_the_new_event() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "live"})).await;
    let first = sliding(&alice, None, None, &room_list(19, 1)).await;
    let since = pos(&first);

    // Nothing new: a long-poll waits.
    let started = Instant::now();
    let idle = sliding(&alice, Some(&since), Some(300), &room_list(19, 1)).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "answered at once with nothing new: {idle}");
    assert!(idle["rooms"].as_object().is_none_or(|rooms| rooms.is_empty()), "{idle}");
    assert_eq!(idle["lists"]["all_rooms"]["count"], 1, "every response counts the lists");

    let poll = {
        let alice = alice.clone();
        let since = pos(&idle);
        tokio::spawn(async move { sliding(&alice, Some(&since), Some(20_000), &room_list(19, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    alice.send_text(&room_id, "ping").await;
    let woken = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "not woken by the message");
    let live = room(&woken, &room_id);
    assert_eq!(bodies(live), ["ping"]);
    assert!(live.get("initial").is_none());
    assert_eq!(live["num_live"], 1);
    assert!(live.get("limited").is_none_or(|l| l == false), "nothing left out: {live}");
}

/// A client that comes back after many messages gets the newest ones, `limited`, and a
/// `prev_batch` that `/messages` pages back from to the ones it missed: no gap.
#[tokio::test]
async fn a_client_that_slept_fills_the_gap_through_prev_batch() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "busy"})).await;
    let first = sliding(&alice, None, None, &room_list(19, 5)).await;
    for n in 0..30 {
        alice.send_text(&room_id, &format!("m{n}")).await;
    }
    let back = sliding(&alice, Some(&pos(&first)), Some(0), &room_list(19, 5)).await;
    let busy = room(&back, &room_id);
    assert_eq!(bodies(busy), ["m25", "m26", "m27", "m28", "m29"]);
    assert_eq!(busy["limited"], true);
    let mut from = busy["prev_batch"].as_str().expect("prev_batch").to_owned();
    let mut missed = Vec::new();
    while missed.len() < 25 {
        let page = alice
            .get(&format!("{}?dir=b&limit=10&from={from}", room_path(&room_id, "messages")))
            .await
            .expect(200);
        for event in page["chunk"].as_array().unwrap() {
            if let Some(body) = event["content"]["body"].as_str() {
                missed.push(body.to_owned());
            }
        }
        from = page["end"].as_str().expect("more pages").to_owned();
    }
    missed.truncate(25);
    missed.reverse();
    assert_eq!(missed, (0..25).map(|n| format!("m{n}")).collect::<Vec<_>>());
}

/// A state change reaches a connection as state: `required_state` (which matrix-sdk reads
/// room state from) and the room's `name`, while a message alone sends no state.
#[tokio::test]
async fn a_state_change_arrives_in_required_state() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "before"})).await;
    let first = sliding(&alice, None, None, &room_list(19, 1)).await;
    alice.send_text(&room_id, "just words").await;
    let words = sliding(&alice, Some(&pos(&first)), Some(0), &room_list(19, 1)).await;
    let keys = state_keys(room(&words, &room_id));
    assert!(!keys.iter().any(|(kind, _)| kind == "m.room.name"), "{keys:?}");
    assert!(room(&words, &room_id).get("name").is_none());
    alice.put_state(&room_id, "m.room.name", "", &json!({"name": "after"})).await.expect(200);
    let renamed = sliding(&alice, Some(&pos(&words)), Some(0), &room_list(19, 1)).await;
    let renamed_room = room(&renamed, &room_id);
    assert_eq!(renamed_room["name"], "after");
    let name = renamed_room["required_state"].as_array().unwrap().iter().find(|e| e["type"] == "m.room.name");
    assert_eq!(name.expect("m.room.name in required_state")["content"]["name"], "after");
}

/// A request sent again from the same `pos` (matrix-sdk cancels and re-sends) gets the
/// same rooms again: a response the client never saw does not count as sent.
#[tokio::test]
async fn the_same_pos_twice_gets_the_same_rooms() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "again"})).await;
    let first = sliding(&alice, None, None, &room_list(19, 1)).await;
    alice.send_text(&room_id, "one").await;
    let lost = sliding(&alice, Some(&pos(&first)), Some(0), &room_list(19, 1)).await;
    let retried = sliding(&alice, Some(&pos(&first)), Some(0), &room_list(19, 1)).await;
    assert_eq!(bodies(room(&lost, &room_id)), ["one"]);
    assert_eq!(bodies(room(&retried, &room_id)), ["one"]);
    // The lost response's pos is gone now; the retried one's works.
    sliding_resp(&alice, Some(&pos(&lost)), Some(0), &room_list(19, 1))
        .await
        .expect_error(400, "M_UNKNOWN_POS");
    let after = sliding(&alice, Some(&pos(&retried)), Some(0), &room_list(19, 1)).await;
    assert!(after["rooms"].as_object().is_none_or(|rooms| rooms.is_empty()), "{after}");
}

#[tokio::test]
async fn an_unknown_or_malformed_pos_is_m_unknown_pos() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for bad in ["12-7", "junk", "1-2-3"] {
        sliding_resp(&alice, Some(bad), None, &room_list(19, 1)).await.expect_error(400, "M_UNKNOWN_POS");
    }
    // Another device's pos is not this device's.
    alice.create_room(&json!({})).await;
    let first = sliding(&alice, None, None, &room_list(19, 1)).await;
    let other_device = server.client().login("alice", PASSWORD).await;
    sliding_resp(&other_device, Some(&pos(&first)), None, &room_list(19, 1))
        .await
        .expect_error(400, "M_UNKNOWN_POS");
}

/// Past `max_connections`, the least recently used connection is forgotten; its client gets
/// `M_UNKNOWN_POS` and starts again, with nothing lost.
#[tokio::test]
async fn an_evicted_connection_starts_again_without_losing_messages() {
    let server = Server::start_with_config(&format!(
        "{}\n[sliding_sync]\nmax_connections = 2\n",
        spec_tests::TEST_CONFIG
    ))
    .await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "kept"})).await;
    let mut body = room_list(19, 10);
    let first = sliding(&alice, None, None, &body).await;
    alice.send_text(&room_id, "while away").await;
    for conn in ["other-1", "other-2"] {
        body["conn_id"] = json!(conn);
        sliding(&alice, None, None, &body).await;
    }
    body["conn_id"] = json!("room-list");
    sliding_resp(&alice, Some(&pos(&first)), None, &body).await.expect_error(400, "M_UNKNOWN_POS");
    let restarted = sliding(&alice, None, None, &body).await;
    assert!(bodies(room(&restarted, &room_id)).contains(&"while away".to_owned()), "{restarted}");
}

/// `*` state keys, whole-state requests, and lists filtered to invites.
#[tokio::test]
async fn wildcards_and_filters() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let space = alice.create_room(&json!({"name": "space", "creation_content": {"type": "m.space"}})).await;
    for child in ["!a:example.org", "!b:example.org"] {
        alice.put_state(&space, "m.space.child", child, &json!({"via": ["example.org"]})).await.expect(200);
    }
    let invite_room = bob.create_room(&json!({"name": "for alice", "invite": [alice.user_id()]})).await;
    let body = json!({
        "lists": {
            "spaces": {"ranges": [[0, 9]], "required_state": [["m.space.child", "*"]], "timeline_limit": 0,
                       "filters": {"room_types": ["m.space"]}},
            "invites": {"ranges": [[0, 9]], "required_state": [], "timeline_limit": 0,
                        "filters": {"is_invite": true}},
            "everything": {"ranges": [[0, 0]], "required_state": [["*", "*"]], "timeline_limit": 0,
                           "filters": {"not_room_types": ["m.space"], "is_invite": false}}
        }
    });
    let response = sliding(&alice, None, None, &body).await;
    assert_eq!(response["lists"]["spaces"]["count"], 1);
    assert_eq!(response["lists"]["invites"]["count"], 1);
    assert_eq!(response["lists"]["everything"]["count"], 0, "alice's only other room is an invite");
    let children: Vec<String> = state_keys(room(&response, &space))
        .into_iter()
        .filter(|(k, _)| k == "m.space.child")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(children, ["!a:example.org", "!b:example.org"]);
    assert!(room(&response, &space).get("timeline").is_none(), "timeline_limit 0");
    let invite = room(&response, &invite_room);
    let stripped = invite["invite_state"].as_array().expect("invite_state");
    assert!(stripped.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "for alice"));
    assert!(
        stripped.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id()
            && e["content"]["membership"] == "invite"
            && e["sender"] == bob.user_id()),
        "{stripped:?}"
    );
}

/// Accepting an invite sends the room again in full; leaving sends it once more with the
/// leave, and then it is gone from the list.
#[tokio::test]
async fn an_invite_becomes_a_room_and_a_left_room_goes() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = bob.create_room(&json!({"name": "party", "invite": [alice.user_id()]})).await;
    bob.send_text(&room_id, "welcome").await;
    let invited = sliding(&alice, None, None, &room_list(19, 5)).await;
    assert!(room(&invited, &room_id)["invite_state"].is_array());
    assert!(room(&invited, &room_id).get("timeline").is_none(), "no history before joining");

    alice.join_room(&room_id).await.expect(200);
    let joined = sliding(&alice, Some(&pos(&invited)), Some(0), &room_list(19, 5)).await;
    let party = room(&joined, &room_id);
    assert_eq!(party["initial"], true);
    assert!(party.get("invite_state").is_none());
    assert!(bodies(party).contains(&"welcome".to_owned()));
    let own = party["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == alice.user_id())
        .cloned();
    assert_eq!(own.expect("own membership")["content"]["membership"], "join");

    alice.post(&room_path(&room_id, "leave"), &json!({})).await.expect(200);
    let left = sliding(&alice, Some(&pos(&joined)), Some(0), &room_list(19, 5)).await;
    let own = room(&left, &room_id)["required_state"]
        .as_array()
        .expect("the leave goes in required_state")
        .iter()
        .find(|e| e["state_key"] == alice.user_id())
        .cloned()
        .expect("own member event");
    assert_eq!(own["content"]["membership"], "leave");
    assert_eq!(
        state_keys(room(&left, &room_id)),
        [("m.room.member".to_owned(), alice.user_id().to_owned())],
        "a room the user left shows them their own leave only"
    );
    assert_eq!(left["lists"]["all_rooms"]["count"], 1, "sent once more");
    let after = sliding(&alice, Some(&pos(&left)), Some(0), &room_list(19, 5)).await;
    assert_eq!(after["lists"]["all_rooms"]["count"], 0, "{after}");
}

/// A room subscription asking for more history and state than the list sends the room
/// again at once with it.
#[tokio::test]
async fn a_room_subscription_expands_what_a_room_sends() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "open me", "topic": "t"})).await;
    for n in 0..5 {
        alice.send_text(&room_id, &format!("m{n}")).await;
    }
    let mut body = room_list(19, 1);
    let first = sliding(&alice, None, None, &body).await;
    assert_eq!(bodies(room(&first, &room_id)), ["m4"]);
    body["room_subscriptions"] = json!({&room_id: {"timeline_limit": 20, "required_state": [["m.room.topic", ""], ["m.room.pinned_events", ""]]}});
    let opened = sliding(&alice, Some(&pos(&first)), Some(10_000), &body).await;
    let open = room(&opened, &room_id);
    assert_eq!(bodies(open), ["m0", "m1", "m2", "m3", "m4"], "{open}");
    assert!(state_keys(open).contains(&("m.room.topic".to_owned(), String::new())));
}

/// The to-device extension keeps its own token: messages come until a later `since`
/// acknowledges them, whatever `pos` says.
#[tokio::test]
async fn to_device_messages_come_until_the_extension_token_acknowledges_them() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let device = bob.device_id.clone().unwrap();
    let encryption = |since: Option<&str>| {
        let mut to_device = json!({"enabled": true});
        if let Some(since) = since {
            to_device["since"] = json!(since);
        }
        json!({"conn_id": "encryption", "extensions": {"to_device": to_device, "e2ee": {"enabled": true}}})
    };
    let first = sliding(&bob, None, None, &encryption(None)).await;
    let token = first["extensions"]["to_device"]["next_batch"].as_str().expect("next_batch").to_owned();
    assert_eq!(first["extensions"]["e2ee"]["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert!(first["extensions"]["e2ee"]["device_unused_fallback_key_types"].is_array());

    let poll = {
        let (bob, body, since) = (bob.clone(), encryption(Some(&token)), pos(&first));
        tokio::spawn(async move { sliding(&bob, Some(&since), Some(20_000), &body).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = format!("/_matrix/client/v3/sendToDevice/m.test/{}", txn_id());
    alice.put(&path, &json!({"messages": {bob.user_id(): {&device: {"n": 1}}}})).await.expect(200);
    let woken = poll.await.unwrap();
    let events = woken["extensions"]["to_device"]["events"].as_array().expect("woken by the message");
    assert_eq!(events[0]["content"]["n"], 1);
    let next = woken["extensions"]["to_device"]["next_batch"].as_str().unwrap().to_owned();

    // The old token again: not acknowledged yet, so it comes again.
    let again = sliding(&bob, Some(&pos(&woken)), Some(0), &encryption(Some(&token))).await;
    assert_eq!(again["extensions"]["to_device"]["events"][0]["content"]["n"], 1);
    // The new one acknowledges it: gone, even on a new connection.
    let done = sliding(&bob, None, None, &encryption(Some(&next))).await;
    assert!(done["extensions"]["to_device"].get("events").is_none(), "{done}");
}

/// Account data (with the default push rules) and the user's own receipts go to a new
/// connection; typing and new receipts to the rooms they happen in.
#[tokio::test]
async fn account_data_receipts_and_typing() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "ephemeral"})).await;
    let event_id = alice.send_text(&room_id, "read me").await;
    alice
        .post(&room_path(&room_id, &format!("receipt/m.read/{}", spec_tests::enc(&event_id))), &json!({}))
        .await
        .expect(200);
    alice
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.direct", spec_tests::enc(alice.user_id())),
            &json!({}),
        )
        .await
        .expect(200);
    let first = sliding(&alice, None, None, &room_list(0, 1)).await;
    let global: Vec<&str> = first["extensions"]["account_data"]["global"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(global.contains(&"m.push_rules") && global.contains(&"m.direct"), "{global:?}");
    let receipts = &first["extensions"]["receipts"]["rooms"][&room_id]["content"];
    assert!(receipts[&event_id]["m.read"][alice.user_id()].is_object(), "own receipt: {first}");

    alice
        .put(
            &room_path(&room_id, &format!("typing/{}", spec_tests::enc(alice.user_id()))),
            &json!({"typing": true, "timeout": 10000}),
        )
        .await
        .expect(200);
    let typing = sliding(&alice, Some(&pos(&first)), Some(10_000), &room_list(0, 1)).await;
    assert_eq!(
        typing["extensions"]["typing"]["rooms"][&room_id]["content"]["user_ids"],
        json!([alice.user_id()]),
        "{typing}"
    );
}

/// Bad requests get the spec's errors, never a 500.
#[tokio::test]
async fn bad_requests_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let backwards = json!({"lists": {"a": {"ranges": [[5, 2]], "timeline_limit": 1}}});
    sliding_resp(&alice, None, None, &backwards).await.expect_error(400, "M_INVALID_PARAM");
    let no_ranges = json!({"lists": {"a": {"timeline_limit": 1}}});
    assert_eq!(sliding_resp(&alice, None, None, &no_ranges).await.status, 400);
    let bad_state = json!({"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": [["m.room.name"]]}}});
    assert_eq!(sliding_resp(&alice, None, None, &bad_state).await.status, 400);
    let lists: serde_json::Map<String, Value> =
        (0..101).map(|n| (format!("l{n}"), json!({"ranges": [[0, 1]], "timeline_limit": 1}))).collect();
    sliding_resp(&alice, None, None, &json!({"lists": lists})).await.expect_error(400, "M_INVALID_PARAM");
    let long_conn = json!({"conn_id": "x".repeat(65)});
    sliding_resp(&alice, None, None, &long_conn).await.expect_error(400, "M_INVALID_PARAM");
    let bad_since = json!({"extensions": {"to_device": {"enabled": true, "since": "yesterday"}}});
    sliding_resp(&alice, None, None, &bad_since).await.expect_error(400, "M_INVALID_PARAM");
    // A huge range is fine: it holds the rooms there are.
    let huge = json!({"lists": {"a": {"ranges": [[0, 9007199254740991u64]], "timeline_limit": 1}}});
    assert_eq!(sliding(&alice, None, None, &huge).await["lists"]["a"]["count"], 0);
    let unauthenticated = server.client().post(PATH, &json!({})).await;
    unauthenticated.expect_error(401, "M_MISSING_TOKEN");
    let not_json = alice.request_raw("POST", PATH, "{not json").await;
    assert_eq!(not_json.errcode(), "M_NOT_JSON");
}
