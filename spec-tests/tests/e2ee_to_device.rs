//! `PUT /sendToDevice/{eventType}/{txnId}`: delivery to the addressed device's `/sync`
//! `to_device` section, `*` for every device of a user, transaction-id idempotency, and
//! the rule that a message stays until a sync with a later `since` acknowledges it.

mod sync_support;

use std::time::{Duration, Instant};

use spec_tests::*;
use sync_support::{next_batch, sync, try_sync, txn};

const PASSWORD: &str = "correct horse battery staple";

fn send_path(kind: &str, txn_id: &str) -> String {
    format!("/_matrix/client/v3/sendToDevice/{}/{}", enc(kind), enc(txn_id))
}

async fn send_to_device(sender: &Client, kind: &str, txn_id: &str, messages: Value) -> Resp {
    sender.put(&send_path(kind, txn_id), &json!({"messages": messages})).await
}

fn to_device(body: &Value) -> Vec<Value> {
    body["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

/// The `n` content fields of the to-device messages in a sync response.
fn payloads(body: &Value) -> Vec<Value> {
    to_device(body).into_iter().map(|e| e["content"]["n"].clone()).collect()
}

#[tokio::test]
async fn a_message_reaches_only_the_addressed_device_with_sender_and_type() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let bob_phone = server.client().login("bob", PASSWORD).await;
    let alice_other = server.client().login("alice", PASSWORD).await;
    let bob_since = next_batch(&sync(&bob, None, 0, None).await);
    let phone_since = next_batch(&sync(&bob_phone, None, 0, None).await);
    let alice_since = next_batch(&sync(&alice_other, None, 0, None).await);

    let content = json!({"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}, "n": 1});
    send_to_device(
        &alice,
        "m.room.encrypted",
        &txn(),
        json!({bob.user_id(): {bob.device_id.as_deref().unwrap(): content}}),
    )
    .await
    .expect(200);

    let body = sync(&bob, Some(&bob_since), 0, None).await;
    assert_eq!(
        to_device(&body),
        [json!({"sender": alice.user_id(), "type": "m.room.encrypted", "content": content})],
        "{body}"
    );
    let phone = sync(&bob_phone, Some(&phone_since), 0, None).await;
    assert!(to_device(&phone).is_empty(), "another device got it: {phone}");
    let other = sync(&alice_other, Some(&alice_since), 0, None).await;
    assert!(to_device(&other).is_empty(), "the sender's other device got it: {other}");
}

#[tokio::test]
async fn a_message_is_repeated_until_a_later_since_acknowledges_it_and_then_deleted() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let first = next_batch(&sync(&bob, None, 0, None).await);
    let device = bob.device_id.clone().unwrap();
    send_to_device(&alice, "m.test", &txn(), json!({bob.user_id(): {device: {"n": 1}}})).await.expect(200);

    // The response may have been lost: the same `since` gets the message again.
    let body = sync(&bob, Some(&first), 0, None).await;
    assert_eq!(payloads(&body), [json!(1)], "{body}");
    let again = sync(&bob, Some(&first), 0, None).await;
    assert_eq!(payloads(&again), [json!(1)], "{again}");

    // Syncing on from the response acknowledges it: it is gone, even for the old token.
    let later = sync(&bob, Some(&next_batch(&again)), 0, None).await;
    assert!(to_device(&later).is_empty(), "{later}");
    let old = sync(&bob, Some(&first), 0, None).await;
    assert!(to_device(&old).is_empty(), "an acknowledged message came back: {old}");
    // An initial sync does not bring it back either.
    let initial = sync(&bob, None, 0, None).await;
    assert!(to_device(&initial).is_empty(), "{initial}");
}

#[tokio::test]
async fn a_message_waits_for_a_device_that_has_never_synced() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    send_to_device(
        &alice,
        "m.test",
        &txn(),
        json!({bob.user_id(): {bob.device_id.as_deref().unwrap(): {"n": 7}}}),
    )
    .await
    .expect(200);
    let body = sync(&bob, None, 0, None).await;
    assert_eq!(payloads(&body), [json!(7)], "{body}");
}

#[tokio::test]
async fn star_reaches_every_device_of_the_user() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let bob_phone = server.client().login("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;

    send_to_device(&alice, "m.test", &txn(), json!({bob.user_id(): {"*": {"n": 3}}})).await.expect(200);
    for device in [&bob, &bob_phone] {
        let body = sync(device, None, 0, None).await;
        assert_eq!(payloads(&body), [json!(3)], "{body}");
    }
    let body = sync(&carol, None, 0, None).await;
    assert!(to_device(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn repeating_a_transaction_id_delivers_the_message_once() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let alice_laptop = server.client().login("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let device = bob.device_id.clone().unwrap();
    let txn_id = txn();

    send_to_device(&alice, "m.test", &txn_id, json!({bob.user_id(): {&device: {"n": 1}}})).await.expect(200);
    send_to_device(&alice, "m.test", &txn_id, json!({bob.user_id(): {&device: {"n": 1}}})).await.expect(200);
    // Transaction ids are scoped to the sending device: another device may reuse one.
    send_to_device(&alice_laptop, "m.test", &txn_id, json!({bob.user_id(): {&device: {"n": 2}}}))
        .await
        .expect(200);

    let body = sync(&bob, None, 0, None).await;
    assert_eq!(payloads(&body), [json!(1), json!(2)], "{body}");
}

#[tokio::test]
async fn a_long_poll_wakes_up_for_a_to_device_message() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let since = next_batch(&sync(&bob, None, 0, None).await);
    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move { try_sync(&bob, Some(&since), 20_000, None).await.expect(200) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    send_to_device(
        &alice,
        "m.test",
        &txn(),
        json!({bob.user_id(): {bob.device_id.as_deref().unwrap(): {"n": 5}}}),
    )
    .await
    .expect(200);
    let body = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the long-poll was not woken");
    assert_eq!(payloads(&body), [json!(5)], "{body}");
}

#[tokio::test]
async fn more_messages_than_one_sync_carries_all_arrive_once_in_order() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let device = bob.device_id.clone().unwrap();
    let mut since = next_batch(&sync(&bob, None, 0, None).await);
    const COUNT: u64 = 250;
    for n in 0..COUNT {
        send_to_device(&alice, "m.test", &txn(), json!({bob.user_id(): {&device: {"n": n}}}))
            .await
            .expect(200);
    }

    let mut received = Vec::new();
    for _ in 0..20 {
        let body = sync(&bob, Some(&since), 0, None).await;
        let batch = payloads(&body);
        since = next_batch(&body);
        if batch.is_empty() {
            break;
        }
        received.extend(batch.into_iter().map(|n| n.as_u64().unwrap()));
    }
    assert_eq!(received, (0..COUNT).collect::<Vec<_>>());
}

/// A response that could not carry every waiting message hands out a token that
/// acknowledges only what it carried: the client can page through the rest, retry a lost
/// response from the token before it, and use the token wherever a sync token goes.
#[tokio::test]
async fn a_token_from_a_cut_short_response_acknowledges_only_what_it_carried() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let device = bob.device_id.clone().unwrap();
    let start = next_batch(&sync(&bob, None, 0, None).await);
    for n in 0..150u64 {
        send_to_device(&alice, "m.test", &txn(), json!({bob.user_id(): {&device: {"n": n}}}))
            .await
            .expect(200);
    }

    let first = sync(&bob, Some(&start), 0, None).await;
    let carried = payloads(&first);
    assert!(!carried.is_empty() && carried.len() < 150, "{} messages in one response", carried.len());
    let cut_short = next_batch(&first);
    // The response was lost: the same token gets the same messages again.
    assert_eq!(payloads(&sync(&bob, Some(&start), 0, None).await), carried);
    // The token from it still pages history and key changes like any sync token.
    bob.get(&format!("/_matrix/client/v3/keys/changes?from={start}&to={cut_short}")).await.expect(200);
    let rest = payloads(&sync(&bob, Some(&cut_short), 0, None).await);
    assert_eq!(rest.first(), Some(&json!(carried.len())), "the next sync continues after the last carried");
}

#[tokio::test]
async fn messages_for_unknown_users_or_remote_servers_are_accepted_and_go_nowhere() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let local = alice.user_id().split_once(':').unwrap().1.to_owned();
    send_to_device(
        &alice,
        "m.test",
        &txn(),
        json!({format!("@nobody:{local}"): {"DEVICE": {"n": 1}}, "@someone:elsewhere.example": {"*": {"n": 1}}}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn a_message_for_a_device_that_does_not_exist_yet_is_dropped() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    send_to_device(&alice, "m.test", &txn(), json!({bob.user_id(): {"LATERDEVICE": {"n": 1}}}))
        .await
        .expect(200);

    // A device created later under that id must not receive what was meant for another.
    let mut login = login_body("bob", PASSWORD);
    login["device_id"] = json!("LATERDEVICE");
    let reply = server.client().post("/_matrix/client/v3/login", &login).await.expect(200);
    assert_eq!(reply["device_id"], "LATERDEVICE");
    let later = server.client().with_token(reply["access_token"].as_str().unwrap());
    let body = sync(&later, None, 0, None).await;
    assert!(to_device(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn malformed_to_device_requests_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for body in [
        json!({}),
        json!({"messages": {"not-a-user": {"D": {}}}}),
        json!({"messages": {alice.user_id(): {"D": "text"}}}),
    ] {
        let resp = alice.put(&send_path("m.test", &txn()), &body).await;
        assert_eq!(resp.status, 400, "{body} was accepted: {}", resp.body);
    }
    let resp = server.client().put(&send_path("m.test", &txn()), &json!({"messages": {}})).await;
    resp.expect_error(401, "M_MISSING_TOKEN");
}
