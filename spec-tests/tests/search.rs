//! Server-side search (`POST /search`, `room_events`): what it finds (bodies, room names and
//! topics, every term), in which order and pages, with which context and groups; that it
//! never shows what the searcher may not read; that redactions, restarts and
//! `myelin db reindex` keep the index right; and the errors bad requests get.

use spec_tests::{rooms::*, *};

const SEARCH: &str = "/_matrix/client/v3/search";

/// The `room_events` criteria with `search_term` and the given extra fields.
fn criteria(term: &str, extra: Value) -> Value {
    let mut criteria = json!({"search_term": term});
    for (key, value) in extra.as_object().unwrap() {
        criteria[key] = value.clone();
    }
    json!({"search_categories": {"room_events": criteria}})
}

async fn search(client: &Client, term: &str, extra: Value) -> Value {
    let reply = client.post(SEARCH, &criteria(term, extra)).await.expect(200);
    reply["search_categories"]["room_events"].clone()
}

/// The bodies (or names, or topics) of the results, in order.
fn texts(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|r| {
                    let content = &r["result"]["content"];
                    let text = content.get("body").or(content.get("name")).or(content.get("topic"));
                    text.and_then(Value::as_str).unwrap_or("").to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn event_ids(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .map(|all| all.iter().map(|r| r["result"]["event_id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn finds_bodies_names_and_topics_holding_every_term() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room =
        alice.create_room(&json!({"name": "Quarterly Planning", "topic": "Budget review for Ünïcode"})).await;
    for body in ["The red fox jumps", "a red car", "blue fox", "encrypted text nowhere"] {
        alice.send_text(&room, body).await;
    }
    alice
        .send_event(
            &room,
            "m.room.encrypted",
            &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "red fox"}),
        )
        .await
        .expect(200);

    let both = search(&alice, "red FOX", json!({})).await;
    assert_eq!(texts(&both), ["The red fox jumps"], "{both}");
    assert_eq!(both["count"], 1);
    let highlights: Vec<&str> =
        both["highlights"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert!(highlights.contains(&"red") && highlights.contains(&"fox"), "{highlights:?}");
    assert!(both["results"][0]["rank"].is_number());

    let red = search(&alice, "red", json!({"order_by": "recent"})).await;
    assert_eq!(texts(&red), ["a red car", "The red fox jumps"], "the encrypted event has no text to find");

    assert_eq!(texts(&search(&alice, "quarterly", json!({})).await), ["Quarterly Planning"]);
    assert_eq!(texts(&search(&alice, "ünïcode budget", json!({})).await), ["Budget review for Ünïcode"]);
    let bodies_only = search(&alice, "budget", json!({"keys": ["content.body"]})).await;
    assert!(texts(&bodies_only).is_empty(), "{bodies_only}");
    let topics = search(&alice, "budget", json!({"keys": ["content.topic", "content.name"]})).await;
    assert_eq!(texts(&topics).len(), 1);
    let none = search(&alice, "red purple", json!({})).await;
    assert!(texts(&none).is_empty());
    assert_eq!(none["count"], 0);
    // Punctuation only: nothing to search for.
    assert!(texts(&search(&alice, " ?! ", json!({})).await).is_empty());

    // The r0 path is the same endpoint.
    let r0 = alice.post("/_matrix/client/r0/search", &criteria("blue", json!({}))).await.expect(200);
    assert_eq!(texts(&r0["search_categories"]["room_events"]), ["blue fox"]);
}

#[tokio::test]
async fn orders_by_recent_and_rank_and_pages_until_exhausted() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let best = alice.send_text(&room, "needle needle needle").await;
    let mut sent = vec![best.clone()];
    for i in 0..24 {
        sent.push(
            alice.send_text(&room, &format!("a needle in haystack number {i} of many many words")).await,
        );
    }

    let ranked = search(&alice, "needle", json!({"filter": {"limit": 5}})).await;
    assert_eq!(event_ids(&ranked)[0], best, "the densest match ranks first: {ranked}");
    assert_eq!(ranked["count"], 25);
    let ranks: Vec<f64> =
        ranked["results"].as_array().unwrap().iter().map(|r| r["rank"].as_f64().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");

    for order in ["recent", "rank"] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..10 {
            let path = match &next {
                Some(token) => format!("{SEARCH}?next_batch={}", enc(token)),
                None => SEARCH.to_owned(),
            };
            let body = criteria("needle", json!({"order_by": order, "filter": {"limit": 10}}));
            let page = alice.post(&path, &body).await.expect(200)["search_categories"]["room_events"].clone();
            seen.extend(event_ids(&page));
            match page["next_batch"].as_str() {
                Some(token) => next = Some(token.to_owned()),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{order}: no result twice");
        assert_eq!(seen.len(), sent.len(), "{order}: every match, then no next_batch");
        if order == "recent" {
            let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
            assert_eq!(seen, newest_first);
        }
    }
}

#[tokio::test]
async fn filters_by_room_and_sender_and_groups_results() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let first = alice.create_room(&json!({"preset": "public_chat"})).await;
    let second = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&first).await.expect(200);
    bob.join_room(&second).await.expect(200);
    alice.send_text(&first, "shared word one").await;
    bob.send_text(&first, "shared word two").await;
    bob.send_text(&second, "shared word three").await;

    let in_first = search(&alice, "shared", json!({"filter": {"rooms": [first]}})).await;
    assert_eq!(in_first["count"], 2);
    let not_first = search(&alice, "shared", json!({"filter": {"not_rooms": [first]}})).await;
    assert_eq!(texts(&not_first), ["shared word three"]);
    let by_bob =
        search(&alice, "shared", json!({"order_by": "recent", "filter": {"senders": [bob.user_id()]}})).await;
    assert_eq!(texts(&by_bob), ["shared word three", "shared word two"]);
    let not_bob = search(&alice, "shared", json!({"filter": {"not_senders": [bob.user_id()]}})).await;
    assert_eq!(texts(&not_bob), ["shared word one"]);
    let types = search(&alice, "shared", json!({"filter": {"types": ["m.room.topic"]}})).await;
    assert!(texts(&types).is_empty());

    let grouped = search(
        &alice,
        "shared",
        json!({"order_by": "recent", "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}}),
    )
    .await;
    let ids = event_ids(&grouped);
    let rooms = &grouped["groups"]["room_id"];
    assert_eq!(rooms[&first]["results"].as_array().unwrap().len(), 2, "{grouped}");
    assert_eq!(rooms[&second]["results"], json!([ids[0]]));
    let senders = &grouped["groups"]["sender"];
    assert_eq!(senders[bob.user_id()]["results"], json!([ids[0], ids[1]]));
    assert_eq!(senders[alice.user_id()]["results"], json!([ids[2]]));
}

#[tokio::test]
async fn event_context_brings_neighbours_and_profiles() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(bob.user_id()));
    bob.put(&path, &json!({"displayname": "Bobby"})).await.expect(200);
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    alice.send_text(&room, "first").await;
    alice.send_text(&room, "second").await;
    bob.send_text(&room, "the pivot message").await;
    alice.send_text(&room, "third").await;
    alice.send_text(&room, "fourth").await;

    let found = search(
        &alice,
        "pivot",
        json!({"event_context": {"before_limit": 2, "after_limit": 1, "include_profile": true}}),
    )
    .await;
    let context = &found["results"][0]["context"];
    let bodies = |events: &Value| -> Vec<String> {
        events.as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(bodies(&context["events_before"]), ["second", "first"], "{found}");
    assert_eq!(bodies(&context["events_after"]), ["third"]);
    assert!(context["start"].is_string() && context["end"].is_string());
    assert_eq!(context["profile_info"][bob.user_id()]["displayname"], "Bobby", "{context}");
    assert!(context["profile_info"].get(alice.user_id()).is_some());

    let plain = search(&alice, "pivot", json!({})).await;
    assert!(plain["results"][0].get("context").is_none(), "no context unless asked: {plain}");
}

#[tokio::test]
async fn never_finds_what_the_searcher_may_not_read() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let eve = server.client().register("eve", PASSWORD).await;

    let private = eve.create_room(&json!({})).await;
    eve.send_text(&private, "zebra in eve's room").await;
    assert!(texts(&search(&bob, "zebra", json!({})).await).is_empty());

    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    alice
        .put_state(&room, "m.room.history_visibility", "", &json!({"history_visibility": "joined"}))
        .await
        .expect(200);
    alice.send_text(&room, "zebra before bob joined").await;
    bob.join_room(&room).await.expect(200);
    alice.send_text(&room, "zebra while bob is here").await;
    let seen = search(&bob, "zebra", json!({"order_by": "recent"})).await;
    assert_eq!(texts(&seen), ["zebra while bob is here"], "{seen}");
    assert_eq!(seen["count"], 1);

    bob.membership_action(&room, "leave", bob.user_id()).await.expect(200);
    alice.send_text(&room, "zebra after bob left").await;
    for order in ["recent", "rank"] {
        let after_leaving = search(&bob, "zebra", json!({"order_by": order})).await;
        assert_eq!(texts(&after_leaving), ["zebra while bob is here"], "{order}: {after_leaving}");
    }
    // Alice, joined throughout, finds all three (not Eve's).
    assert_eq!(texts(&search(&alice, "zebra", json!({})).await).len(), 3);
}

#[tokio::test]
async fn redacted_events_drop_out() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let doomed = alice.send_text(&room, "regrettable remark").await;
    alice.send_text(&room, "a kept remark").await;
    assert_eq!(search(&alice, "remark", json!({})).await["count"], 2);
    let path = room_path(&room, &format!("redact/{}/{}", enc(&doomed), txn_id()));
    alice.put(&path, &json!({})).await.expect(200);
    let after = search(&alice, "remark", json!({})).await;
    assert_eq!(texts(&after), ["a kept remark"], "{after}");
    assert!(texts(&search(&alice, "regrettable", json!({})).await).is_empty());
}

#[tokio::test]
async fn results_survive_restarts_and_reindexing() {
    let mut server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "Archive"})).await;
    let kept = alice.send_text(&room, "durable thought").await;
    let redacted = alice.send_text(&room, "durable mistake").await;
    let path = room_path(&room, &format!("redact/{}/{}", enc(&redacted), txn_id()));
    alice.put(&path, &json!({})).await.expect(200);
    let expect_found =
        |results: Value| assert_eq!(event_ids(&results), std::slice::from_ref(&kept), "{results}");

    server.kill9();
    server.restart().await;
    expect_found(search(&alice, "durable", json!({})).await);

    // Live: the CLI asks the running server.
    let live = cli_ok(&server.cli(&["db", "reindex"], None));
    assert!(live.contains("search index rebuilt"), "{live}");
    expect_found(search(&alice, "durable", json!({})).await);

    // Offline, on the store, with progress on standard error.
    server.stop().await;
    let output = server.cli(&["db", "reindex"], None);
    let stdout = cli_ok(&output);
    assert!(stdout.contains("search index rebuilt"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("reindexing events for search"));
    let json_output = cli_ok(&server.cli(&["--json", "db", "reindex"], None));
    let reply: Value = serde_json::from_str(json_output.trim()).unwrap();
    assert_eq!(reply["reply"], "reindexed");
    assert!(reply["indexed"].as_u64().unwrap() >= 2, "the name and the message: {reply}");
    server.restart().await;
    expect_found(search(&alice, "durable", json!({})).await);
    assert_eq!(texts(&search(&alice, "archive", json!({})).await), ["Archive"]);
}

