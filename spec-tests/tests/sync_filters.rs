//! Filters: storing and reading them, using them by id or inline in `/sync`, and what each
//! field restricts (timeline limit, types, senders, rooms, left rooms, lazy-loaded members).

mod sync_support;

use spec_tests::*;
use sync_support::*;

fn filter_path(user: &str) -> String {
    format!("/_matrix/client/v3/user/{}/filter", enc(user))
}

async fn upload_filter(client: &Client, filter: Value) -> String {
    let reply = client.post(&filter_path(client.user_id()), &filter).await.expect(200);
    reply["filter_id"].as_str().expect("filter_id is a string").to_owned()
}

#[tokio::test]
async fn a_filter_can_be_uploaded_and_read_back_by_its_owner() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let filter = json!({
        "event_fields": ["type", "content.body"],
        "room": {"timeline": {"limit": 7, "types": ["m.room.message"]}, "state": {"lazy_load_members": true}}
    });
    let id = upload_filter(&alice, filter).await;
    let stored = alice.get(&format!("{}/{id}", filter_path(alice.user_id()))).await.expect(200);
    assert_eq!(stored["room"]["timeline"]["limit"], 7, "{stored}");
    assert_eq!(stored["room"]["timeline"]["types"], json!(["m.room.message"]), "{stored}");
    assert_eq!(stored["room"]["state"]["lazy_load_members"], true, "{stored}");
    assert_eq!(stored["event_fields"], json!(["type", "content.body"]), "{stored}");
}

#[tokio::test]
async fn an_unknown_filter_id_is_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    alice.get(&format!("{}/12345", filter_path(alice.user_id()))).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn another_users_filters_are_forbidden() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let id = upload_filter(&alice, json!({"room": {"timeline": {"limit": 1}}})).await;
    bob.get(&format!("{}/{id}", filter_path(alice.user_id()))).await.expect_error(403, "M_FORBIDDEN");
    bob.post(&filter_path(alice.user_id()), &json!({})).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn sync_applies_a_filter_given_by_id_or_inline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    send_text(&alice, &room, "one").await;
    let last = send_text(&alice, &room, "two").await;
    let id = upload_filter(&alice, json!({"room": {"timeline": {"limit": 1}}})).await;

    for filter in [id.as_str(), r#"{"room":{"timeline":{"limit":1}}}"#] {
        let body = sync(&alice, None, 0, Some(filter)).await;
        let section = joined(&body, &room);
        assert_eq!(timeline_ids(section), vec![last.clone()], "filter {filter}: {section}");
        assert_eq!(section["timeline"]["limited"], true, "filter {filter}: {section}");
    }
}

#[tokio::test]
async fn timeline_types_and_senders_restrict_the_timeline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);
    let from_alice = send_text(&alice, &room, "from alice").await;
    let from_bob = send_text(&bob, &room, "from bob").await;
    let custom = send_event(&alice, &room, "org.example.ping", json!({})).await;

    let timeline = |filter: Value| {
        let alice = alice.clone();
        let (token, room) = (token.clone(), room.clone());
        async move {
            let filter = json!({"room": {"timeline": filter}}).to_string();
            timeline_ids(joined(&sync(&alice, Some(&token), 0, Some(&filter)).await, &room))
        }
    };
    assert_eq!(
        timeline(json!({"types": ["m.room.message"]})).await,
        vec![from_alice.clone(), from_bob.clone()]
    );
    assert_eq!(timeline(json!({"types": ["org.example.*"]})).await, vec![custom.clone()]);
    assert_eq!(timeline(json!({"not_types": ["m.room.message"]})).await, vec![custom.clone()]);
    assert_eq!(timeline(json!({"senders": [bob.user_id()]})).await, vec![from_bob.clone()]);
    assert_eq!(
        timeline(json!({"not_senders": [bob.user_id()]})).await,
        vec![from_alice.clone(), custom.clone()]
    );
    assert_eq!(timeline(json!({"limit": 2})).await, vec![from_bob.clone(), custom.clone()]);
    // not_types wins over types.
    assert_eq!(
        timeline(json!({"types": ["m.room.message"], "not_types": ["m.room.message"]})).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn rooms_and_not_rooms_restrict_which_rooms_sync_returns() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let first = public_room(&alice).await;
    let second = public_room(&alice).await;

    let only_first = json!({"room": {"rooms": [first]}}).to_string();
    let body = sync(&alice, None, 0, Some(&only_first)).await;
    assert!(joined(&body, &first).is_object(), "{body}");
    assert!(joined(&body, &second).is_null(), "{body}");

    let not_first = json!({"room": {"not_rooms": [first]}}).to_string();
    let body = sync(&alice, None, 0, Some(&not_first)).await;
    assert!(joined(&body, &first).is_null(), "{body}");
    assert!(joined(&body, &second).is_object(), "{body}");

    // An incremental sync honours it too.
    let token = next_batch(&body);
    send_text(&alice, &first, "filtered out").await;
    let body = sync(&alice, Some(&token), 0, Some(&not_first)).await;
    assert!(joined(&body, &first).is_null(), "{body}");
}

