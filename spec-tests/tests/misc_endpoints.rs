//! The smaller endpoints clients call at start-up and in daily use: `/voip/turnServer`,
//! `/thirdparty/protocols`, OpenID tokens, the user directory, reporting events, rooms and
//! users, the `/account/3pid` endpoints (no 3PIDs here), and presence (`GET`/`PUT /presence/{userId}/status` and its `/sync`
//! section, and turning it off).

mod sync_support;

use spec_tests::*;
use sync_support::{create_room, join, next_batch, sync};

const PASSWORD: &str = "correct horse battery staple";

fn presence_path(user: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(user))
}

fn presence_events(body: &Value) -> Vec<Value> {
    body["presence"]["events"].as_array().cloned().unwrap_or_default()
}

async fn search(client: &Client, body: Value) -> Value {
    client.post("/_matrix/client/v3/user_directory/search", &body).await.expect(200)
}

fn found(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn set_name(client: &Client, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(client.user_id()));
    client.put(&path, &json!({"displayname": name})).await.expect(200);
}

// ---------------------------------------------------------------------------------------
// VoIP, third-party protocols, 3PIDs, OpenID

#[tokio::test]
async fn turn_server_is_empty_by_default() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let body = alice.get("/_matrix/client/v3/voip/turnServer").await.expect(200);
    assert_eq!(body["uris"], json!([]), "{body}");
    assert!(body["ttl"].as_u64().is_some_and(|ttl| ttl > 0), "{body}");
    server.client().get("/_matrix/client/v3/voip/turnServer").await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn turn_server_returns_the_configured_servers_and_credentials() {
    let config = r#"
[rate_limits]
enabled = false
[voip]
turn_uris = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"]
turn_username = "myelin"
turn_password = "s3cret"
turn_ttl_seconds = 3600
"#;
    let server = Server::start_with_config(config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let body = alice.get("/_matrix/client/v3/voip/turnServer").await.expect(200);
    assert_eq!(
        body,
        json!({
            "uris": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"],
            "username": "myelin",
            "password": "s3cret",
            "ttl": 3600,
        })
    );
}

#[tokio::test]
async fn thirdparty_protocols_is_an_empty_object_and_3pids_an_empty_list() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    assert_eq!(alice.get("/_matrix/client/v3/thirdparty/protocols").await.expect(200), json!({}));
    assert_eq!(alice.get("/_matrix/client/v3/account/3pid").await.expect(200), json!({"threepids": []}));
    server.client().get("/_matrix/client/v3/account/3pid").await.expect_error(401, "M_MISSING_TOKEN");
}

