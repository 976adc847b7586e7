//! Federation between two Myelins on loopback, each with a TLS federation listener and the
//! server name `127.0.0.1:PORT` (see `spec_tests::federation`): the version and key
//! endpoints, request authentication, invites and joins across servers, messages in order,
//! remote aliases and profiles, typing and receipts, the outbound queue surviving a
//! restart of the receiver and a SIGKILL of the sender, `.well-known` delegation and a
//! deny list.
//!
//! Users act only through their own server's client API; every cross-server effect has to
//! travel over federation. On a failure both servers' logs are printed (the harness does
//! it when a `Server` is dropped during a panic).

mod federation_support;
mod sync_support;

use std::time::{Duration, Instant};

use federation_support::{
    CROSSING, Feed, RETRY, shared_room,
    signing::{signing_key_of, x_matrix},
    two_servers,
};
use ruma::{
    CanonicalJsonObject,
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap, hash_and_sign_event, reference_hash, verify_json},
};
use spec_tests::{rooms::*, *};
use sync_support::{joined, of_type, sync};

/// `(user, membership)` of every member event `/members` returns, sorted.
async fn members(client: &Client, room: &str) -> Vec<(String, String)> {
    let reply = client.get(&room_path(room, "members")).await;
    assert_eq!(reply.status, 200, "GET /rooms/{room}/members as {}: {}", client.user_id(), reply.body);
    let mut members: Vec<(String, String)> = reply.body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|e| {
            let user = e["state_key"].as_str().unwrap().to_owned();
            (user, e["content"]["membership"].as_str().unwrap().to_owned())
        })
        .collect();
    members.sort();
    members
}

/// A server's published keys, after checking the response is signed by one of them.
async fn verified_server_keys(server: &Server) -> (Value, PublicKeyMap) {
    let reply = server.federation_client().get("/_matrix/key/v2/server").await;
    assert_eq!(reply.status, 200, "GET {}/_matrix/key/v2/server: {}", server.federation_url(), reply.body);
    let keys = reply.body;
    assert_eq!(keys["server_name"], server.server_name(), "{keys}");
    let verify_keys = keys["verify_keys"].as_object().expect("verify_keys");
    assert!(!verify_keys.is_empty(), "{keys}");
    let set = verify_keys
        .iter()
        .map(|(id, key)| {
            (id.clone(), Base64::parse(key["key"].as_str().expect("key")).expect("unpadded base64"))
        })
        .collect();
    let map = PublicKeyMap::from([(server.server_name(), set)]);
    let object: CanonicalJsonObject = serde_json::from_value(keys.clone()).expect("canonical JSON");
    verify_json(&map, &object).unwrap_or_else(|e| panic!("the key list is not self-signed: {e}: {keys}"));
    (keys, map)
}

/// A signing key this test made: whatever it signs, no real server vouches for.
fn own_key(version: &str) -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), version.to_owned()).expect("fresh key")
}

/// Checks that a federation request was refused as unauthenticated.
#[track_caller]
fn assert_unauthorized(reply: &Resp, request: &str) {
    // The request-authentication section asks for 401; M_UNAUTHORIZED is the usual errcode
    // (Synapse's), but the spec does not name one, so any errcode is accepted here.
    assert_eq!(reply.status, 401, "{request}: expected 401; body: {}", reply.body);
    assert!(reply.errcode().starts_with("M_"), "{request}: a Matrix errcode: {}", reply.body);
}

#[tokio::test]
async fn the_federation_listener_serves_its_version_and_a_self_signed_key_over_tls() {
    let a = Server::start_federating().await;
    let federation = a.federation_client();

    let version = federation.get("/_matrix/federation/v1/version").await;
    assert_eq!(
        version.status,
        200,
        "GET {}/_matrix/federation/v1/version: {}",
        a.federation_url(),
        version.body
    );
    let server = &version.body["server"];
    assert!(server["name"].as_str().is_some_and(|n| !n.is_empty()), "{}", version.body);
    assert!(server["version"].as_str().is_some_and(|v| !v.is_empty()), "{}", version.body);

    let (keys, map) = verified_server_keys(&a).await;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(keys["valid_until_ts"].as_u64().is_some_and(|t| t > now_ms), "still valid: {keys}");
    let mut tampered = keys.clone();
    tampered["server_name"] = json!("127.0.0.1:1");
    let tampered: CanonicalJsonObject = serde_json::from_value(tampered).unwrap();
    assert!(verify_json(&map, &tampered).is_err(), "the signature covers the content");

    // The key the operator sees is the one other servers are given.
    let output = a.cli(&["--json", "keys", "show"], None);
    let shown: Value = serde_json::from_str(&cli_ok(&output)).expect("JSON");
    let key_id = shown["key_id"].as_str().expect("key_id");
    assert_eq!(keys["verify_keys"][key_id]["key"], shown["public_key"], "{keys} vs {shown}");
}