#[tokio::test]
async fn bad_requests_get_the_spec_errors() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    alice.request_raw("POST", SEARCH, "{not json").await.expect_error(400, "M_NOT_JSON");
    // A missing required field is M_MISSING_PARAM, as for every endpoint here; a field of
    // the wrong type is M_BAD_JSON.
    alice.post(SEARCH, &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    let no_term = json!({"search_categories": {"room_events": {}}});
    alice.post(SEARCH, &no_term).await.expect_error(400, "M_MISSING_PARAM");
    let numeric_term = json!({"search_categories": {"room_events": {"search_term": 5}}});
    alice.post(SEARCH, &numeric_term).await.expect_error(400, "M_BAD_JSON");
    let body = criteria("x", json!({}));
    alice.post(&format!("{SEARCH}?next_batch=garbage"), &body).await.expect_error(400, "M_INVALID_PARAM");
    let recent = criteria("x", json!({"order_by": "recent"}));
    // A token from a rank search does not fit a recent one.
    alice.post(&format!("{SEARCH}?next_batch=s1.r5.0"), &recent).await.expect_error(400, "M_INVALID_PARAM");
    let sideways = criteria("x", json!({"order_by": "sideways"}));
    alice.post(SEARCH, &sideways).await.expect_error(400, "M_INVALID_PARAM");
    let bad_key = criteria("x", json!({"keys": ["content.nope"]}));
    alice.post(SEARCH, &bad_key).await.expect_error(400, "M_INVALID_PARAM");
    let bad_group = criteria("x", json!({"groupings": {"group_by": [{"key": "colour"}]}}));
    alice.post(SEARCH, &bad_group).await.expect_error(400, "M_INVALID_PARAM");
    server.client().post(SEARCH, &body).await.expect_error(401, "M_MISSING_TOKEN");
    server.client().with_token("nope").post(SEARCH, &body).await.expect_error(401, "M_UNKNOWN_TOKEN");
    // No category this server knows: an empty answer.
    let empty = alice.post(SEARCH, &json!({"search_categories": {}})).await.expect(200);
    assert_eq!(empty["search_categories"], json!({}));
}
