//! The example bot (`examples/bot`, on matrix-sdk) against a real Myelin: it accepts an
//! invitation that waited for it and one that arrives while it runs, answers `!ping` with
//! `pong` in both rooms, and leaves other messages, its own and those from before it
//! started alone.

use std::time::{Duration, Instant};

use spec_tests::{
    rooms::{PASSWORD, room_path},
    *,
};

const WAIT: Duration = Duration::from_secs(30);

/// The bodies of the room's text messages, oldest first, with their senders.
async fn texts(client: &Client, room: &str) -> Vec<(String, String)> {
    let page = client.messages(room, "dir=b&limit=50").await.expect(200);
    let mut texts: Vec<(String, String)> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| {
            (
                event["sender"].as_str().unwrap().to_owned(),
                event["content"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    texts.reverse();
    texts
}

/// Waits until `done` holds for the room's messages, and returns them.
async fn wait_for(
    client: &Client,
    room: &str,
    what: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let texts = texts(client, room).await;
        if done(&texts) {
            return texts;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}: {texts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_join(client: &Client, room: &str, user: &str) {
    let start = Instant::now();
    let path = room_path(room, &format!("state/m.room.member/{}", enc(user)));
    while client.get(&path).await.body["membership"] != "join" {
        assert!(start.elapsed() < WAIT, "{user} did not join {room}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_bot_joins_when_invited_and_answers_ping() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    server.client().register("echo", "pw-echo").await;
    let bot = "@echo:localhost";

    // Invited, and pinged, before the bot runs: it joins, but that old ping is history.
    let waiting = alice.create_room(&json!({"invite": [bot]})).await;
    alice.send_text(&waiting, "!ping").await;

    let client =
        myelin_echo_bot::login(&server.base_url(), "echo", "pw-echo").await.expect("the bot logs in");
    let task = tokio::spawn(myelin_echo_bot::run(client));
    wait_for_join(&alice, &waiting, bot).await;

    let fresh = alice.create_room(&json!({"invite": [bot]})).await;
    wait_for_join(&alice, &fresh, bot).await;
    for room in [&waiting, &fresh] {
        alice.send_text(room, "hello").await;
        alice.send_text(room, "!ping").await;
        let texts =
            wait_for(&alice, room, "pong", |texts| texts.iter().any(|(_, body)| body == "pong")).await;
        let pongs: Vec<usize> =
            texts.iter().enumerate().filter(|(_, (_, body))| body == "pong").map(|(i, _)| i).collect();
        assert_eq!(pongs.len(), 1, "one pong for the one ping since it started: {texts:?}");
        assert_eq!(texts[pongs[0]].0, bot, "{texts:?}");
        assert_eq!(texts[pongs[0] - 1].1, "!ping", "the pong follows the ping: {texts:?}");
    }
    // Nothing else is answered: a while later there is still one pong per room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for room in [&waiting, &fresh] {
        let texts = texts(&alice, room).await;
        assert_eq!(texts.iter().filter(|(sender, _)| sender == bot).count(), 1, "{texts:?}");
    }
    assert!(!task.is_finished(), "the bot keeps syncing");
    task.abort();
}