#[tokio::test]
async fn federation_requests_without_a_valid_x_matrix_signature_get_401() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(alice.user_id())),
            &json!({"displayname": "Secret Alice"}),
        )
        .await
        .expect(200);
    let federation = a.federation_client();
    let uri = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(alice.user_id()));
    let request = format!("GET {}{uri}", a.federation_url());

    let reply = federation.get(&uri).await;
    assert_unauthorized(&reply, &format!("{request} without Authorization"));

    let mine = own_key("mine");
    let garbage = [
        "X-Matrix".to_owned(),
        "X-Matrix garbage".to_owned(),
        "Bearer not-a-server".to_owned(),
        format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:x\"",
            b.server_name(),
            a.server_name()
        ),
        format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:x\",sig=\"not base64!\"",
            b.server_name(),
            a.server_name()
        ),
    ];
    for header in &garbage {
        let reply = federation.request_with("GET", &uri, &[("authorization", header)], None).await;
        assert_unauthorized(&reply, &format!("{request} with Authorization: {header}"));
        assert!(!reply.body.to_string().contains("Secret Alice"), "{}", reply.body);
    }

    // Well-formed and signed, by an origin whose keys nobody can fetch (nothing listens on
    // port 1).
    let header = x_matrix(&mine, "127.0.0.1:1", &a.server_name(), "GET", &uri, None);
    let reply = federation.request_with("GET", &uri, &[("authorization", &header)], None).await;
    assert_unauthorized(&reply, &format!("{request} signed as 127.0.0.1:1 with an unknown key"));

    // Claiming to be B, under B's real key id, signed with another key: A can fetch B's
    // keys, and the signature does not verify with them.
    let (b_keys, _) = verified_server_keys(&b).await;
    let b_key_id = b_keys["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    let impostor = own_key(b_key_id.strip_prefix("ed25519:").expect("an ed25519 key"));
    let header = x_matrix(&impostor, &b.server_name(), &a.server_name(), "GET", &uri, None);
    let reply = federation.request_with("GET", &uri, &[("authorization", &header)], None).await;
    assert_unauthorized(
        &reply,
        &format!("{request} claiming to be {} with a forged signature", b.server_name()),
    );
    assert!(!reply.body.to_string().contains("Secret Alice"), "{}", reply.body);
}

/// A transaction that no server can vouch for never reaches the room. (Checking that a
/// correctly signed transaction carrying a tampered PDU is dropped would need a third
/// server with keys A can fetch, which the test cannot be without a TLS listener of its
/// own; it is not covered here.)
#[tokio::test]
async fn a_forged_transaction_is_refused_and_its_events_never_appear() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let federation = a.federation_client();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;

    let forgeries = [
        ("127.0.0.1:1".to_owned(), own_key("forged")),
        // B's name with a key B never published.
        (b.server_name(), own_key("forged")),
    ];
    for (n, (origin, key)) in forgeries.iter().enumerate() {
        let mallory = format!("@mallory:{origin}");
        let transaction = json!({
            "origin": origin,
            "origin_server_ts": now_ms,
            "pdus": [{
                "type": "m.room.message",
                "room_id": room,
                "sender": mallory,
                "origin_server_ts": now_ms,
                "depth": 100,
                "prev_events": [],
                "auth_events": [],
                "content": {"msgtype": "m.text", "body": "forged message"},
                "hashes": {"sha256": "AAAA"},
                "signatures": {},
            }],
            "edus": [{
                "edu_type": "m.typing",
                "content": {"room_id": room, "user_id": mallory, "typing": true},
            }],
        });
        let uri = format!("/_matrix/federation/v1/send/forged-{n}");
        let header = x_matrix(key, origin, &a.server_name(), "PUT", &uri, Some(&transaction));
        let reply =
            federation.request_with("PUT", &uri, &[("authorization", &header)], Some(&transaction)).await;
        assert_unauthorized(
            &reply,
            &format!("PUT {}{uri} signed as {origin} with its own key", a.federation_url()),
        );
    }

    // Nothing of it reached the room: no message, no typing.
    let view = sync(&alice, None, 0, None).await;
    let section = joined(&view, &room);
    assert!(!section.to_string().contains("mallory"), "a forged event or EDU got in: {section}");
    let history = alice.messages(&room, "dir=b&limit=100").await.expect(200);
    assert!(!history.to_string().contains("forged message"), "{history}");
}

