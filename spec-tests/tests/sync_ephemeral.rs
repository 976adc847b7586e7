//! Ephemeral and per-user room data in `/sync`: typing notifications and their expiry,
//! read receipts (public and private), read markers and unread notification counts.

mod sync_support;

use std::time::{Duration, Instant};

use spec_tests::*;
use sync_support::*;

/// Alice's public room with Bob in it.
async fn two_members(server: &Server) -> (Client, Client, String) {
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    (alice, bob, room)
}

fn typing_path(room: &str, user: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(room), enc(user))
}

/// The user ids of the room's `m.typing` event, if the section has one.
fn typers(section: &Value) -> Option<Vec<String>> {
    let event = of_type(&section["ephemeral"], "m.typing").pop()?;
    Some(event["content"]["user_ids"].as_array()?.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
}

fn counts(section: &Value) -> (u64, u64) {
    let unread = &section["unread_notifications"];
    (unread["notification_count"].as_u64().unwrap(), unread["highlight_count"].as_u64().unwrap())
}

#[tokio::test]
async fn typing_reaches_the_other_member_and_expires_after_its_timeout() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    alice
        .put(&typing_path(&room, alice.user_id()), &json!({"typing": true, "timeout": 1500}))
        .await
        .expect(200);
    let typed_at = Instant::now();
    let body = sync(&bob, Some(&token), 5000, None).await;
    assert_eq!(typers(joined(&body, &room)), Some(vec![alice.user_id().to_owned()]), "{body}");

    // The next long-poll wakes when the notification times out, with the empty list.
    let body = sync(&bob, Some(&next_batch(&body)), 10_000, None).await;
    let expired_after = typed_at.elapsed();
    assert_eq!(typers(joined(&body, &room)), Some(vec![]), "{body}");
    assert!(expired_after >= Duration::from_millis(1400), "expired early: {expired_after:?}");
    assert!(expired_after < Duration::from_secs(4), "expired late: {expired_after:?}");

    // Nothing changes afterwards: no repeated empty list.
    let body = sync(&bob, Some(&next_batch(&body)), 0, None).await;
    assert!(joined(&body, &room).is_null(), "{body}");
}

#[tokio::test]
async fn typing_false_clears_the_notification_at_once() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    alice
        .put(&typing_path(&room, alice.user_id()), &json!({"typing": true, "timeout": 30_000}))
        .await
        .expect(200);
    let body = sync(&bob, None, 0, None).await;
    assert_eq!(typers(joined(&body, &room)), Some(vec![alice.user_id().to_owned()]), "{body}");

    alice.put(&typing_path(&room, alice.user_id()), &json!({"typing": false})).await.expect(200);
    let body = sync(&bob, Some(&next_batch(&body)), 5000, None).await;
    assert_eq!(typers(joined(&body, &room)), Some(vec![]), "{body}");
}

#[tokio::test]
async fn typing_for_someone_else_or_outside_the_room_is_forbidden() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let carol = server.client().register("carol", "password-c").await;
    bob.put(&typing_path(&room, alice.user_id()), &json!({"typing": true, "timeout": 1000}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    carol
        .put(&typing_path(&room, carol.user_id()), &json!({"typing": true, "timeout": 1000}))
        .await
        .expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn messages_raise_unread_counts_and_intentional_mentions_raise_highlights() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    send_text(&alice, &room, "hello bob").await;
    let body = sync(&bob, Some(&token), 5000, None).await;
    assert_eq!(counts(joined(&body, &room)), (1, 0), "{body}");

    let mention =
        json!({"msgtype": "m.text", "body": "look here", "m.mentions": {"user_ids": [bob.user_id()]}});
    send_event(&alice, &room, "m.room.message", mention).await;
    let body = sync(&bob, Some(&next_batch(&body)), 5000, None).await;
    assert_eq!(counts(joined(&body, &room)), (2, 1), "{body}");

    // The sender's own messages never count for her.
    let alice_view = sync(&alice, None, 0, None).await;
    assert_eq!(counts(joined(&alice_view, &room)), (0, 0), "{alice_view}");
}

/// Found by matrix-js-sdk (spec-tests/clients/js): the invite that notified Bob was still
/// counted in the room he then joined, so one message showed as two unread.
#[tokio::test]
async fn what_came_before_the_join_does_not_count_as_unread() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = create_room(&alice, json!({"preset": "private_chat"})).await;
    invite(&alice, &room, bob.user_id()).await;
    join(&bob, &room).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    send_text(&alice, &room, "the only message").await;
    let body = sync(&bob, Some(&token), 5000, None).await;
    assert_eq!(counts(joined(&body, &room)), (1, 0), "{body}");
}

