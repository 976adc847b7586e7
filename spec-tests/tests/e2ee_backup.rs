//! Server-side key backup: versions (`/room_keys/version`: create, latest, by number,
//! update, delete) and the keys in them (`/room_keys/keys` for all rooms, one room, one
//! session), with `etag` and `count`, the spec's replacement rules, and
//! `M_WRONG_ROOM_KEYS_VERSION` for writes to a version that is not the current one.

use spec_tests::*;

const PASSWORD: &str = "correct horse battery staple";
const ALGORITHM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:example.org";
const OTHER_ROOM: &str = "!other:example.org";

const VERSION: &str = "/_matrix/client/v3/room_keys/version";

fn version_path(version: &str) -> String {
    format!("{VERSION}/{}", enc(version))
}

/// `/room_keys/keys[/{room}[/{session}]]?version=`.
fn keys_path(version: &str, room: Option<&str>, session: Option<&str>) -> String {
    let mut path = "/_matrix/client/v3/room_keys/keys".to_owned();
    if let Some(room) = room {
        path.push_str(&format!("/{}", enc(room)));
    }
    if let Some(session) = session {
        path.push_str(&format!("/{}", enc(session)));
    }
    format!("{path}?version={}", enc(version))
}

fn auth_data(public_key: &str) -> Value {
    json!({"public_key": public_key, "signatures": {}})
}

async fn create_version(client: &Client, public_key: &str) -> String {
    let body =
        client.post(VERSION, &json!({"algorithm": ALGORITHM, "auth_data": auth_data(public_key)})).await;
    body.expect(200)["version"].as_str().expect("version").to_owned()
}

/// Key data with the metadata the replacement rules look at.
fn session(first_message_index: u64, forwarded_count: u64, is_verified: bool, tag: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag},
    })
}

fn etag(body: &Value) -> String {
    body["etag"].as_str().unwrap_or_else(|| panic!("etag: {body}")).to_owned()
}

#[tokio::test]
async fn without_a_backup_every_lookup_is_404_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    alice.get(VERSION).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&version_path("1")).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&version_path("not-a-number")).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&keys_path("1", None, None)).await.expect_error(404, "M_NOT_FOUND");
    alice.delete(&version_path("1"), None).await.expect_error(404, "M_NOT_FOUND");
    let put = alice.put(&keys_path("1", Some(ROOM), Some("s1")), &session(0, 0, false, "a")).await;
    put.expect_error(404, "M_NOT_FOUND");
    server.client().get(VERSION).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_created_version_is_the_latest_and_can_be_fetched_by_number() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let first = create_version(&alice, "key-one").await;
    let latest = alice.get(VERSION).await.expect(200);
    assert_eq!(latest["version"], first.as_str(), "{latest}");
    assert_eq!(latest["algorithm"], ALGORITHM);
    assert_eq!(latest["auth_data"], auth_data("key-one"));
    assert_eq!(latest["count"], 0);
    assert!(latest["etag"].is_string(), "{latest}");

    let second = create_version(&alice, "key-two").await;
    assert_ne!(first, second);
    assert_eq!(alice.get(VERSION).await.expect(200)["version"], second.as_str());
    let old = alice.get(&version_path(&first)).await.expect(200);
    assert_eq!((&old["version"], &old["auth_data"]), (&json!(first), &auth_data("key-one")));

    // Backups are per user.
    let bob = server.client().register("bob", PASSWORD).await;
    bob.get(VERSION).await.expect_error(404, "M_NOT_FOUND");
    bob.get(&version_path(&first)).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn creating_a_version_needs_an_algorithm_and_auth_data() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for body in [json!({}), json!({"auth_data": {}}), json!({"algorithm": ALGORITHM, "auth_data": "text"})] {
        let resp = alice.post(VERSION, &body).await;
        assert_eq!(resp.status, 400, "{body} was accepted: {}", resp.body);
    }
    alice.get(VERSION).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn update_changes_only_the_auth_data_and_refuses_mismatches() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let version = create_version(&alice, "key-one").await;

    let update = json!({"algorithm": ALGORITHM, "auth_data": auth_data("key-two"), "version": version});
    alice.put(&version_path(&version), &update).await.expect(200);
    assert_eq!(alice.get(&version_path(&version)).await.expect(200)["auth_data"], auth_data("key-two"));
    // `version` may be left out of the body.
    let update = json!({"algorithm": ALGORITHM, "auth_data": auth_data("key-three")});
    alice.put(&version_path(&version), &update).await.expect(200);

    let mismatched = json!({"algorithm": ALGORITHM, "auth_data": auth_data("x"), "version": "999999"});
    alice.put(&version_path(&version), &mismatched).await.expect_error(400, "M_INVALID_PARAM");
    let other_algorithm = json!({"algorithm": "org.example.other", "auth_data": auth_data("x")});
    alice.put(&version_path(&version), &other_algorithm).await.expect_error(400, "M_INVALID_PARAM");
    let unknown = json!({"algorithm": ALGORITHM, "auth_data": auth_data("x")});
    alice.put(&version_path("999999"), &unknown).await.expect_error(404, "M_NOT_FOUND");

    assert_eq!(alice.get(&version_path(&version)).await.expect(200)["auth_data"], auth_data("key-three"));
}