#[tokio::test]
async fn an_invited_remote_user_joins_and_both_servers_see_the_conversation_in_order() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    assert_eq!(
        bob.user_id(),
        format!("@bob:{}", b.server_name()),
        "user ids carry the server name with its port"
    );
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;

    let room = alice.create_room(&json!({"preset": "private_chat", "name": "Across"})).await;
    let invite = alice.membership_action(&room, "invite", bob.user_id()).await;
    assert_eq!(invite.status, 200, "POST /rooms/{room}/invite {} on A: {}", bob.user_id(), invite.body);

    // Bob's server tells him, with enough of the room's state to show it.
    let invite_state = bob_feed
        .until(CROSSING, &format!("an invite to {room}"), |body| {
            let invited = &body["rooms"]["invite"][&room];
            (!invited.is_null()).then(|| invited["invite_state"].clone())
        })
        .await;
    let own_member = of_type(&invite_state, "m.room.member")
        .into_iter()
        .find(|e| e["state_key"] == bob.user_id())
        .unwrap_or_else(|| panic!("Bob's invite event is in invite_state: {invite_state}"));
    assert_eq!(own_member["content"]["membership"], "invite", "{own_member}");
    assert_eq!(own_member["sender"], alice.user_id(), "{own_member}");

    let join = bob.join_room(&room).await;
    assert_eq!(join.status, 200, "POST /join/{room} on B: {}", join.body);
    assert_eq!(join.body["room_id"], room.as_str());
    alice_feed.membership(&room, bob.user_id(), "join").await;
    assert!(bob.joined_rooms().await.contains(&room), "B lists the room as joined");

    // Taking turns: each message is sent only once the previous one has crossed.
    let mut alice_saw = Vec::new();
    let mut bob_saw = Vec::new();
    alice.send_text(&room, "a1: hello from A").await;
    bob_saw.extend(bob_feed.messages(&room, 1, CROSSING).await);
    bob.send_text(&room, "b1: hello from B").await;
    alice_saw.extend(alice_feed.messages(&room, 2, CROSSING).await);
    alice.send_text(&room, "a2: how is B?").await;
    bob_saw.extend(bob_feed.messages(&room, 2, CROSSING).await);
    bob.send_text(&room, "b2: fine").await;
    // Alice's own a2 comes first in her stream.
    alice_saw.extend(alice_feed.messages(&room, 2, CROSSING).await);
    bob_saw.extend(bob_feed.messages(&room, 1, CROSSING).await);

    let conversation = ["a1: hello from A", "b1: hello from B", "a2: how is B?", "b2: fine"];
    assert_eq!(alice_saw, conversation, "Alice's /sync on A");
    assert_eq!(bob_saw, conversation, "Bob's /sync on B");

    let both =
        vec![(alice.user_id().to_owned(), "join".to_owned()), (bob.user_id().to_owned(), "join".to_owned())];
    let mut expected = both.clone();
    expected.sort();
    assert_eq!(members(&bob, &room).await, expected, "GET /members on B");
    assert_eq!(members(&alice, &room).await, expected, "GET /members on A");
}

#[tokio::test]
async fn a_remote_user_joins_a_public_room_by_alias_and_sees_remote_profiles() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(alice.user_id())),
            &json!({"displayname": "Alice of A"}),
        )
        .await
        .expect(200);

    // Profiles of A's users, asked on B.
    let path = format!("/_matrix/client/v3/profile/{}", enc(alice.user_id()));
    let profile = bob.get(&path).await;
    assert_eq!(profile.status, 200, "GET {path} on B: {}", profile.body);
    assert_eq!(profile.body["displayname"], "Alice of A", "{}", profile.body);
    let nobody = format!("@nobody:{}", a.server_name());
    let path = format!("/_matrix/client/v3/profile/{}", enc(&nobody));
    bob.get(&path).await.expect_error(404, "M_NOT_FOUND");

    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "room_alias_name": "pub"})).await;
    let alias = format!("#pub:{}", a.server_name());

    // The alias resolves on B through A.
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(&alias));
    let resolved = bob.get(&path).await;
    assert_eq!(resolved.status, 200, "GET {path} on B: {}", resolved.body);
    assert_eq!(resolved.body["room_id"], room.as_str(), "{}", resolved.body);
    let servers = resolved.body["servers"].as_array().expect("servers");
    assert!(servers.iter().any(|s| *s == a.server_name()), "A can join Bob in: {}", resolved.body);

    // No invite: the room is public.
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;
    let join = bob.join_room(&alias).await;
    assert_eq!(join.status, 200, "POST /join/{alias} on B: {}", join.body);
    assert_eq!(join.body["room_id"], room.as_str(), "{}", join.body);
    alice_feed.membership(&room, bob.user_id(), "join").await;

    let mut expected =
        vec![(alice.user_id().to_owned(), "join".to_owned()), (bob.user_id().to_owned(), "join".to_owned())];
    expected.sort();
    assert_eq!(members(&bob, &room).await, expected, "GET /members on B");

    // The room works both ways.
    alice.send_text(&room, "welcome to A").await;
    let seen = bob_feed.messages(&room, 1, CROSSING).await;
    assert_eq!(seen, ["welcome to A"]);
    bob.send_text(&room, "thanks").await;
    // Alice's feed has her own message first.
    let seen = alice_feed.messages(&room, 2, CROSSING).await;
    assert_eq!(seen, ["welcome to A", "thanks"]);
}

