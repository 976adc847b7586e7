//! The application-service API, proven by a framework nobody here wrote: a bridge-like bot
//! on mautrix-python (`spec-tests/appservice/bridge_bot.py`, see `spec_tests::appservice`)
//! runs against Myelin loaded with its registration file. The bot checks the homeserver at
//! start (versions, registering its bot user, whoami, the ping round trip), joins when
//! invited, and answers each message as a ghost user it registers, names and brings into
//! the room. A normal user may not take a name in its exclusive namespace.

use std::time::{Duration, Instant};

use spec_tests::{
    appservice::BridgeBot,
    rooms::{PASSWORD, room_path},
    *,
};

const WAIT: Duration = Duration::from_secs(30);
const SERVER_NAME: &str = "localhost";

/// Myelin with the bridge's registration loaded, and the bot running against it.
async fn server_with_bridge() -> (Server, BridgeBot) {
    let mut bot = BridgeBot::new(SERVER_NAME);
    // Top-level keys go before TEST_CONFIG's tables.
    let config = format!("server_name = \"{SERVER_NAME}\"\n{}{TEST_CONFIG}", bot.config_line());
    let server = Server::start_with_config(&config).await;
    bot.start(&server.base_url()).await;
    (server, bot)
}

/// Waits until `user` has joined `room`, as `client` sees the room's state.
async fn wait_for_join(client: &Client, room: &str, user: &str) {
    let start = Instant::now();
    let path = room_path(room, &format!("state/m.room.member/{}", enc(user)));
    loop {
        let member = client.get(&path).await;
        if member.body["membership"] == "join" {
            return;
        }
        assert!(start.elapsed() < WAIT, "{user} did not join {room}; its membership: {}", member.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The room's text messages, oldest first, as (sender, body).
async fn texts(client: &Client, room: &str) -> Vec<(String, String)> {
    let page = client.messages(room, "dir=b&limit=50").await.expect(200);
    let mut texts: Vec<(String, String)> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| {
            let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (field(&event["sender"]), field(&event["content"]["body"]))
        })
        .collect();
    texts.reverse();
    texts
}

#[tokio::test]
async fn a_mautrix_bridge_joins_when_invited_and_echoes_messages_as_a_named_ghost() {
    let (server, bot) = server_with_bridge().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bot_user = bot.bot_user_id();
    let ghost = bot.ghost_of("alice");

    // Invite-only: the ghost cannot join by itself, so the bot has to invite it.
    let room = alice.create_room(&json!({"preset": "private_chat", "name": "Bridged"})).await;
    alice.membership_action(&room, "invite", &bot_user).await.expect(200);
    wait_for_join(&alice, &room, &bot_user).await;

    alice.send_text(&room, "hello bridge").await;
    let echo = (ghost.clone(), "echo: hello bridge".to_owned());
    let start = Instant::now();
    loop {
        let texts = texts(&alice, &room).await;
        if texts.contains(&echo) {
            break;
        }
        assert!(start.elapsed() < WAIT, "no echo from {ghost} within {WAIT:?}; the room has {texts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The ghost is a real member of the room, under the name the bridge gave it.
    let member = alice.get_state(&room, "m.room.member", &ghost).await.expect(200);
    assert_eq!(member["membership"], "join", "{member}");
    assert_eq!(member["displayname"], "alice (echo)", "{member}");
    let profile = alice.get(&format!("/_matrix/client/v3/profile/{}", enc(&ghost))).await.expect(200);
    assert_eq!(profile["displayname"], "alice (echo)", "{profile}");

    // One echo for one message: the bridge ignores its own ghosts, so nothing loops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = texts(&alice, &room).await;
    assert_eq!(texts, [(alice.user_id().to_owned(), "hello bridge".to_owned()), echo], "{texts:?}");
}

#[tokio::test]
async fn normal_users_cannot_register_in_the_exclusive_namespace() {
    let (server, _bot) = server_with_bridge().await;
    let body = json!({"username": "echo_mallory", "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
    let refused = server.client().post("/_matrix/client/v3/register", &body).await;
    refused.expect_error(400, "M_EXCLUSIVE");
    // Outside the namespace, registration stays open.
    server.client().register("mallory", PASSWORD).await;
}