#[tokio::test]
async fn include_leave_brings_left_rooms_into_an_initial_sync() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    leave(&bob, &room).await;

    let without = sync(&bob, None, 0, None).await;
    assert!(without["rooms"]["leave"][&room].is_null(), "{without}");
    let with = sync(&bob, None, 0, Some(r#"{"room":{"include_leave":true}}"#)).await;
    let left = &with["rooms"]["leave"][&room];
    let last = events(&left["timeline"]).last().cloned().unwrap_or_else(|| panic!("{with}"));
    assert_eq!(last["content"]["membership"], "leave", "{left}");
}

const LAZY: &str = r#"{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}"#;

/// Member events in a room section's state and timeline, by state key.
fn member_keys(section: &Value) -> Vec<String> {
    let mut keys: Vec<String> = of_type(&section["state"], "m.room.member")
        .into_iter()
        .chain(of_type(&section["timeline"], "m.room.member"))
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[tokio::test]
async fn lazy_loaded_members_include_every_timeline_senders_member_event() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let carol = server.client().register("carol", "password-c").await;
    let dave = server.client().register("dave", "password-d").await;
    // Named, so no heroes (whose member events would have to be sent) are needed.
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Lazy"})).await;
    for member in [&bob, &carol, &dave] {
        join(member, &room).await;
    }
    send_text(&bob, &room, "bob speaks").await;
    send_text(&carol, &room, "carol speaks").await;

    let body = sync(&alice, None, 0, Some(LAZY)).await;
    let section = joined(&body, &room);
    let mut expected = vec![alice.user_id().to_owned(), bob.user_id().to_owned(), carol.user_id().to_owned()];
    expected.sort();
    assert_eq!(member_keys(section), expected, "only the senders (and the syncing user): {section}");

    // Dave joined long ago; when he speaks, an incremental sync must say who he is.
    let token = next_batch(&body);
    send_text(&dave, &room, "dave speaks").await;
    let body = sync(&alice, Some(&token), 0, Some(LAZY)).await;
    let section = joined(&body, &room);
    assert!(member_keys(section).contains(&dave.user_id().to_owned()), "{section}");

    // After a gap too, every sender of the timeline is there.
    let token = next_batch(&body);
    for speaker in [&bob, &dave, &carol, &bob] {
        send_text(speaker, &room, "chatter").await;
    }
    let body = sync(&alice, Some(&token), 0, Some(LAZY)).await;
    let section = joined(&body, &room);
    assert_eq!(section["timeline"]["limited"], true, "{section}");
    let keys = member_keys(section);
    for sender in events(&section["timeline"]).iter().map(|e| e["sender"].as_str().unwrap()) {
        assert!(keys.iter().any(|k| k == sender), "{sender} missing: {section}");
    }
}

#[tokio::test]
async fn lazy_loaded_members_include_the_heroes_of_a_room_without_a_name() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    for _ in 0..3 {
        send_text(&alice, &room, "bob listens").await;
    }

    // Bob is a hero (the room has no name) but sent nothing in the timeline: the spec says
    // his member event MUST be in `state` all the same, or the client cannot name the room.
    let body = sync(&alice, None, 0, Some(LAZY)).await;
    let section = joined(&body, &room);
    assert_eq!(section["summary"]["m.heroes"], json!([bob.user_id()]), "{section}");
    assert!(member_keys(section).contains(&bob.user_id().to_owned()), "{section}");

    // With a name the heroes are not needed, and neither is Bob's member event.
    let name = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room));
    alice.put(&name, &json!({"name": "Named"})).await.expect(200);
    for _ in 0..3 {
        send_text(&alice, &room, "still listening").await;
    }
    let body = sync(&alice, None, 0, Some(LAZY)).await;
    let section = joined(&body, &room);
    assert!(section["summary"]["m.heroes"].as_array().is_none_or(Vec::is_empty), "{section}");
    assert!(!member_keys(section).contains(&bob.user_id().to_owned()), "{section}");
}

