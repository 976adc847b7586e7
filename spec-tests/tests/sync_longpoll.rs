//! Long-polling `/sync`: prompt wake-ups, honest timeouts, and exactly-once, in-order
//! delivery while other users send concurrently.

mod sync_support;

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use spec_tests::*;
use sync_support::*;

#[tokio::test]
async fn a_long_poll_returns_within_a_second_of_another_users_message() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let body = sync(&bob, Some(&token), 30_000, None).await;
            (body, Instant::now())
        })
    };
    // Let the long-poll settle into its wait before the message arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    let message = send_text(&alice, &room, "wake up").await;

    let (body, returned_at) =
        tokio::time::timeout(Duration::from_secs(10), poll).await.expect("poll").unwrap();
    assert!(returned_at.duration_since(sent_at) < Duration::from_secs(1), "took {:?}", returned_at - sent_at);
    assert_eq!(timeline_ids(joined(&body, &room)), vec![message], "{body}");
}

#[tokio::test]
async fn a_long_poll_with_nothing_new_waits_out_its_timeout_and_returns_no_rooms() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);

    let started = Instant::now();
    let body = sync(&alice, Some(&token), 700, None).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(650), "returned early after {waited:?}: {body}");
    assert!(waited < Duration::from_secs(5), "overslept: {waited:?}");
    assert!(joined(&body, &room).is_null(), "{body}");
    assert!(body["next_batch"].is_string());
}

#[tokio::test]
async fn a_long_poll_ignores_messages_in_rooms_the_user_is_not_in() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    let token = next_batch(&sync(&bob, None, 0, None).await);

    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move { sync(&bob, Some(&token), 1000, None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(&alice, &room, "not for bob").await;
    let body = poll.await.unwrap();
    assert!(joined(&body, &room).is_null(), "{body}");
    assert!(body["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()), "{body}");
}

/// Senders per room and messages per sender.
const SENDERS: usize = 3;
const PER_SENDER: usize = 25;

#[tokio::test]
async fn a_hundred_incremental_syncs_with_concurrent_senders_deliver_every_event_once_in_order() {
    let server = Server::start().await;
    let reader = server.client().register("reader", "password-r").await;
    let mut rooms = Vec::new();
    let mut senders = Vec::new();
    for r in 0..2 {
        let room = public_room(&reader).await;
        for s in 0..SENDERS {
            let sender = server.client().register(&format!("sender{r}x{s}"), "password-s").await;
            join(&sender, &room).await;
            senders.push((sender, room.clone()));
        }
        rooms.push(room);
    }
    // A timeline limit far above what can pile up between two syncs: no gap is acceptable.
    let filter = r#"{"room":{"timeline":{"limit":500}}}"#;
    let mut token = next_batch(&sync(&reader, None, 0, Some(filter)).await);

    let mut tasks = Vec::new();
    for (sender, room) in senders {
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..PER_SENDER {
                sent.push(send_text(&sender, &room, &format!("{} #{i}", sender.user_id())).await);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            sent
        }));
    }

    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut absorb = |body: &Value| {
        for room in &rooms {
            let section = joined(body, room);
            if section.is_null() {
                continue;
            }
            assert!(!section["timeline"]["limited"].as_bool().unwrap_or(false), "a gap: {section}");
            received.entry(room.clone()).or_default().extend(timeline_ids(section));
        }
    };
    for _ in 0..100 {
        let body = sync(&reader, Some(&token), 200, Some(filter)).await;
        absorb(&body);
        token = next_batch(&body);
    }
    let mut sent: HashSet<String> = HashSet::new();
    for task in tasks {
        sent.extend(
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("senders finish").unwrap(),
        );
    }
    // Whatever arrived after the hundredth sync.
    let body = sync(&reader, Some(&token), 0, Some(filter)).await;
    absorb(&body);

    let mut delivered = HashSet::new();
    for room in &rooms {
        let ids = received.get(room).cloned().unwrap_or_default();
        for id in &ids {
            assert!(delivered.insert(id.clone()), "{id} delivered twice");
        }
        let history: Vec<String> = messages_all(&reader, room)
            .await
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
        let synced: Vec<String> = ids.into_iter().filter(|id| history.contains(id)).collect();
        assert_eq!(synced, history, "sync order differs from /messages order in {room}");
    }
    let missing: Vec<&String> = sent.iter().filter(|id| !delivered.contains(*id)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(sent.len(), 2 * SENDERS * PER_SENDER);
}

#[tokio::test]
async fn long_polls_wake_promptly_while_rooms_they_are_not_in_are_busy() {
    // The busy writers flood on purpose.
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    // Writers in rooms Bob is not in keep earlier stream positions in flight all the time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut busy = Vec::new();
    for i in 0..3 {
        let other = server.client().register(&format!("busy{i}"), "password-x").await;
        let stop = stop.clone();
        busy.push(tokio::spawn(async move {
            let elsewhere = public_room(&other).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send_text(&other, &elsewhere, "noise").await;
            }
        }));
    }

    let mut token = next_batch(&sync(&bob, None, 0, None).await);
    for round in 0..40 {
        let poll = {
            let (bob, token) = (bob.clone(), token.clone());
            tokio::spawn(async move { (sync(&bob, Some(&token), 30_000, None).await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent_at = Instant::now();
        let message = send_text(&alice, &room, &format!("round {round}")).await;
        let (body, returned_at) =
            tokio::time::timeout(Duration::from_secs(10), poll).await.expect("long-poll stalled").unwrap();
        let latency = returned_at.saturating_duration_since(sent_at);
        assert!(latency < Duration::from_secs(1), "round {round} took {latency:?}");
        assert_eq!(timeline_ids(joined(&body, &room)), vec![message], "round {round}: {body}");
        token = next_batch(&body);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in busy {
        task.await.unwrap();
    }
}
