//! End-to-end encryption keys: `/keys/upload` (device, one-time and fallback keys),
//! `/keys/query`, `/keys/claim`, `/keys/changes` and the sync fields that go with them
//! (`device_one_time_keys_count`, `device_unused_fallback_key_types`, `device_lists`),
//! cross-signing keys (`/keys/device_signing/upload`, with UIA when replacing) and
//! `/keys/signatures/upload`. Keys are real ed25519 keys, signed as clients sign them.

mod e2ee_support;
mod sync_support;

use std::time::{Duration, Instant};

use e2ee_support::*;
use spec_tests::*;
use sync_support::{create_room, join, leave, next_batch, sync, try_sync};

const PASSWORD: &str = "correct horse battery staple";

async fn two_users(server: &Server) -> (Client, Client) {
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    (alice, bob)
}

/// A public room `owner` creates and `others` join.
async fn shared_room(owner: &Client, others: &[&Client]) -> String {
    let room = create_room(owner, json!({"preset": "public_chat"})).await;
    for other in others {
        join(other, &room).await;
    }
    room
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map_or_else(Vec::new, |a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
}

fn changed(body: &Value) -> Vec<String> {
    strings(&body["device_lists"]["changed"])
}

fn left(body: &Value) -> Vec<String> {
    strings(&body["device_lists"]["left"])
}

async fn key_changes(client: &Client, from: &str, to: &str) -> Value {
    client.get(&keys_path(&format!("changes?from={}&to={}", enc(from), enc(to)))).await.expect(200)
}

fn without_unsigned(mut key: Value) -> Value {
    key.as_object_mut().unwrap().remove("unsigned");
    key
}

// ---------------------------------------------------------------------------------------
// /keys/upload

#[tokio::test]
async fn device_keys_for_another_user_or_device_are_refused() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;

    let mut bobs_keys = Device::of(&alice);
    bobs_keys.user_id = bob.user_id().to_owned();
    upload_keys(&alice, &json!({"device_keys": bobs_keys.keys()})).await.expect_error(400, "M_INVALID_PARAM");

    let mut other_device = Device::of(&alice);
    other_device.device_id = "SOMEONEELSE".to_owned();
    upload_keys(&alice, &json!({"device_keys": other_device.keys()}))
        .await
        .expect_error(400, "M_INVALID_PARAM");

    // Nothing was stored for anyone.
    let body = query(&bob, &[alice.user_id(), bob.user_id()]).await;
    for user in [alice.user_id(), bob.user_id()] {
        assert!(body["device_keys"][user].as_object().is_none_or(|devices| devices.is_empty()), "{body}");
    }
}

#[tokio::test]
async fn upload_returns_the_unclaimed_one_time_key_counts_per_algorithm() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let device = Device::of(&alice);

    let body = upload_keys(
        &alice,
        &json!({"device_keys": device.keys(), "one_time_keys": device.one_time_keys("A", 3)}),
    )
    .await
    .expect(200);
    assert_eq!(body["one_time_key_counts"][OTK], 3, "{body}");

    let curve = json!({"curve25519:C1": "unsignedkey1", "curve25519:C2": "unsignedkey2"});
    let body = upload_keys(&alice, &json!({"one_time_keys": curve})).await.expect(200);
    assert_eq!(body["one_time_key_counts"], json!({OTK: 3, "curve25519": 2}));

    // An upload with nothing new reports the same counts.
    let body = upload_keys(&alice, &json!({})).await.expect(200);
    assert_eq!(body["one_time_key_counts"], json!({OTK: 3, "curve25519": 2}));
}

#[tokio::test]
async fn re_uploading_a_one_time_key_with_the_same_content_is_idempotent() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let device = Device::of(&alice);
    let keys = device.one_time_keys("A", 2);

    upload_keys(&alice, &json!({"one_time_keys": keys})).await.expect(200);
    let body = upload_keys(&alice, &json!({"one_time_keys": keys})).await.expect(200);
    assert_eq!(body["one_time_key_counts"][OTK], 2, "{body}");
}