#[tokio::test]
async fn state_ephemeral_and_account_data_filters_restrict_their_sections() {
    let server = Server::start().await;
    let (alice, bob) = (
        server.client().register("alice", "password-a").await,
        server.client().register("bob", "password-b").await,
    );
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Filtered"})).await;
    join(&bob, &room).await;
    let message = send_text(&bob, &room, "hi").await;
    let receipt = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&message));
    bob.post(&receipt, &json!({})).await.expect(200);
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(bob.user_id()));
    bob.put(&typing, &json!({"typing": true, "timeout": 30_000})).await.expect(200);
    let me = enc(alice.user_id());
    for kind in ["org.example.keep", "org.example.drop"] {
        alice
            .put(&format!("/_matrix/client/v3/user/{me}/account_data/{kind}"), &json!({"k": 1}))
            .await
            .expect(200);
        let path = format!("/_matrix/client/v3/user/{me}/rooms/{}/account_data/{kind}", enc(&room));
        alice.put(&path, &json!({"k": 2})).await.expect(200);
    }

    let filter = json!({
        "account_data": {"not_types": ["org.example.drop"]},
        "room": {
            "timeline": {"limit": 1},
            "state": {"types": ["m.room.name", "m.room.create"]},
            "ephemeral": {"not_types": ["m.typing"]},
            "account_data": {"types": ["org.example.keep"]},
        },
    })
    .to_string();
    let body = sync(&alice, None, 0, Some(&filter)).await;
    let section = joined(&body, &room);
    let mut state_kinds: Vec<&str> =
        section["state"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    state_kinds.sort();
    assert_eq!(state_kinds, vec!["m.room.create", "m.room.name"], "{section}");
    assert!(of_type(&section["ephemeral"], "m.typing").is_empty(), "{section}");
    assert_eq!(of_type(&section["ephemeral"], "m.receipt").len(), 1, "{section}");
    assert_eq!(of_type(&section["account_data"], "org.example.keep").len(), 1, "{section}");
    assert!(of_type(&section["account_data"], "org.example.drop").is_empty(), "{section}");
    assert_eq!(of_type(&body["account_data"], "org.example.keep").len(), 1, "{body}");
    assert!(of_type(&body["account_data"], "org.example.drop").is_empty(), "{body}");

    // Without the filter, everything is there: the filter made the difference.
    let body = sync(&alice, None, 0, Some(r#"{"room":{"timeline":{"limit":1}}}"#)).await;
    let section = joined(&body, &room);
    assert_eq!(of_type(&section["ephemeral"], "m.typing").len(), 1, "{section}");
    assert!(of_type(&section["state"], "m.room.member").len() >= 2, "{section}");
    assert_eq!(of_type(&body["account_data"], "org.example.drop").len(), 1, "{body}");
}

#[tokio::test]
async fn a_timeline_not_rooms_filter_empties_that_rooms_timeline_only() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let quiet = public_room(&alice).await;
    let loud = public_room(&alice).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);
    send_text(&alice, &quiet, "hidden").await;
    let shown = send_text(&alice, &loud, "shown").await;

    let filter = json!({"room": {"timeline": {"not_rooms": [quiet]}}}).to_string();
    let body = sync(&alice, Some(&token), 0, Some(&filter)).await;
    assert!(timeline_ids(joined(&body, &quiet)).is_empty(), "{body}");
    assert_eq!(timeline_ids(joined(&body, &loud)), vec![shown], "{body}");
}

#[tokio::test]
async fn event_fields_keep_only_the_named_fields_of_each_event() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let sent =
        send_event(&alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "hi", "extra": 1}))
            .await;
    let filter = json!({"event_fields": ["type", "content.body", "event_id"]}).to_string();
    let body = sync(&alice, None, 0, Some(&filter)).await;
    let timeline = events(&joined(&body, &room)["timeline"]);
    let message =
        timeline.iter().find(|e| e["event_id"] == sent.as_str()).expect("the message is in the timeline");
    assert_eq!(message, &json!({"type": "m.room.message", "content": {"body": "hi"}, "event_id": sent}));
    for event in &timeline {
        assert!(event.get("sender").is_none() && event.get("origin_server_ts").is_none(), "{event}");
    }
}

#[tokio::test]
async fn event_format_federation_returns_the_signed_pdus() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    send_text(&alice, &room, "hi").await;
    let filter = json!({"event_format": "federation"}).to_string();
    let body = sync(&alice, None, 0, Some(&filter)).await;
    let timeline = events(&joined(&body, &room)["timeline"]);
    assert!(!timeline.is_empty());
    for pdu in &timeline {
        assert!(pdu["signatures"].is_object() && pdu["hashes"]["sha256"].is_string(), "not a PDU: {pdu}");
        assert!(pdu["auth_events"].is_array() && pdu["depth"].is_u64(), "not a PDU: {pdu}");
    }
}