#[tokio::test]
async fn deleting_a_version_removes_it_and_its_keys_and_deleting_it_again_succeeds() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let first = create_version(&alice, "key-one").await;
    alice.put(&keys_path(&first, Some(ROOM), Some("s1")), &session(0, 0, false, "a")).await.expect(200);
    let second = create_version(&alice, "key-two").await;

    alice.delete(&version_path(&second), None).await.expect(200);
    alice.get(&version_path(&second)).await.expect_error(404, "M_NOT_FOUND");
    // The older version is the latest again.
    assert_eq!(alice.get(VERSION).await.expect(200)["version"], first.as_str());
    // A repeated delete (a retry) succeeds, as the spec asks.
    alice.delete(&version_path(&second), None).await.expect(200);

    alice.delete(&version_path(&first), None).await.expect(200);
    alice.get(VERSION).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&keys_path(&first, None, None)).await.expect_error(404, "M_NOT_FOUND");
    // A version that never existed is still unknown.
    alice.delete(&version_path("123456789"), None).await.expect_error(404, "M_NOT_FOUND");

    // A new version starts empty.
    let third = create_version(&alice, "key-three").await;
    assert_eq!(alice.get(VERSION).await.expect(200)["count"], 0);
    assert_eq!(alice.get(&keys_path(&third, None, None)).await.expect(200), json!({"rooms": {}}));
}

#[tokio::test]
async fn keys_can_be_stored_read_and_deleted_per_session_room_and_backup_with_etag_and_count() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    let start = etag(&alice.get(VERSION).await.expect(200));

    // One session.
    let s1 = session(0, 0, false, "s1");
    let put = alice.put(&keys_path(&version, Some(ROOM), Some("s1")), &s1).await.expect(200);
    assert_eq!(put["count"], 1, "{put}");
    let after_one = etag(&put);
    assert_ne!(after_one, start, "storing a key changes the etag");

    // One room.
    let room_body = json!({"sessions": {"s2": session(0, 0, false, "s2"), "s3": session(0, 0, false, "s3")}});
    let put = alice.put(&keys_path(&version, Some(ROOM), None), &room_body).await.expect(200);
    assert_eq!(put["count"], 3, "{put}");
    assert_ne!(etag(&put), after_one);

    // Every room.
    let all_body = json!({"rooms": {OTHER_ROOM: {"sessions": {"o1": session(0, 0, false, "o1")}}}});
    let put = alice.put(&keys_path(&version, None, None), &all_body).await.expect(200);
    assert_eq!(put["count"], 4, "{put}");
    let info = alice.get(VERSION).await.expect(200);
    assert_eq!((&info["count"], &info["etag"]), (&json!(4), &put["etag"]), "{info}");

    assert_eq!(alice.get(&keys_path(&version, Some(ROOM), Some("s1"))).await.expect(200), s1);
    let room = alice.get(&keys_path(&version, Some(ROOM), None)).await.expect(200);
    let mut ids: Vec<&String> = room["sessions"].as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, ["s1", "s2", "s3"], "{room}");
    let all = alice.get(&keys_path(&version, None, None)).await.expect(200);
    assert_eq!(all["rooms"].as_object().unwrap().len(), 2, "{all}");
    assert_eq!(all["rooms"][OTHER_ROOM]["sessions"]["o1"], session(0, 0, false, "o1"));

    // Nothing stored: an empty room, a missing session.
    let empty = alice.get(&keys_path(&version, Some("!empty:example.org"), None)).await.expect(200);
    assert_eq!(empty, json!({"sessions": {}}));
    alice.get(&keys_path(&version, Some(ROOM), Some("nope"))).await.expect_error(404, "M_NOT_FOUND");
    // A session id that is a prefix of a stored one is another session.
    alice.get(&keys_path(&version, Some(ROOM), Some("s"))).await.expect_error(404, "M_NOT_FOUND");

    let deleted = alice.delete(&keys_path(&version, Some(ROOM), Some("s1")), None).await.expect(200);
    assert_eq!(deleted["count"], 3, "{deleted}");
    alice.get(&keys_path(&version, Some(ROOM), Some("s1"))).await.expect_error(404, "M_NOT_FOUND");
    let deleted = alice.delete(&keys_path(&version, Some(ROOM), None), None).await.expect(200);
    assert_eq!(deleted["count"], 1, "{deleted}");
    let deleted = alice.delete(&keys_path(&version, None, None), None).await.expect(200);
    assert_eq!(deleted["count"], 0, "{deleted}");
    assert_eq!(alice.get(&keys_path(&version, None, None)).await.expect(200), json!({"rooms": {}}));
    assert_eq!(alice.get(VERSION).await.expect(200)["count"], 0);
}

