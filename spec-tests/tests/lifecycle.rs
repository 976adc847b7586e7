//! The server process: what a client saw succeed survives `kill -9` (docs/architecture.md,
//! decision 4), SIGTERM shuts down cleanly with exit status 0, and the data directory
//! outlives restarts.

use spec_tests::*;

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn a_registration_survives_kill_9_right_after_the_response() {
    let mut server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    server.kill9();
    server.restart().await;
    let body = alice.get(WHOAMI).await.expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    server.client().login("alice", "pw-alice").await;
}

#[tokio::test]
async fn acknowledged_account_changes_survive_kill_9() {
    let mut server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "old-pw").await;
    let other = client.login("alice", "old-pw").await;
    alice
        .post(
            "/_matrix/client/v3/account/password",
            &json!({"new_password": "new-pw", "auth": password_auth("alice", "old-pw", None)}),
        )
        .await
        .expect(200);
    alice
        .put(
            &format!("/_matrix/client/v3/devices/{}", alice.device_id.clone().unwrap()),
            &json!({"display_name": "Desk"}),
        )
        .await
        .expect(200);
    server.kill9();
    server.restart().await;

    other.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    client
        .post("/_matrix/client/v3/login", &login_body("alice", "old-pw"))
        .await
        .expect_error(403, "M_FORBIDDEN");
    client.login("alice", "new-pw").await;
    let device = alice
        .get(&format!("/_matrix/client/v3/devices/{}", alice.device_id.clone().unwrap()))
        .await
        .expect(200);
    assert_eq!(device["display_name"], "Desk");
}

#[tokio::test]
async fn sigterm_stops_the_server_with_status_0_and_data_survives() {
    let mut server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let status = server.stop().await;
    assert!(status.success(), "exit status {status}; log:\n{}", server.log_tail());
    assert!(!server.data_dir().join("admin.sock").exists(), "the admin socket is removed on shutdown");
    server.restart().await;
    alice.get(WHOAMI).await.expect(200);
}

#[tokio::test]
async fn sigterm_with_an_idle_keep_alive_connection_still_exits_promptly() {
    let mut server = Server::start().await;
    let client = server.client();
    // reqwest keeps this connection open for reuse.
    client.get("/_matrix/client/versions").await.expect(200);
    let started = std::time::Instant::now();
    let status = server.stop().await;
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn sigterm_right_after_startup_is_still_a_clean_shutdown() {
    // The server announces it is listening only once SIGTERM is handled, so a stop that
    // follows the announcement at once must not kill it mid-start.
    for _ in 0..20 {
        let mut server = Server::start().await;
        let status = server.stop().await;
        assert!(status.success(), "exit status {status}; log:\n{}", server.log_tail());
    }
}