#[tokio::test]
async fn a_read_receipt_clears_the_counts_and_reaches_the_other_member_as_m_receipt() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    send_text(&alice, &room, "one").await;
    let last = send_text(&alice, &room, "two").await;
    let bob_token = next_batch(&sync(&bob, None, 0, None).await);
    let alice_token = next_batch(&sync(&alice, None, 0, None).await);

    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&last));
    bob.post(&path, &json!({})).await.expect(200);

    let body = sync(&bob, Some(&bob_token), 5000, None).await;
    assert_eq!(counts(joined(&body, &room)), (0, 0), "{body}");

    let body = sync(&alice, Some(&alice_token), 5000, None).await;
    let receipt =
        of_type(&joined(&body, &room)["ephemeral"], "m.receipt").pop().unwrap_or_else(|| panic!("{body}"));
    assert!(receipt["content"][&last]["m.read"][bob.user_id()]["ts"].is_u64(), "{receipt}");
    // It is sent once, not again in the next sync.
    let body = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(joined(&body, &room).is_null(), "{body}");
}

#[tokio::test]
async fn a_private_read_receipt_is_seen_only_by_its_owner() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let message = send_text(&alice, &room, "psst").await;
    let bob_token = next_batch(&sync(&bob, None, 0, None).await);
    let alice_token = next_batch(&sync(&alice, None, 0, None).await);

    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read.private/{}", enc(&room), enc(&message));
    bob.post(&path, &json!({})).await.expect(200);

    let body = sync(&bob, Some(&bob_token), 5000, None).await;
    let receipt =
        of_type(&joined(&body, &room)["ephemeral"], "m.receipt").pop().unwrap_or_else(|| panic!("{body}"));
    assert!(receipt["content"][&message]["m.read.private"][bob.user_id()].is_object(), "{receipt}");
    assert_eq!(counts(joined(&body, &room)), (0, 0), "a private receipt reads too: {body}");

    let body = sync(&alice, Some(&alice_token), 300, None).await;
    let leaked = of_type(&joined(&body, &room)["ephemeral"], "m.receipt");
    assert!(leaked.iter().all(|r| r["content"][&message]["m.read.private"].is_null()), "{leaked:?}");
    let initial = sync(&alice, None, 0, None).await;
    assert!(!initial.to_string().contains("m.read.private"), "{initial}");
}

#[tokio::test]
async fn read_markers_set_fully_read_room_account_data_and_the_read_receipt() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let message = send_text(&alice, &room, "read me").await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    let path = format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room));
    bob.post(&path, &json!({"m.fully_read": message, "m.read": message})).await.expect(200);

    let data_path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read",
        enc(bob.user_id()),
        enc(&room)
    );
    assert_eq!(bob.get(&data_path).await.expect(200)["event_id"], message);

    let body = sync(&bob, Some(&token), 5000, None).await;
    let section = joined(&body, &room);
    let marker =
        of_type(&section["account_data"], "m.fully_read").pop().unwrap_or_else(|| panic!("{section}"));
    assert_eq!(marker["content"]["event_id"], message);
    assert_eq!(counts(section), (0, 0), "{section}");
    let receipt = of_type(&section["ephemeral"], "m.receipt").pop().unwrap_or_else(|| panic!("{section}"));
    assert!(receipt["content"][&message]["m.read"][bob.user_id()].is_object(), "{receipt}");

    // A marker pointing at an event that does not exist in the room is refused.
    let bogus = json!({"m.fully_read": "$nope:localhost"});
    assert_eq!(bob.post(&path, &bogus).await.status, 404);
}

#[tokio::test]
async fn a_fully_read_receipt_moves_the_marker_without_a_public_receipt() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let message = send_text(&alice, &room, "long read").await;
    let alice_token = next_batch(&sync(&alice, None, 0, None).await);

    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.fully_read/{}", enc(&room), enc(&message));
    bob.post(&path, &json!({})).await.expect(200);
    let data_path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read",
        enc(bob.user_id()),
        enc(&room)
    );
    assert_eq!(bob.get(&data_path).await.expect(200)["event_id"], message);
    // The marker is Bob's own business: Alice hears nothing.
    let body = sync(&alice, Some(&alice_token), 300, None).await;
    assert!(joined(&body, &room).is_null(), "{body}");
}

#[tokio::test]
async fn unread_counts_always_match_the_timeline_sent_with_them() {
    let server = Server::start().await;
    let (alice, bob, room) = two_members(&server).await;
    let mut token = next_batch(&sync(&bob, None, 0, None).await);
    const MESSAGES: u64 = 40;
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                send_text(&alice, &room, &format!("message {i}")).await;
            }
        })
    };
    // Poll as fast as possible, so syncs land between an event's write and its push rules.
    let mut seen = 0;
    let started = Instant::now();
    while seen < MESSAGES {
        assert!(started.elapsed() < Duration::from_secs(60), "only {seen} messages arrived");
        let body = sync(&bob, Some(&token), 0, None).await;
        token = next_batch(&body);
        let section = joined(&body, &room);
        if section.is_null() {
            continue;
        }
        seen += timeline_ids(section).len() as u64;
        assert_eq!(counts(section), (seen, 0), "after {seen} messages: {section}");
    }
    sender.await.unwrap();
}
