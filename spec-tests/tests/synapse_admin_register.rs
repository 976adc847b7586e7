//! Synapse-compatible admin API: shared-secret registration (`/_synapse/admin/v1/register`),
//! proven with Synapse's own `register_new_matrix_user` script, and `v1/server_version`
//! (which anyone may ask, as on Synapse).

use std::process::Command;

use spec_tests::{admin_api::*, rooms::PASSWORD, *};

const SECRET: &str = "a shared secret for tests";
const REGISTER: &str = "/_synapse/admin/v1/register";

/// A server with registration closed and the shared secret set as given.
async fn server_with(secret_setting: &str) -> Server {
    Server::start_with_config(&format!(
        "{TEST_CONFIG}\n[registration]\nmode = \"disabled\"\n{secret_setting}\n"
    ))
    .await
}

/// Runs `register_new_matrix_user` against the server; returns its exit status and output.
async fn run_script(server: &Server, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(register_new_matrix_user());
    command.args(args).arg(server.base_url());
    let output = tokio::task::spawn_blocking(move || command.output().expect("run register_new_matrix_user"))
        .await
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn register_new_matrix_user_creates_users_who_can_log_in() {
    let server = server_with(&format!("shared_secret = {SECRET:?}")).await;
    let (ok, out) = run_script(&server, &["-u", "alice", "-p", PASSWORD, "--no-admin", "-k", SECRET]).await;
    assert!(ok && out.contains("Success"), "{out}");
    let alice = server.client().login("alice", PASSWORD).await;
    assert_eq!(alice.user_id(), "@alice:localhost");
    // Not an admin: the admin API refuses her.
    alice.get(&admin_path("v2/users")).await.expect_error(403, "M_FORBIDDEN");

    let (ok, out) = run_script(&server, &["-u", "Root", "-p", PASSWORD, "-a", "-k", SECRET]).await;
    assert!(ok, "{out}");
    let root = server.client().login("root", PASSWORD).await;
    let details = root.get(&user_path("v2/users", "@root:localhost", "")).await.expect(200);
    assert_eq!(details["admin"], true, "{details}");

    // The same name again: the script reports the clash and fails.
    let (ok, out) = run_script(&server, &["-u", "alice", "-p", "other", "--no-admin", "-k", SECRET]).await;
    assert!(!ok && out.contains("already exists"), "{out}");
    // A wrong secret is refused.
    let (ok, out) = run_script(&server, &["-u", "mallory", "-p", PASSWORD, "-a", "-k", "guess"]).await;
    assert!(!ok && out.contains("HMAC incorrect"), "{out}");
    server
        .client()
        .post("/_matrix/client/v3/login", &login_body("mallory", PASSWORD))
        .await
        .expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn the_secret_can_live_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registration_secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let server = server_with(&format!("shared_secret_path = {:?}", file.display().to_string())).await;
    let (ok, out) = run_script(&server, &["-u", "bob", "-p", PASSWORD, "--no-admin", "-k", SECRET]).await;
    assert!(ok, "{out}");
    server.client().login("bob", PASSWORD).await;
}

#[tokio::test]
async fn without_a_secret_the_door_is_closed() {
    let server = Server::start().await;
    server.client().get(REGISTER).await.expect_error(403, "M_FORBIDDEN");
    let body = json!({"nonce": "n", "username": "eve", "password": "pw", "mac": "00"});
    server.client().post(REGISTER, &body).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn nonces_are_single_use_and_bad_requests_are_refused() {
    let server = server_with(&format!("shared_secret = {SECRET:?}")).await;
    let client = server.client();
    let nonce = || async { client.get(REGISTER).await.expect(200)["nonce"].as_str().unwrap().to_owned() };
    let first = nonce().await;
    assert_ne!(first, nonce().await, "every nonce is new");

    let wrong_mac =
        json!({"nonce": first, "username": "eve", "password": "pw", "admin": true, "mac": "0123abcd"});
    client.post(REGISTER, &wrong_mac).await.expect_error(403, "M_FORBIDDEN");
    // Spent by the failed attempt.
    client.post(REGISTER, &wrong_mac).await.expect_error(400, "M_INVALID_PARAM");
    let never_issued = json!({"nonce": "made-up", "username": "eve", "password": "pw", "mac": "00"});
    client.post(REGISTER, &never_issued).await.expect_error(400, "M_INVALID_PARAM");

    for missing in ["nonce", "username", "password", "mac"] {
        let mut body = json!({"nonce": nonce().await, "username": "eve", "password": "pw", "mac": "00"});
        body.as_object_mut().unwrap().remove(missing);
        let resp = client.post(REGISTER, &body).await;
        resp.expect_error(400, "M_BAD_JSON");
        assert!(resp.body["error"].as_str().unwrap().contains(missing), "{}", resp.body);
    }
    client.request_raw("POST", REGISTER, "{not json").await.expect_error(400, "M_NOT_JSON");
    let wrong_type = json!({"nonce": nonce().await, "username": 7, "password": "pw", "mac": "00"});
    client.post(REGISTER, &wrong_type).await.expect_error(400, "M_BAD_JSON");
    let with_nul = json!({"nonce": nonce().await, "username": "e\u{0}ve", "password": "pw", "mac": "00"});
    client.post(REGISTER, &with_nul).await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn server_version_answers_anyone_as_on_synapse() {
    // synapse-admin asks before anyone has signed in, to show the version on its login page.
    let server = Server::start().await;
    let path = admin_path("v1/server_version");
    let body = server.client().get(&path).await.expect(200);
    assert!(body["server_version"].as_str().is_some_and(|v| v.starts_with("Myelin ")), "{body}");
    let user = server.client().register("alice", PASSWORD).await;
    user.get(&path).await.expect(200);
    // The call is logged like every admin API call.
    let logged = server.log_has_line(|l| l.contains("admin API call") && l.contains("server_version")).await;
    assert!(logged, "no log line for the call");
}
