//! Threads and relations as Matrix v1.4–v1.10 define them: `GET /threads`, the bundled
//! aggregations (`m.thread`, `m.replace`, `m.reference`) wherever events are served,
//! `/relations` with `recurse`, the relations a client may not create, `prev_content`, and
//! threaded read receipts with per-thread unread counts in `/sync`.

use spec_tests::{rooms::*, *};

fn v1(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/{rest}", enc(room_id))
}

async fn reply_in_thread(client: &Client, room: &str, root: &str, body: &str) -> String {
    let content = json!({
        "msgtype": "m.text", "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true},
    });
    client.send_event(room, "m.room.message", &content).await.expect(200)["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn edit(client: &Client, room: &str, original: &str, body: &str) -> Resp {
    let content = json!({
        "msgtype": "m.text", "body": format!("* {body}"),
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    });
    client.send_event(room, "m.room.message", &content).await
}

async fn react(client: &Client, room: &str, target: &str, key: &str) -> Resp {
    let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}});
    client.send_event(room, "m.reaction", &content).await
}

async fn event(client: &Client, room: &str, event_id: &str) -> Value {
    client.get(&room_path(room, &format!("event/{}", enc(event_id)))).await.expect(200)
}

fn ids(chunk: &Value) -> Vec<&str> {
    chunk.as_array().expect("chunk").iter().map(|e| e["event_id"].as_str().unwrap()).collect()
}

/// Alice and Bob in a public room; Carol joins too but says nothing.
async fn three_in_a_room(server: &Server) -> (Client, Client, Client, String) {
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);
    (alice, bob, carol, room)
}