#[tokio::test]
async fn re_uploading_a_one_time_key_id_with_other_content_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    let original = device.one_time_keys("A", 1);
    upload_keys(&alice, &json!({"one_time_keys": original})).await.expect(200);

    // The same id with another key, alongside a new key: the whole upload is refused.
    let mut conflicting = device.one_time_keys("A", 1);
    conflicting.as_object_mut().unwrap().extend(device.one_time_keys("B", 1).as_object().unwrap().clone());
    let resp = upload_keys(&alice, &json!({"one_time_keys": conflicting})).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.errcode().starts_with("M_"), "{}", resp.body);

    let body = upload_keys(&alice, &json!({})).await.expect(200);
    assert_eq!(body["one_time_key_counts"][OTK], 1, "the new key of a refused upload was kept: {body}");
    let claim = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    let (id, key) = claimed(&claim, alice.user_id(), &device.device_id).expect("a key");
    let expected_id = format!("{OTK}:A0");
    assert_eq!((id.as_str(), &key), (expected_id.as_str(), &original[&expected_id]));
}

#[tokio::test]
async fn malformed_key_uploads_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for body in [
        json!({"one_time_keys": {"no_colon_here": {"key": "abc"}}}),
        json!({"one_time_keys": ["not", "a", "map"]}),
        json!({"device_keys": "not an object"}),
        json!({"fallback_keys": {"signed_curve25519": {"key": "abc"}}}),
    ] {
        let resp = upload_keys(&alice, &body).await;
        assert_eq!(resp.status, 400, "{body} was accepted: {}", resp.body);
    }
    let body = upload_keys(&alice, &json!({})).await.expect(200);
    assert_eq!(body["one_time_key_counts"], json!({}), "{body}");
}

#[tokio::test]
async fn sync_one_time_key_counts_track_uploads_and_claims() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    let initial = sync(&alice, None, 0, None).await;
    assert_eq!(initial["device_one_time_keys_count"][OTK].as_u64().unwrap_or(0), 0, "{initial}");

    upload_keys(
        &alice,
        &json!({"device_keys": device.keys(), "one_time_keys": device.one_time_keys("A", 5)}),
    )
    .await
    .expect(200);
    let body = sync(&alice, Some(&next_batch(&initial)), 0, None).await;
    assert_eq!(body["device_one_time_keys_count"][OTK], 5, "{body}");

    for _ in 0..2 {
        claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    }
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert_eq!(body["device_one_time_keys_count"][OTK], 3, "{body}");

    // Another device of the same user has its own count.
    let phone = server.client().login("alice", PASSWORD).await;
    let body = sync(&phone, None, 0, None).await;
    assert_eq!(body["device_one_time_keys_count"][OTK].as_u64().unwrap_or(0), 0, "{body}");
}

#[tokio::test]
async fn a_fallback_key_is_listed_in_sync_until_claimed_and_is_then_handed_out_again() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    let fallback = device.fallback_key("F1");
    upload_keys(
        &alice,
        &json!({"device_keys": device.keys(), "one_time_keys": device.one_time_keys("A", 1), "fallback_keys": fallback}),
    )
    .await
    .expect(200);
    let body = sync(&alice, None, 0, None).await;
    assert_eq!(strings(&body["device_unused_fallback_key_types"]), [OTK], "{body}");

    // The one-time key goes first; the fallback key is not used by that.
    let first = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    assert_eq!(claimed(&first, alice.user_id(), &device.device_id).unwrap().0, format!("{OTK}:A0"));
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert_eq!(strings(&body["device_unused_fallback_key_types"]), [OTK], "{body}");

    // With no one-time key left, every claim gets the fallback key, which is now used.
    for _ in 0..2 {
        let resp = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
        let (id, key) = claimed(&resp, alice.user_id(), &device.device_id).expect("the fallback key");
        assert_eq!((id.as_str(), &key), (format!("{OTK}:F1").as_str(), &fallback[format!("{OTK}:F1")]));
    }
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "{body}");
    assert_eq!(body["device_one_time_keys_count"][OTK].as_u64().unwrap_or(0), 0, "{body}");

    // A new fallback key replaces it and is unused.
    upload_keys(&alice, &json!({"fallback_keys": device.fallback_key("F2")})).await.expect(200);
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert_eq!(strings(&body["device_unused_fallback_key_types"]), [OTK], "{body}");
    let resp = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    assert_eq!(claimed(&resp, alice.user_id(), &device.device_id).unwrap().0, format!("{OTK}:F2"));
}

