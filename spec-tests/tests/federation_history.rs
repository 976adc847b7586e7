//! Reading a room's history over federation: `GET /timestamp_to_event`, asked by a server
//! with a member in the room, and refused to one without.

mod federation_support;
mod sync_support;

use federation_support::{
    Feed,
    signing::{signing_key_of, x_matrix},
};
use spec_tests::{rooms::*, *};

#[tokio::test]
async fn a_server_in_the_room_finds_the_event_nearest_a_time() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let b_key = signing_key_of(&b);
    let ask = |ts: u64, dir: &str| {
        let uri = format!("/_matrix/federation/v1/timestamp_to_event/{}?ts={ts}&dir={dir}", enc(&room));
        let header = x_matrix(&b_key, &b.server_name(), &a.server_name(), "GET", &uri, None);
        let federation = a.federation_client();
        async move { federation.request_with("GET", &uri, &[("authorization", &header)], None).await }
    };

    // B has no member yet: the room's history is not its to read.
    ask(1_000, "f").await.expect_error(403, "M_FORBIDDEN");

    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let join = format!("/_matrix/client/v3/join/{}?via={}", enc(&room), enc(&a.server_name()));
    bob.post(&join, &json!({})).await.expect(200);
    alice_feed.membership(&room, bob.user_id(), "join").await;
    let before = alice.send_text(&room, "before").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let after = alice.send_text(&room, "after").await;

    let backwards = ask(now, "b").await.expect(200);
    assert_eq!(backwards["event_id"], before.as_str(), "{backwards}");
    assert!(backwards["origin_server_ts"].as_u64().unwrap() <= now);
    let forwards = ask(now, "f").await.expect(200);
    assert_eq!(forwards["event_id"], after.as_str(), "{forwards}");
    ask(now + 3_600_000, "f").await.expect_error(404, "M_NOT_FOUND");
}