/// Myelin keeps no e-mail addresses or phone numbers: each 3PID endpoint answers with the
/// error its spec names for that, or has nothing to remove.
#[tokio::test]
async fn the_3pid_endpoints_say_no_3pids_are_kept() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let anonymous = server.client();
    let request_token = json!({"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1});
    let phone_token =
        json!({"client_secret": "s3cret", "country": "GB", "phone_number": "07700900000", "send_attempt": 1});
    let session = json!({"client_secret": "s3cret", "sid": "1234"});
    let bind = json!({"client_secret": "s3cret", "sid": "1234", "id_server": "id.example.org", "id_access_token": "t"});
    let remove = json!({"medium": "email", "address": "a@example.org"});

    for (path, body) in
        [("3pid/email/requestToken", &request_token), ("3pid/msisdn/requestToken", &phone_token)]
    {
        let path = format!("/_matrix/client/v3/account/{path}");
        anonymous.post(&path, body).await.expect_error(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    }
    for (path, body) in
        [("register/email/requestToken", &request_token), ("register/msisdn/requestToken", &phone_token)]
    {
        anonymous
            .post(&format!("/_matrix/client/v3/{path}"), body)
            .await
            .expect_error(403, "M_THREEPID_DENIED");
    }
    for (path, body) in [
        ("account/password/email/requestToken", &request_token),
        ("account/password/msisdn/requestToken", &phone_token),
    ] {
        anonymous
            .post(&format!("/_matrix/client/v3/{path}"), body)
            .await
            .expect_error(400, "M_THREEPID_NOT_FOUND");
    }
    alice.post("/_matrix/client/v3/account/3pid/add", &session).await.expect_error(403, "M_THREEPID_DENIED");
    alice.post("/_matrix/client/v3/account/3pid/bind", &bind).await.expect_error(403, "M_THREEPID_DENIED");
    for path in ["delete", "unbind"] {
        let path = format!("/_matrix/client/v3/account/3pid/{path}");
        assert_eq!(
            alice.post(&path, &remove).await.expect(200),
            json!({"id_server_unbind_result": "no-support"})
        );
        anonymous.post(&path, &remove).await.expect_error(401, "M_MISSING_TOKEN");
        alice.post(&path, &json!({"medium": "email"})).await.expect_error(400, "M_MISSING_PARAM");
    }
    anonymous
        .post("/_matrix/client/v3/account/3pid/add", &session)
        .await
        .expect_error(401, "M_MISSING_TOKEN");
    anonymous
        .post("/_matrix/client/v3/account/3pid/email/requestToken", &json!({"email": "a@example.org"}))
        .await
        .expect_error(400, "M_MISSING_PARAM");
    assert_eq!(alice.get("/_matrix/client/r0/account/3pid").await.expect(200), json!({"threepids": []}));
}

#[tokio::test]
async fn openid_tokens_are_issued_only_for_oneself() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let server_name = alice.user_id().split_once(':').unwrap().1.to_owned();

    let path = |user: &str| format!("/_matrix/client/v3/user/{}/openid/request_token", enc(user));
    let body = alice.post(&path(alice.user_id()), &json!({})).await.expect(200);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 16), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["matrix_server_name"], server_name.as_str());
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    let second = alice.post(&path(alice.user_id()), &json!({})).await.expect(200);
    assert_ne!(second["access_token"], body["access_token"]);

    alice.post(&path(bob.user_id()), &json!({})).await.expect_error(403, "M_FORBIDDEN");
}

// ---------------------------------------------------------------------------------------
// User directory