#[tokio::test]
async fn typing_and_read_receipts_cross_between_servers() {
    let (a, b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(alice.user_id()));
    let typers = |body: &Value| -> Option<Vec<String>> {
        let event = of_type(&joined(body, &room)["ephemeral"], "m.typing").pop()?;
        Some(
            event["content"]["user_ids"].as_array()?.iter().map(|u| u.as_str().unwrap().to_owned()).collect(),
        )
    };

    alice.put(&typing, &json!({"typing": true, "timeout": 30_000})).await.expect(200);
    bob_feed
        .until(CROSSING, "Alice typing", |body| {
            typers(body).filter(|t| t.iter().any(|u| u == alice.user_id()))
        })
        .await;
    alice.put(&typing, &json!({"typing": false})).await.expect(200);
    bob_feed.until(CROSSING, "Alice no longer typing", |body| typers(body).filter(|t| t.is_empty())).await;

    let event_id = alice.send_text(&room, "read me").await;
    bob_feed.messages(&room, 1, CROSSING).await;
    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event_id));
    bob.post(&path, &json!({})).await.expect(200);
    let receipt = alice_feed
        .until(CROSSING, &format!("Bob's read receipt for {event_id}"), |body| {
            of_type(&joined(body, &room)["ephemeral"], "m.receipt")
                .into_iter()
                .find(|r| !r["content"][&event_id]["m.read"][bob.user_id()].is_null())
        })
        .await;
    assert!(receipt["content"][&event_id]["m.read"][bob.user_id()]["ts"].is_u64(), "{receipt}");
}

#[tokio::test]
async fn messages_sent_while_the_other_server_is_down_arrive_in_order_after_it_restarts() {
    let (a, mut b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;

    let status = b.stop().await;
    assert!(status.success(), "B stopped cleanly: {status}");
    let sent = ["while B was down: 1", "while B was down: 2", "while B was down: 3"];
    for body in sent {
        let reply =
            alice.send_event(&room, "m.room.message", &json!({"msgtype": "m.text", "body": body})).await;
        assert_eq!(reply.status, 200, "sending on A does not wait for B: {}", reply.body);
    }
    // Let A try, and fail, at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.restart().await;

    let seen = bob_feed.messages(&room, sent.len(), RETRY).await;
    assert_eq!(seen, sent, "Bob's /sync on B after the restart");
}

/// The queue is durable: messages A acknowledged for a server that was down are still
/// delivered after A itself is killed with SIGKILL and restarted.
#[tokio::test]
async fn messages_queued_for_a_down_server_survive_kill_9_of_the_sender() {
    let (mut a, mut b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;

    b.stop().await;
    let sent = ["queued 1", "queued 2"];
    for body in sent {
        alice.send_text(&room, body).await;
    }
    a.kill9();
    a.restart().await;
    b.restart().await;

    let seen = bob_feed.messages(&room, sent.len(), RETRY).await;
    assert_eq!(seen, sent, "Bob's /sync on B after A's SIGKILL and both restarts");
}

/// `federation.well_known_server` is served on the client listener, for servers whose
/// federation traffic goes to another host or port than `server_name:8448`.
#[tokio::test]
async fn the_client_listener_serves_the_configured_well_known_server_delegation() {
    let a =
        Server::start_federating_with("well_known_server = \"matrix.example.org:443\"", TEST_CONFIG).await;
    let reply = a.client().get("/.well-known/matrix/server").await;
    assert_eq!(reply.status, 200, "GET {}/.well-known/matrix/server: {}", a.base_url(), reply.body);
    assert_eq!(reply.body, json!({"m.server": "matrix.example.org:443"}));
}

/// `federation.deny`: a denied server can neither join A's rooms nor be invited into them.
#[tokio::test]
async fn a_denied_server_can_neither_join_nor_be_invited() {
    let b = Server::start_federating().await;
    let a = Server::start_federating_with(&format!("deny = [\"{}\"]", b.server_name()), TEST_CONFIG).await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "room_alias_name": "pub"})).await;
    let alias = format!("#pub:{}", a.server_name());

    let join = bob.join_room(&alias).await;
    assert_ne!(join.status, 200, "POST /join/{alias} on B, which A denies: {}", join.body);
    assert!(join.body["errcode"].is_string(), "a Matrix error: {}", join.body);
    let invite = alice.membership_action(&room, "invite", bob.user_id()).await;
    assert_ne!(
        invite.status,
        200,
        "POST /rooms/{room}/invite {} on A, which denies B: {}",
        bob.user_id(),
        invite.body
    );
    assert!(invite.body["errcode"].is_string(), "a Matrix error: {}", invite.body);
    assert_eq!(members(&alice, &room).await, [(alice.user_id().to_owned(), "join".to_owned())]);
}