#[tokio::test]
async fn a_thread_root_carries_its_thread_summary_wherever_it_is_served() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = three_in_a_room(&server).await;
    let root = alice.send_text(&room, "shall we thread?").await;
    reply_in_thread(&bob, &room, &root, "first").await;
    let latest = reply_in_thread(&bob, &room, &root, "second").await;

    let served = event(&alice, &room, &root).await;
    let thread = &served["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 2, "{served}");
    assert_eq!(thread["latest_event"]["event_id"], latest.as_str());
    assert_eq!(thread["latest_event"]["content"]["body"], "second");
    assert_eq!(thread["current_user_participated"], true, "Alice started the thread");
    let for_bob = event(&bob, &room, &root).await;
    assert_eq!(for_bob["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], true);
    let for_carol = event(&carol, &room, &root).await;
    assert_eq!(for_carol["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);

    // The same bundle in `/messages`, `/context` and `/sync`.
    let messages = alice.messages(&room, "dir=b&limit=10").await.expect(200);
    let in_messages =
        messages["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == root.as_str()).unwrap();
    assert_eq!(in_messages["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    let context = alice.get(&room_path(&room, &format!("context/{}?limit=2", enc(&root)))).await.expect(200);
    assert_eq!(context["event"]["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    let sync = alice.get("/_matrix/client/v3/sync").await.expect(200);
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    let in_sync = timeline.as_array().unwrap().iter().find(|e| e["event_id"] == root.as_str()).unwrap();
    assert_eq!(in_sync["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"], latest.as_str());

    // A plain message has no bundle at all.
    let plain = alice.send_text(&room, "not threaded").await;
    assert!(event(&alice, &room, &plain).await["unsigned"].get("m.relations").is_none());
}

#[tokio::test]
async fn threads_list_most_recently_active_first_filters_participation_and_pages() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = three_in_a_room(&server).await;
    let older = alice.send_text(&room, "thread one").await;
    let newer = bob.send_text(&room, "thread two").await;
    reply_in_thread(&bob, &room, &newer, "in two").await;
    reply_in_thread(&alice, &room, &older, "in one, latest").await;
    alice.send_text(&room, "no thread here").await;

    let all = alice.get(&v1(&room, "threads")).await.expect(200);
    assert_eq!(ids(&all["chunk"]), [older.as_str(), newer.as_str()], "ordered by latest reply: {all}");
    assert!(all.get("next_batch").is_none());
    assert_eq!(all["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"], 1);

    // Paging one at a time gives the same order and then stops.
    let first = alice.get(&v1(&room, "threads?limit=1")).await.expect(200);
    assert_eq!(ids(&first["chunk"]), [older.as_str()]);
    let token = first["next_batch"].as_str().expect("a next page");
    let second = alice.get(&v1(&room, &format!("threads?limit=1&from={}", enc(token)))).await.expect(200);
    assert_eq!(ids(&second["chunk"]), [newer.as_str()]);
    if let Some(token) = second["next_batch"].as_str() {
        let third = alice.get(&v1(&room, &format!("threads?limit=1&from={}", enc(token)))).await.expect(200);
        assert!(ids(&third["chunk"]).is_empty());
    }

    let alices = alice.get(&v1(&room, "threads?include=participated")).await.expect(200);
    assert_eq!(ids(&alices["chunk"]), [older.as_str()], "Alice took part in thread one only");
    let bobs = bob.get(&v1(&room, "threads?include=participated")).await.expect(200);
    assert_eq!(ids(&bobs["chunk"]), [newer.as_str()]);
    let carols = carol.get(&v1(&room, "threads?include=participated")).await.expect(200);
    assert!(ids(&carols["chunk"]).is_empty());

    alice.get(&v1(&room, "threads?from=nonsense")).await.expect_error(400, "M_INVALID_PARAM");
    let private = alice.create_room(&json!({"preset": "private_chat"})).await;
    carol.get(&v1(&private, "threads")).await.expect_error(403, "M_FORBIDDEN");
    server.client().get(&v1(&room, "threads")).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn the_latest_valid_edit_is_bundled_and_a_redaction_takes_it_back() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = three_in_a_room(&server).await;
    let original = alice.send_text(&room, "I like cake").await;
    let first = edit(&alice, &room, &original, "I like chocolate cake").await.expect(200);
    let second = edit(&alice, &room, &original, "I like all cake").await.expect(200);
    // Bob cannot edit Alice's message: his "edit" is stored but never bundled.
    edit(&bob, &room, &original, "Bob was here").await.expect(200);

    let served = event(&bob, &room, &original).await;
    let replace = &served["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], second["event_id"], "{served}");
    assert_eq!(replace["content"]["m.new_content"]["body"], "I like all cake");
    assert_eq!(served["content"]["body"], "I like cake", "the original content stays as it was");

    // Redacting the newest edit brings back the one before it.
    let path =
        room_path(&room, &format!("redact/{}/{}", enc(second["event_id"].as_str().unwrap()), txn_id()));
    alice.put(&path, &json!({})).await.expect(200);
    let served = event(&bob, &room, &original).await;
    assert_eq!(served["unsigned"]["m.relations"]["m.replace"]["event_id"], first["event_id"], "{served}");

    // Once the original is redacted, no edit is bundled.
    let path = room_path(&room, &format!("redact/{}/{}", enc(&original), txn_id()));
    alice.put(&path, &json!({})).await.expect(200);
    let served = event(&bob, &room, &original).await;
    assert!(served["unsigned"].get("m.relations").is_none(), "{served}");
}

#[tokio::test]
async fn references_are_bundled_as_a_chunk_of_event_ids() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = three_in_a_room(&server).await;
    let target = alice.send_text(&room, "a poll, say").await;
    let content = json!({"body": "answer", "m.relates_to": {"rel_type": "m.reference", "event_id": target}});
    let reference = bob.send_event(&room, "m.room.message", &content).await.expect(200);
    let served = event(&alice, &room, &target).await;
    assert_eq!(
        served["unsigned"]["m.relations"]["m.reference"],
        json!({"chunk": [{"event_id": reference["event_id"]}]})
    );
}

#[tokio::test]
async fn relations_recurse_through_indirect_relations_when_asked() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = three_in_a_room(&server).await;
    let root = alice.send_text(&room, "root").await;
    let reply = reply_in_thread(&bob, &room, &root, "reply").await;
    let reaction = react(&alice, &room, &reply, "👍").await.expect(200);
    let reaction = reaction["event_id"].as_str().unwrap();

    let direct = alice.get(&v1(&room, &format!("relations/{}", enc(&root)))).await.expect(200);
    assert_eq!(ids(&direct["chunk"]), [reply.as_str()]);
    assert!(direct.get("recursion_depth").is_none(), "no depth without recurse: {direct}");

    let deep = alice.get(&v1(&room, &format!("relations/{}?recurse=true", enc(&root)))).await.expect(200);
    assert_eq!(ids(&deep["chunk"]), [reaction, reply.as_str()], "newest first: {deep}");
    assert!(deep["recursion_depth"].as_u64().unwrap() >= 3);

    let forwards =
        alice.get(&v1(&room, &format!("relations/{}?recurse=true&dir=f", enc(&root)))).await.expect(200);
    assert_eq!(ids(&forwards["chunk"]), [reply.as_str(), reaction]);
    let reactions_only = format!("relations/{}/m.annotation?recurse=true", enc(&root));
    let reactions_only = alice.get(&v1(&room, &reactions_only)).await.expect(200);
    assert_eq!(ids(&reactions_only["chunk"]), [reaction]);
}

#[tokio::test]
async fn relations_the_spec_refuses_are_refused_with_its_errors() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = three_in_a_room(&server).await;
    let root = alice.send_text(&room, "root").await;
    let reply = reply_in_thread(&bob, &room, &root, "reply").await;

    // A thread cannot start from an event that itself relates to another.
    let content = json!({"msgtype": "m.text", "body": "nested",
        "m.relates_to": {"rel_type": "m.thread", "event_id": reply}});
    alice.send_event(&room, "m.room.message", &content).await.expect_error(400, "M_UNKNOWN");

    // The same reaction twice.
    react(&alice, &room, &root, "🎉").await.expect(200);
    react(&alice, &room, &root, "🎉").await.expect_error(400, "M_DUPLICATE_ANNOTATION");
    react(&bob, &room, &root, "🎉").await.expect(200);
    react(&alice, &room, &root, "🎈").await.expect(200);

    // A parent in another room, or one the server never saw.
    let other = alice.create_room(&json!({})).await;
    let elsewhere = alice.send_text(&other, "elsewhere").await;
    react(&alice, &room, &elsewhere, "x").await.expect_error(400, "M_UNKNOWN");
    react(&alice, &room, "$unknown:example.org", "x").await.expect_error(400, "M_UNKNOWN");
}

#[tokio::test]
async fn a_state_change_carries_the_content_it_replaced() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "First name"})).await;
    let renamed =
        alice.put_state(&room, "m.room.name", "", &json!({"name": "Second name"})).await.expect(200);
    let served = event(&alice, &room, renamed["event_id"].as_str().unwrap()).await;
    assert_eq!(served["unsigned"]["prev_content"], json!({"name": "First name"}), "{served}");
    assert!(served["unsigned"]["replaces_state"].is_string());

    let sync = alice.get("/_matrix/client/v3/sync").await.expect(200);
    let events = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().clone();
    let in_sync = events.iter().find(|e| e["event_id"] == renamed["event_id"]).expect("rename in timeline");
    assert_eq!(in_sync["unsigned"]["prev_content"]["name"], "First name");
    let first_name =
        events.iter().find(|e| e["type"] == "m.room.name" && e["event_id"] != renamed["event_id"]);
    if let Some(first_name) = first_name {
        assert!(first_name["unsigned"].get("prev_content").is_none(), "nothing was replaced: {first_name}");
    }
}

fn thread_filter() -> String {
    let filter = json!({"room": {"timeline": {"unread_thread_notifications": true}}});
    format!("/_matrix/client/v3/sync?filter={}", enc(&filter.to_string()))
}

async fn receipt(client: &Client, room: &str, event_id: &str, body: &Value) -> Resp {
    client.post(&room_path(room, &format!("receipt/m.read/{}", enc(event_id))), body).await
}

#[tokio::test]
async fn threaded_receipts_clear_their_own_thread_and_sync_counts_threads_apart() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = three_in_a_room(&server).await;
    let root = alice.send_text(&room, "root").await;
    receipt(&alice, &room, &root, &json!({})).await.expect(200);
    let main = bob.send_text(&room, "main timeline").await;
    let in_thread = reply_in_thread(&bob, &room, &root, "in the thread").await;

    let counts = |sync: &Value| {
        let joined = &sync["rooms"]["join"][&room];
        (
            joined["unread_notifications"]["notification_count"].as_u64().unwrap(),
            joined["unread_thread_notifications"][&root]["notification_count"].as_u64().unwrap_or(0),
        )
    };
    let sync = alice.get(&thread_filter()).await.expect(200);
    assert_eq!(counts(&sync), (1, 1), "one unread in the main timeline, one in the thread: {sync}");
    let unfiltered = alice.get("/_matrix/client/v3/sync").await.expect(200);
    assert_eq!(unfiltered["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 2);
    assert!(
        unfiltered["rooms"]["join"][&room].get("unread_thread_notifications").is_none_or(|t| t == &json!({}))
    );

    // Reading the thread leaves the main timeline unread, and the other way round.
    receipt(&alice, &room, &in_thread, &json!({"thread_id": root})).await.expect(200);
    assert_eq!(counts(&alice.get(&thread_filter()).await.expect(200)), (1, 0));
    receipt(&alice, &room, &main, &json!({"thread_id": "main"})).await.expect(200);
    assert_eq!(counts(&alice.get(&thread_filter()).await.expect(200)), (0, 0));

    // A new thread reply after an unthreaded receipt on an older event is unread again, and an
    // unthreaded receipt reads every thread.
    let later = reply_in_thread(&bob, &room, &root, "later").await;
    assert_eq!(counts(&alice.get(&thread_filter()).await.expect(200)), (0, 1));
    receipt(&alice, &room, &later, &json!({})).await.expect(200);
    assert_eq!(counts(&alice.get(&thread_filter()).await.expect(200)), (0, 0));

    // Receipts naming the wrong thread, or none that can be.
    receipt(&alice, &room, &main, &json!({"thread_id": root})).await.expect_error(400, "M_INVALID_PARAM");
    receipt(&alice, &room, &in_thread, &json!({"thread_id": "main"}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    receipt(&alice, &room, &in_thread, &json!({"thread_id": ""})).await.expect_error(400, "M_INVALID_PARAM");
    let fully_read = room_path(&room, &format!("receipt/m.fully_read/{}", enc(&main)));
    alice.post(&fully_read, &json!({"thread_id": "main"})).await.expect_error(400, "M_INVALID_PARAM");
    // The root itself may carry its thread's receipt.
    receipt(&alice, &room, &root, &json!({"thread_id": root})).await.expect(200);
}
