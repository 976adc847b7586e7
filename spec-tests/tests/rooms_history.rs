//! Reading history: `/messages` pagination and filters, `/context`, `/relations`,
//! `timestamp_to_event`, and history visibility (`joined`, `shared`, `world_readable`).

use std::collections::HashSet;

use spec_tests::{rooms::*, *};

fn ids(chunk: &Value) -> Vec<String> {
    chunk.as_array().expect("chunk").iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

fn bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Pages through `/messages` in one direction from `from` (or the edge) until the end;
/// returns the event ids in the order served.
async fn page_through(
    client: &Client,
    room: &str,
    dir: &str,
    from: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut from = from.map(str::to_owned);
    for _ in 0..1000 {
        let mut query = format!("dir={dir}&limit={limit}");
        if let Some(from) = &from {
            query.push_str(&format!("&from={}", enc(from)));
        }
        let page = client.messages(room, &query).await.expect(200);
        let chunk = ids(&page["chunk"]);
        assert!(chunk.len() <= limit, "a page holds at most `limit` events");
        all.extend(chunk.iter().cloned());
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return all,
        }
    }
    panic!("pagination did not end");
}

fn filter_query(filter: Value) -> String {
    format!("filter={}", enc(&filter.to_string()))
}

#[tokio::test]
async fn a_thousand_messages_paginate_back_and_forth_without_gaps_or_duplicates() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let mut sent = Vec::new();
    for i in 0..1000 {
        sent.push(alice.send_text(&room, &i.to_string()).await);
    }

    let backwards = page_through(&alice, &room, "b", None, 100).await;
    let forwards = page_through(&alice, &room, "f", None, 100).await;
    let unique: HashSet<&String> = backwards.iter().collect();
    assert_eq!(unique.len(), backwards.len(), "no event is served twice");
    let mut reversed = backwards.clone();
    reversed.reverse();
    assert_eq!(forwards, reversed, "both directions serve the same timeline");
    // The room's initial state events come first, then every message in sending order.
    let messages: Vec<&String> = forwards.iter().filter(|id| sent.contains(id)).collect();
    assert_eq!(messages, sent.iter().collect::<Vec<_>>());
    assert_eq!(&forwards[forwards.len() - 1000..], &sent[..], "nothing else is interleaved");

    // A token from one direction works in the other: back from the end of the third
    // forward page serves the first three pages reversed.
    let mut token: Option<String> = None;
    for _ in 0..3 {
        let mut query = "dir=f&limit=100".to_owned();
        if let Some(from) = &token {
            query.push_str(&format!("&from={}", enc(from)));
        }
        let page = alice.messages(&room, &query).await.expect(200);
        token = Some(page["end"].as_str().expect("more pages").to_owned());
    }
    let back = page_through(&alice, &room, "b", token.as_deref(), 100).await;
    let mut first_three: Vec<String> = forwards[..300].to_vec();
    first_three.reverse();
    assert_eq!(back, first_three);

    // The bodies arrive in order too, not only the ids.
    let last_page = alice.messages(&room, "dir=b&limit=3").await.expect(200);
    assert_eq!(bodies(&last_page["chunk"]), ["999", "998", "997"]);
}

#[tokio::test]
async fn messages_can_be_filtered_by_type_and_sender() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    alice.send_text(&room, "a1").await;
    bob.send_text(&room, "b1").await;
    alice.send_event(&room, "org.example.ping", &json!({"n": 1})).await.expect(200);
    alice.send_text(&room, "a2").await;

    let page = |filter: Value| {
        let alice = alice.clone();
        let room = room.clone();
        async move {
            let query = format!("dir=f&limit=100&{}", filter_query(filter));
            alice.messages(&room, &query).await.expect(200)["chunk"].clone()
        }
    };
    let types = |chunk: &Value| -> Vec<String> {
        chunk.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    };

    let messages = page(json!({"types": ["m.room.message"]})).await;
    assert_eq!(bodies(&messages), ["a1", "b1", "a2"]);
    assert!(types(&messages).iter().all(|t| t == "m.room.message"));

    let not_messages = page(json!({"not_types": ["m.room.message"]})).await;
    assert!(types(&not_messages).iter().all(|t| t != "m.room.message"));
    assert!(types(&not_messages).contains(&"org.example.ping".to_owned()));
    assert!(types(&not_messages).contains(&"m.room.create".to_owned()));

    let wildcard = page(json!({"types": ["org.example.*"]})).await;
    assert_eq!(types(&wildcard), ["org.example.ping"]);

    let from_bob = page(json!({"senders": [bob.user_id()]})).await;
    assert!(from_bob.as_array().unwrap().iter().all(|e| e["sender"] == bob.user_id()), "{from_bob}");
    assert_eq!(types(&from_bob), ["m.room.member", "m.room.message"]);

    let both = page(json!({"senders": [alice.user_id()], "types": ["m.room.message"]})).await;
    assert_eq!(bodies(&both), ["a1", "a2"]);

    // The limit counts events after filtering.
    let query = format!("dir=b&limit=2&{}", filter_query(json!({"types": ["m.room.message"]})));
    assert_eq!(bodies(&alice.messages(&room, &query).await.expect(200)["chunk"]), ["a2", "b1"]);
}