/// Polls `check` on both servers' view until it gives the same answer on both, or fails
/// after [`RETRY`] naming what each side said last.
async fn until_both_agree(alice: &Client, bob: &Client, room: &str, kind: &str) -> Value {
    let deadline = Instant::now() + RETRY;
    loop {
        let on_a = alice.get_state(room, kind, "").await;
        let on_b = bob.get_state(room, kind, "").await;
        if on_a.status == 200 && on_a.body == on_b.body {
            return on_a.body;
        }
        assert!(Instant::now() < deadline, "{kind} on A: {} and on B: {} never agreed", on_a.body, on_b.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Both servers change the same state while they cannot see each other's change: each
/// receives a branch of the room's graph, and state resolution must pick the same winner
/// on both, with both changes in both timelines.
#[tokio::test]
async fn concurrent_state_changes_on_both_servers_resolve_to_the_same_state() {
    let (a, mut b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;

    // Bob may change the topic too.
    let mut levels = alice.get_state(&room, "m.room.power_levels", "").await.body;
    levels["users"][bob.user_id()] = json!(100);
    let reply = alice.put_state(&room, "m.room.power_levels", "", &levels).await;
    assert_eq!(reply.status, 200, "PUT power levels on A: {}", reply.body);
    until_both_agree(&alice, &bob, &room, "m.room.power_levels").await;

    // A's change waits in A's queue while B is down; B's is made on B before A's arrives.
    let status = b.stop().await;
    assert!(status.success(), "B stopped cleanly: {status}");
    let reply = alice.put_state(&room, "m.room.topic", "", &json!({"topic": "set on A"})).await;
    assert_eq!(reply.status, 200, "PUT topic on A: {}", reply.body);
    b.restart().await;
    let reply = bob.put_state(&room, "m.room.topic", "", &json!({"topic": "set on B"})).await;
    assert_eq!(reply.status, 200, "PUT topic on B: {}", reply.body);

    let topic = until_both_agree(&alice, &bob, &room, "m.room.topic").await;
    assert!(topic["topic"] == "set on A" || topic["topic"] == "set on B", "{topic}");
    // Both changes are in both servers' histories.
    for (who, client) in [("A", &alice), ("B", &bob)] {
        let deadline = Instant::now() + RETRY;
        loop {
            let history = client.messages(&room, "dir=b&limit=50").await;
            let topics: Vec<&str> = history.body["chunk"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == "m.room.topic")
                .filter_map(|e| e["content"]["topic"].as_str())
                .collect();
            if topics.contains(&"set on A") && topics.contains(&"set on B") {
                break;
            }
            assert!(Instant::now() < deadline, "history on {who} lacks a topic change: {topics:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The next event joins the branches, and the servers still agree afterwards.
    alice.send_text(&room, "after the merge").await;
    assert_eq!(until_both_agree(&alice, &bob, &room, "m.room.topic").await, topic);
}

/// Events arriving in a transaction that B really signed are still checked one by one: an
/// event whose signature is not B's, and one the room's rules refuse, are rejected and
/// never stored, while a genuine one next to them is accepted.
#[tokio::test]
async fn events_with_a_bad_signature_or_that_break_the_rules_are_rejected() {
    let (a, b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let b_key = signing_key_of(&b);
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;

    // A genuine event of Bob's, as A stored it, to build the others on.
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let template_id = bob.send_text(&room, "a template").await;
    alice_feed.messages(&room, 1, CROSSING).await;
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&template_id));
    let header = x_matrix(&b_key, &b.server_name(), &a.server_name(), "GET", &uri, None);
    let reply = a.federation_client().request_with("GET", &uri, &[("authorization", &header)], None).await;
    assert_eq!(reply.status, 200, "GET {uri} from A as B: {}", reply.body);
    let template = reply.body["pdus"][0].clone();

    let rules = ruma::RoomVersionId::V12.rules().expect("v12 rules");
    let make =
        |kind: &str, state_key: Option<&str>, content: Value, key: &Ed25519KeyPair| -> (String, Value) {
            let mut pdu = json!({
                "room_id": room,
                "sender": bob.user_id(),
                "type": kind,
                "content": content,
                "prev_events": [template_id],
                "auth_events": template["auth_events"],
                "depth": template["depth"].as_u64().expect("depth") + 1,
                "origin_server_ts": now_ms,
            });
            if let Some(state_key) = state_key {
                pdu["state_key"] = json!(state_key);
            }
            let mut object: CanonicalJsonObject = serde_json::from_value(pdu).expect("canonical JSON");
            hash_and_sign_event(&b.server_name(), key, &mut object, &rules.redaction).expect("sign");
            let event_id = format!("${}", reference_hash(&object, &rules).expect("hash"));
            (event_id, serde_json::to_value(&object).unwrap())
        };
    // Signed under B's key id with a key that is not B's.
    let impostor = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), b_key.version().to_owned()).unwrap();
    let text = |body: &str| json!({"msgtype": "m.text", "body": body});
    let (forged_id, forged) = make("m.room.message", None, text("forged by an impostor"), &impostor);
    // Really from B, but Bob (power 0) may not give himself power 100.
    let mut levels = alice.get_state(&room, "m.room.power_levels", "").await.body;
    levels["users"][bob.user_id()] = json!(100);
    let (grab_id, grab) = make("m.room.power_levels", Some(""), levels, &b_key);
    // Really from B, and allowed.
    let (genuine_id, genuine) = make("m.room.message", None, text("a genuine message"), &b_key);

    let transaction = json!({
        "origin": b.server_name(),
        "origin_server_ts": now_ms,
        "pdus": [forged, grab, genuine],
        "edus": [],
    });
    let uri = format!("/_matrix/federation/v1/send/checked-{now_ms}");
    let header = x_matrix(&b_key, &b.server_name(), &a.server_name(), "PUT", &uri, Some(&transaction));
    let reply = a
        .federation_client()
        .request_with("PUT", &uri, &[("authorization", &header)], Some(&transaction))
        .await;
    assert_eq!(reply.status, 200, "PUT {uri} signed by B's real key: {}", reply.body);
    let outcomes = &reply.body["pdus"];
    assert!(outcomes[&forged_id]["error"].is_string(), "the forged event is rejected: {outcomes}");
    assert!(outcomes[&grab_id]["error"].is_string(), "the power grab is rejected: {outcomes}");
    assert_eq!(outcomes[&genuine_id], json!({}), "the genuine event is accepted: {outcomes}");

    let history = alice.messages(&room, "dir=b&limit=50").await.expect(200).to_string();
    assert!(history.contains("a genuine message"), "{history}");
    assert!(!history.contains("forged by an impostor"), "{history}");
    let levels = alice.get_state(&room, "m.room.power_levels", "").await.body;
    assert_ne!(levels["users"][bob.user_id()], json!(100), "Bob's power on A: {levels}");
}

/// Rejecting an invite from another server goes through that server (`make_leave`,
/// `send_leave`): the inviter sees the rejection, and the invitee's sync moves the room to
/// `leave`.
#[tokio::test]
async fn a_rejected_invite_from_another_server_reaches_the_inviter() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;
    let invite = alice.membership_action(&room, "invite", bob.user_id()).await;
    assert_eq!(invite.status, 200, "POST /invite on A: {}", invite.body);
    bob_feed
        .until(CROSSING, "the invite", |body| body["rooms"]["invite"].get(room.as_str()).map(|_| ()))
        .await;

    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let reject = bob.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), &json!({})).await;
    assert_eq!(reject.status, 200, "POST /leave on B for a remote invite: {}", reject.body);
    alice_feed.membership(&room, bob.user_id(), "leave").await;
    bob_feed
        .until(CROSSING, "the room under leave", |body| body["rooms"]["leave"].get(room.as_str()).map(|_| ()))
        .await;
    let view = sync(&bob, None, 0, None).await;
    assert!(view["rooms"]["invite"].get(room.as_str()).is_none(), "the invite is gone: {view}");
}

/// `/publicRooms?server=` lists another server's directory, asked over federation.
#[tokio::test]
async fn the_room_directory_of_another_server_is_listed() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = alice
        .create_room(&json!({"preset": "public_chat", "visibility": "public", "name": "Open on A"}))
        .await;
    let path = format!("/_matrix/client/v3/publicRooms?server={}", enc(&a.server_name()));
    let listed = bob.get(&path).await;
    assert_eq!(listed.status, 200, "GET {path} on B: {}", listed.body);
    let chunk = listed.body["chunk"].as_array().expect("chunk");
    assert!(
        chunk.iter().any(|r| r["room_id"] == room.as_str() && r["name"] == "Open on A"),
        "{}",
        listed.body
    );

    let searched = bob
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&a.server_name())),
            &json!({"filter": {"generic_search_term": "nothing like it"}}),
        )
        .await;
    assert_eq!(searched.status, 200, "POST publicRooms on B: {}", searched.body);
    assert_eq!(searched.body["chunk"], json!([]), "{}", searched.body);
}