#[tokio::test]
async fn re_uploading_a_used_fallback_key_does_not_mark_it_unused() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    let fallback = device.fallback_key("F1");
    upload_keys(&alice, &json!({"device_keys": device.keys(), "fallback_keys": fallback})).await.expect(200);
    claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);

    // A client retrying its last upload sends the same key again: it has still been used.
    upload_keys(&alice, &json!({"fallback_keys": fallback})).await.expect(200);
    let body = sync(&alice, None, 0, None).await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "{body}");
}

// ---------------------------------------------------------------------------------------
// /keys/claim

#[tokio::test]
async fn claims_hand_out_one_time_keys_once_each_in_upload_order() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    // Ids sort the other way round from the order of upload.
    upload_keys(&alice, &json!({"one_time_keys": device.one_time_keys("Z", 1)})).await.expect(200);
    upload_keys(&alice, &json!({"one_time_keys": device.one_time_keys("A", 1)})).await.expect(200);

    let first = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    let second = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    assert_eq!(claimed(&first, alice.user_id(), &device.device_id).unwrap().0, format!("{OTK}:Z0"));
    assert_eq!(claimed(&second, alice.user_id(), &device.device_id).unwrap().0, format!("{OTK}:A0"));

    // None left and no fallback key: nothing for the device, and that is not a failure.
    let third = claim(&bob, alice.user_id(), &device.device_id, OTK).await.expect(200);
    assert_eq!(claimed(&third, alice.user_id(), &device.device_id), None, "{third}");
    assert!(third["failures"].as_object().is_none_or(|f| f.is_empty()), "{third}");
}

#[tokio::test]
async fn concurrent_claims_never_get_the_same_key() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    upload_keys(&alice, &json!({"one_time_keys": device.one_time_keys("K", 20)})).await.expect(200);

    let claims = (0..25).map(|_| {
        let (bob, user, device) = (bob.clone(), alice.user_id().to_owned(), device.device_id.clone());
        async move { claim(&bob, &user, &device, OTK).await }
    });
    let mut ids: Vec<String> = futures_join_all(claims)
        .await
        .into_iter()
        .filter_map(|resp| claimed(&resp.expect(200), alice.user_id(), &device.device_id).map(|(id, _)| id))
        .collect();
    assert_eq!(ids.len(), 20, "every key is handed out once, then none: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "a key was handed out twice");
}

/// Runs futures concurrently on the test's runtime.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn claiming_keys_of_an_unknown_user_or_device_returns_nothing_for_them() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    upload_keys(&alice, &json!({"one_time_keys": device.one_time_keys("A", 1)})).await.expect(200);
    let nobody = format!("@nobody:{}", sync_support_server_name(&alice));

    let body = bob
        .post(
            &keys_path("claim"),
            &json!({"one_time_keys": {
                alice.user_id(): {"NOSUCHDEVICE": OTK, device.device_id.as_str(): OTK},
                nobody.as_str(): {"DEVICE": OTK},
            }}),
        )
        .await
        .expect(200);
    assert!(body["one_time_keys"][alice.user_id()]["NOSUCHDEVICE"].is_null(), "{body}");
    assert!(claimed(&body, alice.user_id(), &device.device_id).is_some(), "{body}");
    assert!(body["one_time_keys"][nobody.as_str()].as_object().is_none_or(|d| d.is_empty()), "{body}");
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");
}

fn sync_support_server_name(client: &Client) -> String {
    client.user_id().split_once(':').unwrap().1.to_owned()
}

#[tokio::test]
async fn malformed_claims_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for body in [
        json!({}),
        json!({"one_time_keys": {"not-a-user-id": {"DEVICE": OTK}}}),
        json!({"one_time_keys": {alice.user_id(): ["DEVICE"]}}),
        json!({"one_time_keys": {alice.user_id(): {"DEVICE": 5}}}),
    ] {
        let resp = alice.post(&keys_path("claim"), &body).await;
        assert_eq!(resp.status, 400, "{body} was accepted: {}", resp.body);
    }
}