#[tokio::test]
async fn lazy_loading_returns_the_member_events_of_the_senders_on_the_page() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);
    alice.send_text(&room, "from alice").await;
    bob.send_text(&room, "from bob").await;
    carol.send_text(&room, "from carol").await;

    let query = format!("dir=b&limit=2&{}", filter_query(json!({"lazy_load_members": true})));
    let page = alice.messages(&room, &query).await.expect(200);
    assert_eq!(bodies(&page["chunk"]), ["from carol", "from bob"]);
    let state = page["state"].as_array().expect("lazy loading returns state");
    let mut members: Vec<&str> = state
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "m.room.member");
            assert_eq!(e["content"]["membership"], "join");
            e["state_key"].as_str().unwrap()
        })
        .collect();
    members.sort();
    let mut expected = [bob.user_id(), carol.user_id()];
    expected.sort();
    assert_eq!(members, expected);

    let plain = alice.messages(&room, "dir=b&limit=2").await.expect(200);
    assert!(plain.get("state").is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)), "{plain}");
}

#[tokio::test]
async fn context_returns_the_surrounding_events_state_and_tokens_that_continue() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "ctx"})).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(alice.send_text(&room, &format!("m{i}")).await);
    }

    let context =
        alice.get(&room_path(&room, &format!("context/{}?limit=4", enc(&sent[5])))).await.expect(200);
    assert_eq!(context["event"]["event_id"], sent[5]);
    assert_eq!(bodies(&context["events_before"]), ["m4", "m3"], "newest first");
    assert_eq!(bodies(&context["events_after"]), ["m6", "m7"]);
    let state = context["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "ctx"), "{context}");
    assert!(state.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id()));

    let end = context["end"].as_str().expect("end");
    let after = alice.messages(&room, &format!("dir=f&limit=10&from={}", enc(end))).await.expect(200);
    assert_eq!(bodies(&after["chunk"]), ["m8", "m9"]);
    let start = context["start"].as_str().expect("start");
    let before = alice.messages(&room, &format!("dir=b&limit=3&from={}", enc(start))).await.expect(200);
    assert_eq!(bodies(&before["chunk"]), ["m2", "m1", "m0"]);

    let unknown = "$nosucheventnosucheventnosuchevent123456";
    alice.get(&room_path(&room, &format!("context/{}", enc(unknown)))).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn relations_list_reactions_and_edits_by_relation_and_event_type() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    let parent = alice.send_text(&room, "original").await;
    let reaction = bob
        .send_event(
            &room,
            "m.reaction",
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "👍"}}),
        )
        .await
        .expect(200)["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let edit = alice
        .send_event(
            &room,
            "m.room.message",
            &json!({
                "msgtype": "m.text",
                "body": "* edited",
                "m.new_content": {"msgtype": "m.text", "body": "edited"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": parent},
            }),
        )
        .await
        .expect(200)["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.send_text(&room, "unrelated").await;

    let relations = |suffix: String| {
        let alice = alice.clone();
        let path = format!("/_matrix/client/v1/rooms/{}/relations/{}{suffix}", enc(&room), enc(&parent));
        async move { alice.get(&path).await.expect(200) }
    };
    let all = relations(String::new()).await;
    assert_eq!(ids(&all["chunk"]), [edit.as_str(), reaction.as_str()], "newest first");
    let forwards = relations("?dir=f".to_owned()).await;
    assert_eq!(ids(&forwards["chunk"]), [reaction.as_str(), edit.as_str()]);

    assert_eq!(ids(&relations("/m.annotation".to_owned()).await["chunk"]), [reaction.as_str()]);
    assert_eq!(ids(&relations("/m.replace".to_owned()).await["chunk"]), [edit.as_str()]);
    assert_eq!(ids(&relations("/m.replace/m.room.message".to_owned()).await["chunk"]), [edit.as_str()]);
    assert_eq!(ids(&relations("/m.annotation/m.reaction".to_owned()).await["chunk"]), [reaction.as_str()]);
    assert!(ids(&relations("/m.annotation/m.room.message".to_owned()).await["chunk"]).is_empty());

    // Paging one at a time serves each relation once.
    let first = relations("?limit=1".to_owned()).await;
    assert_eq!(ids(&first["chunk"]), [edit.as_str()]);
    let next = first["next_batch"].as_str().expect("next_batch");
    let second = relations(format!("?limit=1&from={}", enc(next))).await;
    assert_eq!(ids(&second["chunk"]), [reaction.as_str()]);
    if let Some(next) = second["next_batch"].as_str() {
        assert!(ids(&relations(format!("?limit=1&from={}", enc(next))).await["chunk"]).is_empty());
    }

    let unknown = "$nosucheventnosucheventnosuchevent123456";
    alice
        .get(&format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(unknown)))
        .await
        .expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_event_in_either_direction() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    // Apart in time from the room's initial events and from each other.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let first = alice.send_text(&room, "first").await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let second = alice.send_text(&room, "second").await;
    let ts_of = |id: &str| {
        let alice = alice.clone();
        let path = room_path(&room, &format!("event/{}", enc(id)));
        async move { alice.get(&path).await.expect(200)["origin_server_ts"].as_u64().unwrap() }
    };
    let (first_ts, second_ts) = (ts_of(&first).await, ts_of(&second).await);
    assert!(second_ts > first_ts + 1);

    let lookup = |ts: u64, dir: &str| {
        let alice = alice.clone();
        let path = format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}", enc(&room));
        async move { alice.get(&path).await }
    };
    let between = first_ts + 1;
    let back = lookup(between, "b").await.expect(200);
    assert_eq!(
        (back["event_id"].as_str(), back["origin_server_ts"].as_u64()),
        (Some(&*first), Some(first_ts))
    );
    let forward = lookup(between, "f").await.expect(200);
    assert_eq!(
        (forward["event_id"].as_str(), forward["origin_server_ts"].as_u64()),
        (Some(&*second), Some(second_ts))
    );
    // Exact timestamps match in both directions.
    assert_eq!(lookup(second_ts, "b").await.expect(200)["event_id"], second);
    assert_eq!(lookup(first_ts, "f").await.expect(200)["event_id"], first);

    lookup(1, "b").await.expect_error(404, "M_NOT_FOUND");
    lookup(second_ts + 60_000, "f").await.expect_error(404, "M_NOT_FOUND");
    let create = alice.get(&room_path(&room, "state/m.room.create/?format=event")).await.expect(200);
    assert_eq!(lookup(1, "f").await.expect(200)["event_id"], create["event_id"]);
}