/// As a notary, A hands out B's keys as B signed them, countersigned by A (`GET` for one
/// server, `POST` for several).
#[tokio::test]
async fn a_server_vouches_for_another_servers_keys_as_a_notary() {
    let (a, b) = two_servers().await;
    let (_, a_keys) = verified_server_keys(&a).await;
    let (b_list, b_keys) = verified_server_keys(&b).await;
    let both: PublicKeyMap = a_keys.into_iter().chain(b_keys).collect();

    let path = format!("/_matrix/key/v2/query/{}", enc(&b.server_name()));
    let one = a.federation_client().get(&path).await;
    assert_eq!(one.status, 200, "GET {path} on A: {}", one.body);
    let batch = a
        .federation_client()
        .post("/_matrix/key/v2/query", &json!({"server_keys": {b.server_name(): {}}}))
        .await;
    assert_eq!(batch.status, 200, "POST /_matrix/key/v2/query on A: {}", batch.body);
    for reply in [&one, &batch] {
        let keys = &reply.body["server_keys"][0];
        assert_eq!(keys["server_name"], b.server_name(), "{}", reply.body);
        assert_eq!(keys["verify_keys"], b_list["verify_keys"], "{}", reply.body);
        let object: CanonicalJsonObject = serde_json::from_value(keys.clone()).expect("canonical JSON");
        verify_json(&both, &object).unwrap_or_else(|e| panic!("signed by B and by A: {e}: {keys}"));
        assert!(keys["signatures"][a.server_name()].is_object(), "A's countersignature: {keys}");
    }
}