// ---------------------------------------------------------------------------------------
// /keys/query

#[tokio::test]
async fn query_returns_device_keys_with_the_device_display_name() {
    let server = Server::start().await;
    let (_, bob) = two_users(&server).await;
    let laptop = login_device(&server, "alice", PASSWORD, "Alice's laptop").await;
    let device = Device::of(&laptop);
    upload_device_keys(&laptop, &device).await;
    // A device without keys is not listed.
    server.client().login("alice", PASSWORD).await;

    let body = query(&bob, &[laptop.user_id()]).await;
    let devices = body["device_keys"][laptop.user_id()].as_object().expect("alice's devices");
    assert_eq!(devices.len(), 1, "{body}");
    let key = &devices[&device.device_id];
    assert_eq!(key["unsigned"]["device_display_name"], "Alice's laptop", "{body}");
    assert_eq!(without_unsigned(key.clone()), device.keys());
}

#[tokio::test]
async fn query_for_named_devices_returns_only_those() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let phone = server.client().login("alice", PASSWORD).await;
    let (first, second) = (Device::of(&alice), Device::of(&phone));
    upload_device_keys(&alice, &first).await;
    upload_device_keys(&phone, &second).await;

    let body = bob
        .post(&keys_path("query"), &json!({"device_keys": {alice.user_id(): [second.device_id, "UNKNOWN"]}}))
        .await
        .expect(200);
    let devices = body["device_keys"][alice.user_id()].as_object().unwrap();
    assert_eq!(devices.keys().collect::<Vec<_>>(), [&second.device_id], "{body}");

    let body = query(&bob, &[alice.user_id()]).await;
    assert_eq!(body["device_keys"][alice.user_id()].as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn query_for_an_unknown_user_returns_no_keys_and_no_failure() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let nobody = format!("@nobody:{}", sync_support_server_name(&alice));
    let body = query(&alice, &[&nobody]).await;
    assert!(body["device_keys"][&nobody].as_object().is_none_or(|d| d.is_empty()), "{body}");
    assert!(body["master_keys"][&nobody].is_null(), "{body}");
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");
}

#[tokio::test]
async fn malformed_queries_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let user = alice.user_id().to_owned();
    for body in [
        // Device ids as an object rather than a list (a known client mistake).
        json!({"device_keys": {&user: {"DEVICE1": true, "DEVICE2": false}}}),
        json!({"device_keys": {&user: [1, 2]}}),
        json!({"device_keys": {&user: "DEVICE1"}}),
        json!({"device_keys": {"alice": []}}),
        json!({"device_keys": ["@alice:localhost"]}),
        json!({}),
    ] {
        let resp = alice.post(&keys_path("query"), &body).await;
        assert_eq!(resp.status, 400, "{body} was accepted: {}", resp.body);
        assert!(
            matches!(resp.errcode(), "M_BAD_JSON" | "M_INVALID_PARAM" | "M_MISSING_PARAM" | "M_NOT_JSON"),
            "{}",
            resp.body
        );
    }
}

#[tokio::test]
async fn cross_signing_keys_are_public_except_the_user_signing_key() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let keys = CrossSigning::new(alice.user_id());
    upload_signing_keys(&alice, &keys.upload_body()).await.expect(200);

    let own = query(&alice, &[alice.user_id()]).await;
    assert_eq!(own["master_keys"][alice.user_id()], keys.master_key(), "{own}");
    assert_eq!(own["self_signing_keys"][alice.user_id()], keys.self_signing_key(), "{own}");
    assert_eq!(own["user_signing_keys"][alice.user_id()], keys.user_signing_key(), "{own}");

    let other = query(&bob, &[alice.user_id()]).await;
    assert_eq!(other["master_keys"][alice.user_id()], keys.master_key(), "{other}");
    assert_eq!(other["self_signing_keys"][alice.user_id()], keys.self_signing_key(), "{other}");
    assert!(other["user_signing_keys"][alice.user_id()].is_null(), "{other}");
}

// ---------------------------------------------------------------------------------------
// /keys/device_signing/upload and /keys/signatures/upload