#[tokio::test]
async fn the_user_directory_finds_room_peers_and_members_of_public_rooms_but_not_strangers() {
    let server = Server::start().await;
    let searcher = server.client().register("searcher", PASSWORD).await;
    let peer = server.client().register("peer", PASSWORD).await;
    let public_member = server.client().register("publicmember", PASSWORD).await;
    let published_member = server.client().register("publishedmember", PASSWORD).await;
    let readable_member = server.client().register("readablemember", PASSWORD).await;
    let stranger = server.client().register("stranger", PASSWORD).await;
    for (client, name) in [
        (&peer, "Zed Peer"),
        (&public_member, "Zed Public"),
        (&published_member, "Zed Published"),
        (&readable_member, "Zed Readable"),
        (&stranger, "Zed Stranger"),
    ] {
        set_name(client, name).await;
    }

    let private = create_room(&searcher, json!({"preset": "private_chat"})).await;
    sync_support::invite(&searcher, &private, peer.user_id()).await;
    join(&peer, &private).await;
    // Anyone may join, but the room is not in the published directory.
    create_room(&public_member, json!({"preset": "public_chat"})).await;
    create_room(&published_member, json!({"preset": "public_chat", "visibility": "public"})).await;
    create_room(
        &readable_member,
        json!({"preset": "private_chat", "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"},
        }]}),
    )
    .await;
    // The stranger's only room is private and shared with nobody.
    create_room(&stranger, json!({"preset": "private_chat"})).await;

    let body = search(&searcher, json!({"search_term": "zed", "limit": 50})).await;
    let mut expected = vec![
        peer.user_id().to_owned(),
        public_member.user_id().to_owned(),
        published_member.user_id().to_owned(),
        readable_member.user_id().to_owned(),
    ];
    expected.sort();
    assert_eq!(found(&body), expected, "{body}");
    assert_eq!(body["limited"], false);
    let entry = body["results"].as_array().unwrap().iter().find(|u| u["user_id"] == peer.user_id()).unwrap();
    assert_eq!(entry["display_name"], "Zed Peer", "{body}");

    // By user id, case-insensitively.
    let body = search(&searcher, json!({"search_term": "PEER"})).await;
    assert_eq!(found(&body), [peer.user_id()], "{body}");
    let body = search(&searcher, json!({"search_term": "stranger"})).await;
    assert!(found(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn the_user_directory_honours_the_limit_and_says_when_it_cut_results() {
    let server = Server::start().await;
    let searcher = server.client().register("searcher", PASSWORD).await;
    let room = create_room(&searcher, json!({"preset": "public_chat"})).await;
    for name in ["match1", "match2", "match3"] {
        let user = server.client().register(name, PASSWORD).await;
        join(&user, &room).await;
    }
    let body = search(&searcher, json!({"search_term": "match", "limit": 2})).await;
    assert_eq!(found(&body).len(), 2, "{body}");
    assert_eq!(body["limited"], true, "{body}");
    let body = search(&searcher, json!({"search_term": "match", "limit": 3})).await;
    assert_eq!(found(&body).len(), 3, "{body}");
    assert_eq!(body["limited"], false, "{body}");

    let resp = searcher.post("/_matrix/client/v3/user_directory/search", &json!({"limit": 2})).await;
    assert_eq!(resp.status, 400, "a search without a term: {}", resp.body);
}

// ---------------------------------------------------------------------------------------
// Reports

#[tokio::test]
async fn a_member_can_report_an_event_of_the_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let event = sync_support::send_text(&alice, &room, "offensive").await;
    let path =
        |room: &str, event: &str| format!("/_matrix/client/v3/rooms/{}/report/{}", enc(room), enc(event));

    assert_eq!(bob.post(&path(&room, &event), &json!({"reason": "rude"})).await.expect(200), json!({}));
    // Reason and score are optional.
    bob.post(&path(&room, &event), &json!({})).await.expect(200);

    bob.post(&path(&room, "$nosuchevent"), &json!({"reason": "x"})).await.expect_error(404, "M_NOT_FOUND");
    // An event of another room is not found in this one.
    let other = create_room(&bob, json!({"preset": "public_chat"})).await;
    bob.post(&path(&other, &event), &json!({"reason": "x"})).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn only_members_can_report_events() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let outsider = server.client().register("outsider", PASSWORD).await;
    // History anyone can read is still not the outsider's to report.
    let room = create_room(
        &alice,
        json!({"preset": "public_chat", "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"},
        }]}),
    )
    .await;
    let event = sync_support::send_text(&alice, &room, "hello").await;
    let path = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event));
    outsider.post(&path, &json!({"reason": "x"})).await.expect_error(404, "M_NOT_FOUND");

    // Nor a former member.
    join(&outsider, &room).await;
    sync_support::leave(&outsider, &room).await;
    outsider.post(&path, &json!({"reason": "x"})).await.expect_error(404, "M_NOT_FOUND");
    server.client().post(&path, &json!({"reason": "x"})).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn anyone_can_report_an_existing_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let outsider = server.client().register("outsider", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "private_chat"})).await;
    let path = |room: &str| format!("/_matrix/client/v3/rooms/{}/report", enc(room));

    assert_eq!(outsider.post(&path(&room), &json!({"reason": "spam"})).await.expect(200), json!({}));
    let server_name = alice.user_id().split_once(':').unwrap().1.to_owned();
    outsider
        .post(&path(&format!("!nosuchroom:{server_name}")), &json!({"reason": "spam"}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    // The reason may be blank (and v1.13 clients leave it out).
    outsider.post(&path(&room), &json!({"reason": ""})).await.expect(200);
    server.client().post(&path(&room), &json!({"reason": "x"})).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn anyone_can_report_a_user_this_server_knows() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let path = |user: &str| format!("/_matrix/client/v3/users/{}/report", enc(user));

    assert_eq!(alice.post(&path(bob.user_id()), &json!({"reason": "spam"})).await.expect(200), json!({}));
    alice.post(&path(bob.user_id()), &json!({"reason": ""})).await.expect(200);
    alice.post(&path("@nobody:localhost"), &json!({"reason": "x"})).await.expect_error(404, "M_NOT_FOUND");
    // Another server's user who was never in a room here is unknown too.
    alice
        .post(&path("@someone:elsewhere.example"), &json!({"reason": "x"}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    alice.post(&path(bob.user_id()), &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    alice.post(&path("not-a-user-id"), &json!({"reason": "x"})).await.expect_error(400, "M_INVALID_PARAM");
    server
        .client()
        .post(&path(bob.user_id()), &json!({"reason": "x"}))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_report_reason_longer_than_1000_characters_is_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let event = sync_support::send_text(&alice, &room, "hello").await;
    let paths = [
        format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event)),
        format!("/_matrix/client/v3/rooms/{}/report", enc(&room)),
        format!("/_matrix/client/v3/users/{}/report", enc(bob.user_id())),
    ];
    for path in &paths {
        // Counted in characters, not bytes.
        alice.post(path, &json!({"reason": "é".repeat(1000)})).await.expect(200);
        alice.post(path, &json!({"reason": "x".repeat(1001)})).await.expect_error(400, "M_INVALID_PARAM");
    }
}

// ---------------------------------------------------------------------------------------
// Presence

#[tokio::test]
async fn presence_can_be_set_and_read_by_oneself_and_room_peers() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;

    let set = json!({"presence": "unavailable", "status_msg": "at lunch"});
    assert_eq!(alice.put(&presence_path(alice.user_id()), &set).await.expect(200), json!({}));
    for reader in [&alice, &bob] {
        let body = reader.get(&presence_path(alice.user_id())).await.expect(200);
        assert_eq!(body["presence"], "unavailable", "{body}");
        assert_eq!(body["status_msg"], "at lunch", "{body}");
        assert!(body["last_active_ago"].is_u64(), "{body}");
    }

    let bad = alice.put(&presence_path(alice.user_id()), &json!({"presence": "asleep"})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn presence_of_others_cannot_be_set_and_is_hidden_from_strangers() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    bob.put(&presence_path(alice.user_id()), &json!({"presence": "offline"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    bob.get(&presence_path(alice.user_id())).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_room_peers_presence_change_shows_in_sync() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let since = next_batch(&sync(&bob, None, 0, None).await);
    let carol_since = next_batch(&sync(&carol, None, 0, None).await);

    alice
        .put(&presence_path(alice.user_id()), &json!({"presence": "online", "status_msg": "hi"}))
        .await
        .expect(200);
    let body = sync(&bob, Some(&since), 0, None).await;
    let event = presence_events(&body)
        .into_iter()
        .find(|e| e["sender"] == alice.user_id())
        .unwrap_or_else(|| panic!("no presence for alice: {body}"));
    assert_eq!(event["type"], "m.presence");
    assert_eq!(event["content"]["presence"], "online");
    assert_eq!(event["content"]["status_msg"], "hi");

    // Carol shares no room with Alice.
    let body = sync(&carol, Some(&carol_since), 0, None).await;
    assert!(presence_events(&body).iter().all(|e| e["sender"] != alice.user_id()), "{body}");
}

#[tokio::test]
async fn with_presence_turned_off_nothing_is_shared() {
    let config = "[rate_limits]\nenabled = false\n[presence]\nenabled = false\n";
    let server = Server::start_with_config(config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let since = next_batch(&sync(&bob, None, 0, None).await);

    // Clients still set presence without errors; it just goes nowhere.
    alice
        .put(&presence_path(alice.user_id()), &json!({"presence": "online", "status_msg": "hi"}))
        .await
        .expect(200);
    let body = sync(&bob, Some(&since), 0, None).await;
    assert!(presence_events(&body).is_empty(), "{body}");
    let body = bob.get(&presence_path(alice.user_id())).await.expect(200);
    assert_eq!(body["presence"], "offline", "{body}");
    assert!(body["status_msg"].is_null(), "{body}");
}