/// GETs `path` and returns the status, the content type and the body bytes.
async fn get_bytes(client: &Client, path: &str) -> (u16, String, Vec<u8>) {
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}{path}", client.base))
        .bearer_auth(client.access_token.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map_or("", |v| v.to_str().unwrap_or_default()).to_owned();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

/// A file uploaded on A is fetched by B over federation the first time Bob asks, served
/// byte-identical with its type, thumbnailed on B, and unknown ids are 404 on B too.
#[tokio::test]
async fn a_file_uploaded_on_one_server_downloads_and_thumbnails_on_the_other() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;

    let mut picture = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([x as u8 * 4, y as u8 * 5, 90])
    }))
    .write_to(&mut std::io::Cursor::new(&mut picture), image::ImageFormat::Png)
    .unwrap();
    let uploaded: Value = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload?filename=dots.png", alice.base))
        .bearer_auth(alice.access_token.as_deref().unwrap_or_default())
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .expect("POST upload on A")
        .json()
        .await
        .expect("JSON");
    let mxc = uploaded["content_uri"].as_str().unwrap_or_else(|| panic!("POST upload on A: {uploaded}"));
    let (server, id) = mxc.strip_prefix("mxc://").and_then(|r| r.split_once('/')).expect("mxc URI");
    assert_eq!(server, a.server_name());

    // The frozen unauthenticated path does not fetch it: it would be new here.
    let legacy = format!("/_matrix/media/v3/download/{}/{}", enc(server), enc(id));
    assert_eq!(get_bytes(&bob, &legacy).await.0, 404);
    let path = format!("/_matrix/client/v1/media/download/{}/{}", enc(server), enc(id));
    let (status, content_type, bytes) = get_bytes(&bob, &path).await;
    assert_eq!(status, 200, "GET {path} on B: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type, "image/png");
    assert_eq!(bytes, picture, "the file arrives byte-identical on B");
    // Cached on B after the freeze, so still not there (the spec counts the time it was
    // cached).
    assert_eq!(get_bytes(&bob, &legacy).await.0, 404);

    let thumb = format!(
        "/_matrix/client/v1/media/thumbnail/{}/{}?width=32&height=32&method=scale",
        enc(server),
        enc(id)
    );
    let (status, _, bytes) = get_bytes(&bob, &thumb).await;
    assert_eq!(status, 200, "GET {thumb} on B");
    let small = image::load_from_memory(&bytes).expect("the thumbnail is an image");
    assert!(
        small.width() <= 64 && small.height() <= 48 && small.width() < 64,
        "{}x{}",
        small.width(),
        small.height()
    );

    let missing = format!("/_matrix/client/v1/media/download/{}/nosuchmedia", enc(server));
    let (status, _, body) = get_bytes(&bob, &missing).await;
    assert_eq!(status, 404, "GET {missing} on B: {}", String::from_utf8_lossy(&body));
}