#[tokio::test]
async fn the_first_cross_signing_upload_needs_no_auth_but_replacing_keys_needs_the_password() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let first = CrossSigning::new(alice.user_id());
    upload_signing_keys(&alice, &first.upload_body()).await.expect(200);
    // The same keys again (a retry after a lost response) need no auth either.
    upload_signing_keys(&alice, &first.upload_body()).await.expect(200);

    let second = CrossSigning::new(alice.user_id());
    let challenge = upload_signing_keys(&alice, &second.upload_body()).await;
    let session = uia_session(&challenge, "m.login.password");
    // Adding a key that was not there before is a change too.
    let partial = json!({"master_key": first.master_key(), "self_signing_key": second.self_signing_key()});
    uia_session(&upload_signing_keys(&alice, &partial).await, "m.login.password");

    let mut body = second.upload_body();
    body["auth"] = password_auth(alice.user_id(), "wrong password", Some(&session));
    let resp = upload_signing_keys(&alice, &body).await;
    assert_eq!((resp.status, resp.errcode()), (401, "M_FORBIDDEN"), "{}", resp.body);
    assert_eq!(query(&alice, &[alice.user_id()]).await["master_keys"][alice.user_id()], first.master_key());

    body["auth"] = password_auth(alice.user_id(), PASSWORD, Some(&session));
    upload_signing_keys(&alice, &body).await.expect(200);
    let own = query(&alice, &[alice.user_id()]).await;
    assert_eq!(own["master_keys"][alice.user_id()], second.master_key(), "{own}");
    assert_eq!(own["user_signing_keys"][alice.user_id()], second.user_signing_key(), "{own}");
}

#[tokio::test]
async fn cross_signing_keys_of_another_user_are_refused() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let bobs = CrossSigning::new(bob.user_id());
    let resp = upload_signing_keys(&alice, &bobs.upload_body()).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let body = query(&bob, &[alice.user_id(), bob.user_id()]).await;
    assert!(body["master_keys"].as_object().is_none_or(|m| m.is_empty()), "{body}");
}

#[tokio::test]
async fn uploaded_signatures_are_merged_into_the_keys_query_returns() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    upload_device_keys(&alice, &device).await;
    let cross = CrossSigning::new(alice.user_id());
    upload_signing_keys(&alice, &cross.upload_body()).await.expect(200);

    // Alice's self-signing key signs her device; her device signs her master key.
    let signed_device = cross.self_signing.sign(alice.user_id(), &device.keys());
    let signed_master = device.ed25519.sign(alice.user_id(), &cross.master_key());
    let body = upload_signatures(
        &alice,
        &json!({alice.user_id(): {
            device.device_id.as_str(): signed_device,
            cross.master.public.as_str(): signed_master,
        }}),
    )
    .await
    .expect(200);
    assert!(body["failures"].as_object().is_none_or(|f| f.is_empty()), "{body}");

    let seen = query(&bob, &[alice.user_id()]).await;
    let device_sigs = &seen["device_keys"][alice.user_id()][&device.device_id]["signatures"][alice.user_id()];
    assert!(device_sigs[device.ed25519.key_id()].is_string(), "the device's own signature stays: {seen}");
    assert_eq!(
        device_sigs[cross.self_signing.key_id()],
        signed_device["signatures"][alice.user_id()][cross.self_signing.key_id()],
        "{seen}"
    );
    assert_eq!(seen["master_keys"][alice.user_id()], signed_master, "{seen}");
}

#[tokio::test]
async fn signing_an_unknown_key_is_reported_as_a_failure() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let device = Device::of(&alice);
    upload_device_keys(&alice, &device).await;
    let cross = CrossSigning::new(alice.user_id());
    upload_signing_keys(&alice, &cross.upload_body()).await.expect(200);

    let mut ghost = Device::of(&alice);
    ghost.device_id = "GHOST".to_owned();
    let signed = cross.self_signing.sign(alice.user_id(), &ghost.keys());
    let body = upload_signatures(&alice, &json!({alice.user_id(): {"GHOST": signed}})).await.expect(200);
    let failure = &body["failures"][alice.user_id()]["GHOST"];
    assert!(failure["errcode"].as_str().is_some_and(|c| c.starts_with("M_")), "{body}");
}

