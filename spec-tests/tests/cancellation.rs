//! Requests dropped half-way: a client that gives up (here an HTTP/2 stream reset after a
//! few milliseconds, which makes the server drop the request's future at whatever await it
//! had reached) must not leave an event half-published — stored but without its unread
//! counts or its push, never handed to the pushers, or its write set left behind as if a
//! crash had interrupted it. Every send is then retried with its transaction id, as clients
//! do, and the room must hold each message exactly once, with everything that follows from
//! it.

use std::time::Duration;

use spec_tests::{push_gateway::PushGateway, rooms::*, *};

const SENDS: usize = 120;

/// `PUT /send` over HTTP/2 with prior knowledge, given up after `timeout`; whether the
/// server answered first.
async fn send_impatiently(
    http: &reqwest::Client,
    sender: &Client,
    room: &str,
    txn: &str,
    timeout: Duration,
) -> bool {
    let path = room_path(room, &format!("send/m.room.message/{txn}"));
    http.put(format!("{}{path}", sender.base))
        .bearer_auth(sender.access_token.as_deref().expect("logged in"))
        .json(&json!({ "msgtype": "m.text", "body": txn }))
        .timeout(timeout)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn sends_abandoned_mid_request_are_published_whole_exactly_once() {
    let mut server = Server::start_with_config(
        "[rate_limits]\nenabled = false\n[outbound]\nallowed_networks = [\"127.0.0.0/8\"]\n",
    )
    .await;
    let alice = server.client().register("alice", "password-alice").await;
    let bob = server.client().register("bob", "password-bob").await;
    let room = alice.create_room(&json!({ "preset": "public_chat" })).await;
    bob.join_room(&room).await.expect(200);
    let gateway = PushGateway::start().await;
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone", "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": { "url": gateway.url() },
    });
    bob.post("/_matrix/client/v3/pushers/set", &pusher).await.expect(200);

    // Timeouts from 1 to 12 ms land the reset at every stage of a send on a debug build;
    // the sends run a few at a time, as a busy client's would.
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let txns: Vec<String> = (0..SENDS).map(|i| format!("abandoned-{i}")).collect();
    let mut answered = 0;
    for (wave, txns) in txns.chunks(4).enumerate() {
        let impatient = txns.iter().enumerate().map(|(i, txn)| {
            let timeout = Duration::from_micros(500 + 700 * ((wave * 4 + i) % 16) as u64);
            send_impatiently(&h2c, &alice, &room, txn, timeout)
        });
        answered += futures_util::future::join_all(impatient).await.into_iter().filter(|ok| *ok).count();
    }
    assert!(answered < SENDS, "no send was abandoned: the test proves nothing on a machine this fast");

    // The retries: each answers with the one event its transaction made.
    let mut event_ids = Vec::new();
    for txn in &txns {
        let reply = alice
            .put(
                &room_path(&room, &format!("send/m.room.message/{txn}")),
                &json!({ "msgtype": "m.text", "body": txn }),
            )
            .await;
        event_ids.push(reply.expect(200)["event_id"].as_str().expect("event_id").to_owned());
    }
    let distinct: std::collections::BTreeSet<&String> = event_ids.iter().collect();
    assert_eq!(distinct.len(), SENDS, "one event per transaction");

    let page = alice.messages(&room, "dir=b&limit=1000").await.expect(200);
    let mut bodies: Vec<String> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().expect("body").to_owned())
        .collect();
    bodies.sort();
    let mut expected = txns.clone();
    expected.sort();
    assert_eq!(bodies, expected, "each message is in the timeline exactly once");

    // Every message notifies Bob (a room of two is a one-to-one room): a send dropped
    // between its write and its notification would leave the count short.
    let sync = bob.get("/_matrix/client/v3/sync").await.expect(200);
    let counts = &sync["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(counts["notification_count"], SENDS, "{counts}");

    // And each reached Bob's phone: a send dropped before it handed its notification to
    // the pushers would leave a hole the gateway never hears about.
    let pushed = gateway.wait_for_events(SENDS, Duration::from_secs(20)).await;
    let pushed: std::collections::BTreeSet<&str> =
        pushed.iter().filter_map(|n| n["event_id"].as_str()).collect();
    assert_eq!(pushed, event_ids.iter().map(String::as_str).collect(), "one push per message");

    // Nothing is left half-done for the next start to find.
    server.stop().await;
    server.restart().await;
    let recovered = server.log_has_line(|line| line.contains("interrupted by a crash")).await;
    assert!(!recovered, "a clean restart found interrupted writes:\n{}", server.log_tail());
}
