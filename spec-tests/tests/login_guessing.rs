//! Guessing one account's password (`[rate_limits] failed_login`, on by default): after
//! the burst of wrong passwords the account's next attempts are refused with
//! `429 M_LIMIT_EXCEEDED` before the password is even checked — the right one too, or the
//! limit would tell a guesser when they hit it — from any address, at login and in
//! user-interactive auth alike, while other accounts log in as usual. The allowance comes
//! back with time, and `enabled = false` turns it off.

use std::time::Duration;

use spec_tests::{rooms::PASSWORD, *};

/// The per-IP login limit is opened, so only the per-account one can refuse. Wrong
/// guesses come back one every two seconds.
const CONFIG: &str = "
[rate_limits.login]
per_second = 100.0
burst = 100
[rate_limits.register]
per_second = 100.0
burst = 100
[rate_limits.failed_login]
per_second = 0.5
burst = 3
";

async fn login(server: &Server, user: &str, password: &str) -> Resp {
    server.client().post("/_matrix/client/v3/login", &login_body(user, password)).await
}

#[tokio::test]
async fn wrong_passwords_past_the_burst_lock_the_account_for_a_while() {
    let server = Server::start_with_config(CONFIG).await;
    server.client().register("alice", PASSWORD).await;
    server.client().register("bob", PASSWORD).await;

    for _ in 0..3 {
        login(&server, "alice", "guess").await.expect_error(403, "M_FORBIDDEN");
    }
    let refused = login(&server, "alice", PASSWORD).await;
    refused.expect_error(429, "M_LIMIT_EXCEEDED");
    let wait = refused.body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 2000, "one guess back within two seconds: {wait}");
    // The full user id is the same account.
    login(&server, "@alice:localhost", PASSWORD).await.expect_error(429, "M_LIMIT_EXCEEDED");
    // Others are not held up.
    login(&server, "bob", PASSWORD).await.expect(200);

    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    login(&server, "alice", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn user_interactive_auth_counts_the_same_guesses() {
    let server = Server::start_with_config(CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let device = alice.get("/_matrix/client/v3/account/whoami").await.expect(200)["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = |password: &'static str| {
        let alice = alice.clone();
        let path = format!("/_matrix/client/v3/devices/{device}");
        async move {
            let first = alice.delete(&path, Some(&json!({}))).await;
            let session = uia_session(&first, "m.login.password");
            alice
                .delete(&path, Some(&json!({"auth": password_auth("alice", password, Some(&session))})))
                .await
        }
    };
    for _ in 0..3 {
        let wrong = delete("guess").await;
        assert_eq!(wrong.status, 401, "a wrong password asks again: {}", wrong.body);
    }
    delete(PASSWORD).await.expect_error(429, "M_LIMIT_EXCEEDED");
    login(&server, "alice", PASSWORD).await.expect_error(429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn enabled_false_lets_every_guess_be_checked() {
    let server = Server::start_with_config(&format!("{CONFIG}\n[rate_limits]\nenabled = false\n")).await;
    server.client().register("alice", PASSWORD).await;
    for _ in 0..6 {
        login(&server, "alice", "guess").await.expect_error(403, "M_FORBIDDEN");
    }
    login(&server, "alice", PASSWORD).await.expect(200);
}