#[tokio::test]
async fn a_stored_key_is_replaced_only_by_a_better_one() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    let path = keys_path(&version, Some(ROOM), Some("s"));
    let stored = || async { alice.get(&path).await.expect(200) };

    let start = session(5, 2, false, "start");
    alice.put(&path, &start).await.expect(200);

    // (new, whether it replaces what is stored)
    let steps = [
        (session(6, 0, false, "later index"), false),
        (session(5, 3, false, "more forwards"), false),
        (session(5, 2, false, "same metadata"), false),
        (session(5, 1, false, "fewer forwards"), true),
        (session(4, 9, false, "earlier index"), true),
        (session(9, 9, true, "verified"), true),
        (session(0, 0, false, "unverified but earliest"), false),
        (session(10, 0, true, "verified, later index"), false),
        (session(8, 9, true, "verified, earlier index"), true),
    ];
    let mut expected = start;
    for (new, replaces) in steps {
        let before = etag(&alice.get(VERSION).await.expect(200));
        let put = alice.put(&path, &new).await.expect(200);
        assert_eq!(put["count"], 1, "{put}");
        if replaces {
            expected = new.clone();
            assert_ne!(etag(&put), before, "{new} replaced the key: the etag must change");
        } else {
            assert_eq!(etag(&put), before, "{new} changed nothing: the etag must not change");
        }
        assert_eq!(stored().await, expected, "after putting {new}");
    }
}

#[tokio::test]
async fn writes_to_a_version_other_than_the_current_one_are_403_wrong_room_keys_version() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let old = create_version(&alice, "old").await;
    let current = create_version(&alice, "current").await;

    let check = |resp: Resp| {
        resp.expect_error(403, "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(resp.body["current_version"], current.as_str(), "{}", resp.body);
    };
    check(alice.put(&keys_path(&old, Some(ROOM), Some("s")), &session(0, 0, false, "x")).await);
    check(alice.put(&keys_path(&old, Some(ROOM), None), &json!({"sessions": {}})).await);
    check(alice.put(&keys_path(&old, None, None), &json!({"rooms": {}})).await);
    check(alice.delete(&keys_path(&old, None, None), None).await);

    // A deleted version is not the current one either.
    alice.delete(&version_path(&old), None).await.expect(200);
    check(alice.put(&keys_path(&old, Some(ROOM), Some("s")), &session(0, 0, false, "x")).await);

    // The current version took nothing from those attempts.
    assert_eq!(alice.get(&version_path(&current)).await.expect(200)["count"], 0);
}

#[tokio::test]
async fn malformed_key_uploads_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    for (path, body) in [
        (keys_path(&version, Some(ROOM), Some("s")), json!({"first_message_index": 0})),
        (keys_path(&version, Some(ROOM), None), json!({"sessions": "none"})),
        (keys_path(&version, None, None), json!({"rooms": {"not-a-room-id": {"sessions": {}}}})),
    ] {
        let resp = alice.put(&path, &body).await;
        assert_eq!(resp.status, 400, "{path} {body} was accepted: {}", resp.body);
    }
    let resp = alice.put("/_matrix/client/v3/room_keys/keys", &json!({"rooms": {}})).await;
    assert_eq!(resp.status, 400, "a put without a version was accepted: {}", resp.body);
    assert_eq!(alice.get(VERSION).await.expect(200)["count"], 0);
}
