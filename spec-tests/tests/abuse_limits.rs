//! Abuse limits per user (`[rate_limits]` `message`, `join`, `invite`, `media_upload`,
//! `to_device`): one user acting quickly past the burst gets `429 M_LIMIT_EXCEEDED` with
//! `retry_after_ms` and a `Retry-After` header, others are unaffected, the user acts again
//! after the wait, server admins are exempt, `enabled = false` turns them off, they are on
//! by default, and a limit that lets nothing through is refused with its key named.

use std::time::Duration;

use spec_tests::{
    admin_api::admin_client,
    rooms::{PASSWORD, room_path, txn_id},
    *,
};

/// Every per-user limit at a burst of 3, refilling one token every two seconds. Login and
/// registration are opened up: the tests register several users from one address.
const TIGHT: &str = "
[rate_limits.login]
per_second = 100.0
burst = 100
[rate_limits.register]
per_second = 100.0
burst = 100
[rate_limits.message]
per_second = 0.5
burst = 3
[rate_limits.join]
per_second = 0.5
burst = 3
[rate_limits.invite]
per_second = 0.5
burst = 3
[rate_limits.media_upload]
per_second = 0.5
burst = 3
[rate_limits.to_device]
per_second = 0.5
burst = 3
";

const UPLOAD: &str = "/_matrix/media/v3/upload";
const CREATE_MXC: &str = "/_matrix/media/v1/create";

/// Asserts a refusal for the rate limit and returns the wait it announces.
#[track_caller]
fn assert_limited(resp: &Resp) -> Duration {
    resp.expect_error(429, "M_LIMIT_EXCEEDED");
    let ms = resp.body["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("retry_after_ms: {}", resp.body));
    // One token refills in two seconds at 0.5 per second.
    assert!(ms > 0 && ms <= 2000, "retry_after_ms {ms}");
    let header = resp.headers.get("retry-after").expect("a Retry-After header").to_str().unwrap();
    // Whole seconds, rounded up as Synapse does, so a client waiting that long gets through.
    assert_eq!(header.parse::<u64>().unwrap(), ms.div_ceil(1000), "Retry-After {header} for {ms} ms");
    Duration::from_millis(ms)
}

/// Repeats `action` until the limit refuses it, and returns how many succeeded and the
/// refusal. A slow machine may refill a token between attempts, so a few more than the
/// burst may pass, but never fewer.
async fn until_limited<F, Fut>(burst: usize, mut action: F) -> (usize, Resp)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    for done in 0..burst + 10 {
        let resp = action().await;
        if resp.status == 429 {
            assert!(done >= burst, "limited after {done}, before the burst of {burst}: {}", resp.body);
            return (done, resp);
        }
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    panic!("never limited after {} attempts", burst + 10);
}

async fn send(client: &Client, room_id: &str, n: usize) -> Resp {
    client.send_event(room_id, "m.room.message", &json!({"msgtype": "m.text", "body": format!("{n}")})).await
}

async fn public_room(client: &Client) -> String {
    client.create_room(&json!({"preset": "public_chat"})).await
}

#[tokio::test]
async fn sends_past_the_burst_wait_for_a_token_and_room_creation_counts_once() {
    let server = Server::start_with_config(TIGHT).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    // Ten initial state events, a name and a topic: the creation is one send.
    let initial_state: Vec<Value> = (0..10)
        .map(|n| json!({"type": "org.example.setting", "state_key": format!("{n}"), "content": {"n": n}}))
        .collect();
    let room = alice
        .create_room(
            &json!({"name": "Busy", "topic": "t", "preset": "private_chat", "initial_state": initial_state}),
        )
        .await;
    let mut n = 0;
    let (_, refused) = until_limited(2, || {
        n += 1;
        send(&alice, &room, n)
    })
    .await;
    let wait = assert_limited(&refused);
    // State events and redactions draw on the same bucket.
    assert_limited(&alice.put_state(&room, "m.room.topic", "", &json!({"topic": "new"})).await);
    let redact = room_path(&room, &format!("redact/{}/{}", enc("$whatever"), txn_id()));
    assert_limited(&alice.put(&redact, &json!({})).await);
    assert_limited(&alice.post("/_matrix/client/v3/createRoom", &json!({})).await);

    // Bob has a bucket of his own.
    let bobs = bob.create_room(&json!({})).await;
    send(&bob, &bobs, 1).await.expect(200);
    // Reading is never limited.
    alice.messages(&room, "dir=b&limit=5").await.expect(200);

    tokio::time::sleep(wait).await;
    send(&alice, &room, 100).await.expect(200);
}

#[tokio::test]
async fn joins_and_knocks_past_the_burst_are_limited_but_leaving_is_not() {
    let server = Server::start_with_config(TIGHT).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = public_room(&bob).await;
    let (alice_ref, room_ref) = (&alice, &room);
    let (_, refused) = until_limited(3, || async move {
        let joined = alice_ref.join_room(room_ref).await;
        if joined.status == 200 {
            alice_ref.post(&room_path(room_ref, "leave"), &json!({})).await.expect(200);
        }
        joined
    })
    .await;
    let wait = assert_limited(&refused);
    assert_limited(&alice.post(&room_path(&room, "join"), &json!({})).await);
    assert_limited(&alice.knock_room(&room, &json!({})).await);

    carol.join_room(&room).await.expect(200);
    tokio::time::sleep(wait).await;
    alice.join_room(&room).await.expect(200);
}

#[tokio::test]
async fn invites_past_the_burst_are_limited() {
    let server = Server::start_with_config(TIGHT).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let mut invitees = vec![];
    for name in ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11", "u12", "u13"] {
        invitees.push(server.client().register(name, PASSWORD).await.user_id().to_owned());
    }
    let room = alice.create_room(&json!({})).await;
    let mut next = invitees.iter();
    let (done, refused) =
        until_limited(3, || alice.membership_action(&room, "invite", next.next().expect("enough invitees")))
            .await;
    let wait = assert_limited(&refused);

    let bobs = bob.create_room(&json!({})).await;
    bob.membership_action(&bobs, "invite", &invitees[done]).await.expect(200);
    tokio::time::sleep(wait).await;
    alice.membership_action(&room, "invite", &invitees[done]).await.expect(200);
}