/// A public room with the given history visibility, a message before and after bob joins.
async fn visibility_scenario(visibility: &str) -> (Server, Client, Client, String, String, String) {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice
        .create_room(&json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}],
        }))
        .await;
    let before = alice.send_text(&room, "before").await;
    bob.join_room(&room).await.expect(200);
    let after = alice.send_text(&room, "after").await;
    (server, alice, bob, room, before, after)
}

#[tokio::test]
async fn joined_history_is_hidden_from_members_who_joined_later() {
    let (_server, alice, bob, room, before, after) = visibility_scenario("joined").await;
    let history = bob.messages(&room, "dir=b&limit=100").await.expect(200);
    assert_eq!(bodies(&history["chunk"]), ["after"]);
    assert!(!ids(&history["chunk"]).contains(&before));
    bob.get(&room_path(&room, &format!("event/{}", enc(&before)))).await.expect_error(404, "M_NOT_FOUND");
    bob.get(&room_path(&room, &format!("context/{}", enc(&before)))).await.expect_error(404, "M_NOT_FOUND");
    bob.get(&room_path(&room, &format!("event/{}", enc(&after)))).await.expect(200);
    let context = bob.get(&room_path(&room, &format!("context/{}", enc(&after)))).await.expect(200);
    assert!(bodies(&context["events_before"]).is_empty(), "{context}");

    // Looking up by time does not reveal the hidden event either.
    let before_ts = alice.get(&room_path(&room, &format!("event/{}", enc(&before)))).await.expect(200)
        ["origin_server_ts"]
        .as_u64()
        .unwrap();
    let found = bob
        .get(&format!("/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={before_ts}&dir=b", enc(&room)))
        .await;
    if found.status == 200 {
        let found_id = found.body["event_id"].as_str().unwrap();
        assert_ne!(found_id, before, "{found:?}");
        bob.get(&room_path(&room, &format!("event/{}", enc(found_id)))).await.expect(200);
    } else {
        found.expect_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_member_who_left_keeps_shared_history_from_before_their_join_but_not_after_leaving() {
    let (_server, alice, bob, room, before, _after) = visibility_scenario("shared").await;
    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    let later = alice.send_text(&room, "after bob left").await;

    let history = bob.messages(&room, "dir=b&limit=100").await.expect(200);
    assert_eq!(bodies(&history["chunk"]), ["after", "before"]);
    let own_leave = history["chunk"].as_array().unwrap().iter().any(|e| {
        e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id()
            && e["content"]["membership"] == "leave"
    });
    assert!(own_leave, "bob sees his own leave: {history}");
    bob.get(&room_path(&room, &format!("event/{}", enc(&before)))).await.expect(200);
    bob.get(&room_path(&room, &format!("event/{}", enc(&later)))).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_member_who_left_a_joined_only_room_sees_their_own_leave_but_nothing_after() {
    let (_server, alice, bob, room, _before, _after) = visibility_scenario("joined").await;
    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    let later = alice.send_text(&room, "after bob left").await;

    let history = bob.messages(&room, "dir=b&limit=100").await.expect(200);
    assert_eq!(bodies(&history["chunk"]), ["after"]);
    let own: Vec<&str> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id())
        .map(|e| e["content"]["membership"].as_str().unwrap())
        .collect();
    assert_eq!(own, ["leave", "join"], "{history}");
    bob.get(&room_path(&room, &format!("event/{}", enc(&later)))).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn shared_history_is_visible_to_members_who_joined_later() {
    let (_server, _alice, bob, room, before, _after) = visibility_scenario("shared").await;
    let history = bob.messages(&room, "dir=b&limit=100").await.expect(200);
    assert_eq!(bodies(&history["chunk"]), ["after", "before"]);
    bob.get(&room_path(&room, &format!("event/{}", enc(&before)))).await.expect(200);
}

#[tokio::test]
async fn world_readable_history_is_readable_by_non_members_who_still_cannot_send() {
    let (server, _alice, _bob, room, before, _after) = visibility_scenario("world_readable").await;
    let eve = server.client().register("eve", PASSWORD).await;
    let history = eve.messages(&room, "dir=b&limit=100").await.expect(200);
    assert_eq!(bodies(&history["chunk"]), ["after", "before"]);
    eve.get(&room_path(&room, &format!("event/{}", enc(&before)))).await.expect(200);
    eve.get(&room_path(&room, "state")).await.expect(200);
    eve.send_event(&room, "m.room.message", &json!({"msgtype": "m.text", "body": "hi"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
}

/// v1.11: each event tells the reader their own membership as the event left it.
#[tokio::test]
async fn events_carry_the_readers_membership_at_the_time() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let before = alice.send_text(&room, "before bob").await;
    bob.join_room(&room).await.expect(200);
    let while_in = alice.send_text(&room, "bob is here").await;
    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    let while_out = alice.send_text(&room, "bob left").await;
    bob.join_room(&room).await.expect(200);
    let back = alice.send_text(&room, "bob is back").await;

    let membership = |event_id: String| {
        let bob = &bob;
        let path = room_path(&room, &format!("event/{}", enc(&event_id)));
        async move { bob.get(&path).await.expect(200)["unsigned"]["membership"].clone() }
    };
    // Bob may read the history from before he joined: the room is shared.
    assert_eq!(membership(before).await, "leave", "before bob ever joined");
    assert_eq!(membership(while_in).await, "join");
    assert_eq!(membership(back).await, "join");
    let messages = bob.messages(&room, "dir=b&limit=50").await.expect(200);
    let out = messages["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == while_out.as_str());
    if let Some(out) = out {
        assert_eq!(out["unsigned"]["membership"], "leave", "{out}");
    }
    let own_joins: Vec<&Value> = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == "m.room.member"
                && e["state_key"] == bob.user_id()
                && e["content"]["membership"] == "join"
        })
        .collect();
    assert_eq!(own_joins.len(), 2, "both of bob's joins");
    for join in own_joins {
        assert_eq!(join["unsigned"]["membership"], "join", "including the event's own change: {join}");
    }
}