#[tokio::test]
async fn signatures_that_do_not_verify_or_are_not_the_uploaders_are_refused() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let device = Device::of(&alice);
    upload_device_keys(&alice, &device).await;
    let cross = CrossSigning::new(alice.user_id());
    upload_signing_keys(&alice, &cross.upload_body()).await.expect(200);
    let stored =
        query(&alice, &[alice.user_id()]).await["device_keys"][alice.user_id()][&device.device_id].clone();

    // A signature by a key Alice does not have.
    let stranger = SigningKey::new(None);
    let forged = stranger.sign(alice.user_id(), &device.keys());
    let body = upload_signatures(&alice, &json!({alice.user_id(): {device.device_id.as_str(): forged}}))
        .await
        .expect(200);
    assert!(body["failures"][alice.user_id()][&device.device_id].is_object(), "{body}");

    // A signature over other content than the stored key.
    let mut altered = device.keys();
    altered["algorithms"] = json!([MEGOLM]);
    let altered = cross.self_signing.sign(alice.user_id(), &altered);
    let body = upload_signatures(&alice, &json!({alice.user_id(): {device.device_id.as_str(): altered}}))
        .await
        .expect(200);
    assert!(body["failures"][alice.user_id()][&device.device_id].is_object(), "{body}");

    // Bob overwriting Alice's self-signature on her device with garbage.
    let mut vandal = device.keys();
    vandal["signatures"] = json!({alice.user_id(): {device.ed25519.key_id(): "garbage"}});
    let body = upload_signatures(&bob, &json!({alice.user_id(): {device.device_id.as_str(): vandal}}))
        .await
        .expect(200);
    assert!(body["failures"][alice.user_id()][&device.device_id].is_object(), "{body}");

    let after =
        query(&alice, &[alice.user_id()]).await["device_keys"][alice.user_id()][&device.device_id].clone();
    assert_eq!(after, stored, "a refused signature changed the stored key");
}

// ---------------------------------------------------------------------------------------
// /keys/changes and sync device_lists

#[tokio::test]
async fn a_peer_uploading_device_keys_is_reported_as_changed() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let carol = server.client().register("carol", PASSWORD).await;
    shared_room(&alice, &[&bob]).await;
    let from = next_batch(&sync(&alice, None, 0, None).await);

    upload_device_keys(&bob, &Device::of(&bob)).await;
    // Carol shares no room with Alice: her keys are none of Alice's business.
    upload_device_keys(&carol, &Device::of(&carol)).await;

    let body = sync(&alice, Some(&from), 0, None).await;
    assert!(changed(&body).contains(&bob.user_id().to_owned()), "{body}");
    assert!(!changed(&body).contains(&carol.user_id().to_owned()), "{body}");
    let changes = key_changes(&alice, &from, &next_batch(&body)).await;
    assert!(strings(&changes["changed"]).contains(&bob.user_id().to_owned()), "{changes}");
    assert!(!strings(&changes["changed"]).contains(&carol.user_id().to_owned()), "{changes}");

    // Nothing new since: nobody is reported again.
    let again = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(changed(&again).is_empty(), "{again}");
}

#[tokio::test]
async fn a_peer_replacing_cross_signing_keys_is_reported_as_changed() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    shared_room(&alice, &[&bob]).await;
    let from = next_batch(&sync(&alice, None, 0, None).await);
    upload_signing_keys(&bob, &CrossSigning::new(bob.user_id()).upload_body()).await.expect(200);
    let body = sync(&alice, Some(&from), 0, None).await;
    assert!(changed(&body).contains(&bob.user_id().to_owned()), "{body}");
}