#[tokio::test]
async fn uploads_past_the_burst_are_limited_and_a_reserved_upload_is_already_counted() {
    let server = Server::start_with_config(TIGHT).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let reserved = alice.post(CREATE_MXC, &json!({})).await.expect(200);
    let mxc = reserved["content_uri"].as_str().unwrap().to_owned();
    let (_, refused) = until_limited(2, || alice.request_raw("POST", UPLOAD, b"{}".to_vec())).await;
    let wait = assert_limited(&refused);
    assert_limited(&alice.post(CREATE_MXC, &json!({})).await);
    // Filling the reservation was paid for when it was made.
    let (server_name, media_id) = mxc.strip_prefix("mxc://").unwrap().split_once('/').unwrap();
    let fill = format!("{UPLOAD}/{}/{}", enc(server_name), enc(media_id));
    alice.request_raw("PUT", &fill, b"{}".to_vec()).await.expect(200);

    bob.request_raw("POST", UPLOAD, b"{}".to_vec()).await.expect(200);
    tokio::time::sleep(wait).await;
    alice.request_raw("POST", UPLOAD, b"{}".to_vec()).await.expect(200);
}

#[tokio::test]
async fn to_device_sends_past_the_burst_are_limited() {
    let server = Server::start_with_config(TIGHT).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let body = json!({"messages": {bob.user_id(): {"*": {"hello": "there"}}}});
    let path = || format!("/_matrix/client/v3/sendToDevice/m.test/{}", txn_id());
    let (alice_ref, body_ref) = (&alice, &body);
    let (_, refused) = until_limited(3, || {
        let path = path();
        async move { alice_ref.put(&path, body_ref).await }
    })
    .await;
    let wait = assert_limited(&refused);

    let back = json!({"messages": {alice.user_id(): {"*": {"hello": "back"}}}});
    bob.put(&path(), &back).await.expect(200);
    tokio::time::sleep(wait).await;
    alice.put(&path(), &body).await.expect(200);
}

#[tokio::test]
async fn server_admins_are_not_limited() {
    let server = Server::start_with_config(TIGHT).await;
    let admin = admin_client(&server, "root").await;
    let room = admin.create_room(&json!({})).await;
    for n in 0..12 {
        send(&admin, &room, n).await.expect(200);
    }
    for _ in 0..8 {
        admin.request_raw("POST", UPLOAD, b"{}".to_vec()).await.expect(200);
    }
}

#[tokio::test]
async fn enabled_false_turns_every_limit_off() {
    let server = Server::start_with_config(&format!("[rate_limits]\nenabled = false\n{TIGHT}")).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    for n in 0..12 {
        send(&alice, &room, n).await.expect(200);
    }
    for _ in 0..8 {
        alice.request_raw("POST", UPLOAD, b"{}".to_vec()).await.expect(200);
    }
}

#[tokio::test]
async fn the_limits_are_on_by_default_and_let_a_chatty_burst_through() {
    // The built-in defaults, apart from open registration (which the harness adds).
    let server = Server::start_with_config("").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    // The default burst is 50 and creating the room took one.
    let mut n = 0;
    let (_, refused) = until_limited(49, || {
        n += 1;
        send(&alice, &room, n)
    })
    .await;
    refused.expect_error(429, "M_LIMIT_EXCEEDED");
    // Someone else in the room is not held up by it.
    let bob = server.client().register("bob", PASSWORD).await;
    bob.join_room(&room).await.expect(200);
    send(&bob, &room, 0).await.expect(200);
}

#[tokio::test]
async fn a_limit_that_lets_nothing_through_is_refused_by_config_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[rate_limits.message]\nper_second = -1.0\n", "rate_limits.message.per_second"),
        ("[rate_limits.join]\nburst = 0\n", "rate_limits.join.burst"),
        ("[rate_limits.invite]\nburst = -2\n", "rate_limits.invite.burst"),
        ("[rate_limits.to_device]\nper_second = 0\n", "rate_limits.to_device.per_second"),
    ] {
        let config = dir.path().join("myelin.toml");
        std::fs::write(&config, text).unwrap();
        let checked = myelin_command().args(["config", "check"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(!checked.status.success(), "{text}: passed the check");
        assert!(stderr.contains(key), "{text}: {stderr}");

        let served = myelin_command()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&served.stderr);
        assert!(!served.status.success(), "{text}: the server started");
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
}