/// Federation endpoints answer bad input from a properly authenticated server with the
/// spec's errors, and nothing changes.
#[tokio::test]
async fn federation_endpoints_answer_bad_input_with_matrix_errors() {
    let (a, b) = two_servers().await;
    let alice = a.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    let b_key = signing_key_of(&b);
    let signed = |method: &str, uri: &str, body: Option<&Value>| {
        x_matrix(&b_key, &b.server_name(), &a.server_name(), method, uri, body)
    };
    let federation = a.federation_client();

    // A transaction without its required fields.
    let uri = "/_matrix/federation/v1/send/bad-1";
    let body = json!({"origin": b.server_name()});
    let reply = federation
        .request_with("PUT", uri, &[("authorization", &signed("PUT", uri, Some(&body)))], Some(&body))
        .await;
    assert_eq!(reply.status, 400, "PUT {uri} without pdus: {}", reply.body);
    assert_eq!(reply.errcode(), "M_MISSING_PARAM", "{}", reply.body);

    // A transaction claiming another origin than the server that signed it.
    let uri = "/_matrix/federation/v1/send/bad-2";
    let body = json!({"origin": "127.0.0.1:1", "origin_server_ts": 1, "pdus": []});
    let reply = federation
        .request_with("PUT", uri, &[("authorization", &signed("PUT", uri, Some(&body)))], Some(&body))
        .await;
    assert_eq!(reply.status, 403, "PUT {uri} for another origin: {}", reply.body);
    assert_eq!(reply.errcode(), "M_FORBIDDEN", "{}", reply.body);

    // make_join for a user of another server, and for a room A does not have.
    let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(alice.user_id()));
    let reply =
        federation.request_with("GET", &uri, &[("authorization", &signed("GET", &uri, None))], None).await;
    assert_eq!(reply.status, 403, "GET {uri} for A's own user: {}", reply.body);
    assert_eq!(reply.errcode(), "M_FORBIDDEN", "{}", reply.body);
    let nobody = format!("@nobody:{}", b.server_name());
    let uri = format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc("!nosuchroom"), enc(&nobody));
    let reply =
        federation.request_with("GET", &uri, &[("authorization", &signed("GET", &uri, None))], None).await;
    assert_eq!(reply.status, 404, "GET {uri}: {}", reply.body);
    assert_eq!(reply.errcode(), "M_NOT_FOUND", "{}", reply.body);

    // B has no member in the room: its events and state are not B's to read.
    let uri = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(&room), enc("$nothing"));
    let reply =
        federation.request_with("GET", &uri, &[("authorization", &signed("GET", &uri, None))], None).await;
    assert_eq!(reply.status, 403, "GET {uri} from a server with no member: {}", reply.body);
    assert_eq!(reply.errcode(), "M_FORBIDDEN", "{}", reply.body);

    // A profile of a user A does not have.
    let uri = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&format!("@ghost:{}", a.server_name()))
    );
    let reply =
        federation.request_with("GET", &uri, &[("authorization", &signed("GET", &uri, None))], None).await;
    assert_eq!(reply.status, 404, "GET {uri}: {}", reply.body);
    assert_eq!(reply.errcode(), "M_NOT_FOUND", "{}", reply.body);

    // Nothing of it reached the room.
    let members =
        alice.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room))).await.expect(200);
    assert_eq!(members["joined"].as_object().map(|m| m.len()), Some(1), "{members}");
}