#[tokio::test]
async fn a_peer_adding_or_deleting_a_device_wakes_a_long_poll_with_changed() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    shared_room(&alice, &[&bob]).await;
    let phone = server.client().login("bob", PASSWORD).await;
    let mut since = next_batch(&sync(&alice, None, 0, None).await);

    // A new device appears once it has keys.
    let poll = {
        let alice = alice.clone();
        let since = since.clone();
        tokio::spawn(async move { try_sync(&alice, Some(&since), 20_000, None).await.expect(200) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    upload_device_keys(&phone, &Device::of(&phone)).await;
    let body = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the long-poll was not woken");
    assert!(changed(&body).contains(&bob.user_id().to_owned()), "{body}");
    since = next_batch(&body);

    // Deleting it is a change too.
    let poll = {
        let alice = alice.clone();
        let since = since.clone();
        tokio::spawn(async move { try_sync(&alice, Some(&since), 20_000, None).await.expect(200) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let path = format!("/_matrix/client/v3/devices/{}", enc(phone.device_id.as_deref().unwrap()));
    let challenge = bob.delete(&path, Some(&json!({}))).await;
    let session = uia_session(&challenge, "m.login.password");
    bob.delete(&path, Some(&json!({"auth": password_auth(bob.user_id(), PASSWORD, Some(&session))})))
        .await
        .expect(200);
    let body = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the long-poll was not woken");
    assert!(changed(&body).contains(&bob.user_id().to_owned()), "{body}");
    let devices = query(&alice, &[bob.user_id()]).await;
    assert!(
        devices["device_keys"][bob.user_id()][phone.device_id.as_deref().unwrap()].is_null(),
        "{devices}"
    );
}

#[tokio::test]
async fn a_newly_joined_user_is_reported_as_changed_to_both_sides() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let alice_from = next_batch(&sync(&alice, None, 0, None).await);
    let bob_from = next_batch(&sync(&bob, None, 0, None).await);

    join(&bob, &room).await;
    let body = sync(&alice, Some(&alice_from), 0, None).await;
    assert!(changed(&body).contains(&bob.user_id().to_owned()), "{body}");
    let body = sync(&bob, Some(&bob_from), 0, None).await;
    assert!(changed(&body).contains(&alice.user_id().to_owned()), "{body}");
    let changes = key_changes(&alice, &alice_from, &next_batch(&body)).await;
    assert!(strings(&changes["changed"]).contains(&bob.user_id().to_owned()), "{changes}");
}

#[tokio::test]
async fn a_user_who_leaves_the_last_shared_room_is_reported_as_left() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    let first = shared_room(&alice, &[&bob]).await;
    let second = shared_room(&alice, &[&bob]).await;
    let from = next_batch(&sync(&alice, None, 0, None).await);

    // Still sharing the second room: not left.
    leave(&bob, &first).await;
    let body = sync(&alice, Some(&from), 0, None).await;
    assert!(!left(&body).contains(&bob.user_id().to_owned()), "{body}");

    leave(&bob, &second).await;
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(left(&body).contains(&bob.user_id().to_owned()), "{body}");
    assert!(!changed(&body).contains(&bob.user_id().to_owned()), "{body}");
    let changes = key_changes(&alice, &from, &next_batch(&body)).await;
    assert!(strings(&changes["left"]).contains(&bob.user_id().to_owned()), "{changes}");

    // Bob's key changes no longer reach Alice.
    upload_device_keys(&bob, &Device::of(&bob)).await;
    let after = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(!changed(&after).contains(&bob.user_id().to_owned()), "{after}");
}

#[tokio::test]
async fn key_changes_reports_a_change_inside_the_range_even_after_a_later_change() {
    let server = Server::start().await;
    let (alice, bob) = two_users(&server).await;
    shared_room(&alice, &[&bob]).await;
    let from = next_batch(&sync(&alice, None, 0, None).await);
    upload_device_keys(&bob, &Device::of(&bob)).await;
    let to = next_batch(&sync(&alice, Some(&from), 0, None).await);
    // Bob changes his keys again after `to`.
    upload_signing_keys(&bob, &CrossSigning::new(bob.user_id()).upload_body()).await.expect(200);

    let changes = key_changes(&alice, &from, &to).await;
    assert!(strings(&changes["changed"]).contains(&bob.user_id().to_owned()), "{changes}");
}

#[tokio::test]
async fn key_changes_refuses_tokens_that_are_not_sync_tokens() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);
    for query in
        [format!("from=garbage&to={token}"), format!("from={token}&to=garbage"), format!("from={token}")]
    {
        let resp = alice.get(&keys_path(&format!("changes?{query}"))).await;
        assert_eq!(resp.status, 400, "{query}: {}", resp.body);
    }
}
