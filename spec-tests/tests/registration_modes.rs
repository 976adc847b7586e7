//! Registration when it is not open: `mode = "token"` (the `m.login.registration_token`
//! stage, tokens made with `myelin token create`, their use count and the v1 validity
//! endpoint) and `mode = "disabled"` (every door refused with `M_FORBIDDEN`).

use spec_tests::*;

const REGISTER: &str = "/_matrix/client/v3/register";
const TOKEN_MODE: &str = "[registration]\nmode = \"token\"\n[rate_limits]\nenabled = false\n";
const DISABLED_MODE: &str = "[registration]\nmode = \"disabled\"\n[rate_limits]\nenabled = false\n";

fn validity(token: &str) -> String {
    format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={}", enc(token))
}

/// Creates a registration token with the CLI and returns it.
fn create_token(server: &Server, uses: &str) -> String {
    let out = cli_ok(&server.cli(&["token", "create", "--uses", uses, "--json"], None));
    let reply: Value = serde_json::from_str(&out).expect("JSON reply");
    reply["token"]["token"].as_str().expect("token in reply").to_owned()
}

fn register_with_token(username: &str, token: &str, session: Option<&str>) -> Value {
    let mut auth = json!({"type": "m.login.registration_token", "token": token});
    if let Some(session) = session {
        auth["session"] = json!(session);
    }
    json!({"username": username, "password": "pw", "auth": auth})
}

#[tokio::test]
async fn token_mode_offers_only_the_registration_token_stage() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let resp = server.client().post(REGISTER, &json!({"username": "alice", "password": "pw"})).await;
    uia_session(&resp, "m.login.registration_token");
    let stages: Vec<&Value> =
        resp.body["flows"].as_array().unwrap().iter().flat_map(|f| f["stages"].as_array().unwrap()).collect();
    assert!(!stages.iter().any(|s| *s == "m.login.dummy"), "dummy must not be offered: {}", resp.body);
    // Skipping the token with a dummy stage does not work.
    let resp = server
        .client()
        .post(REGISTER, &json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}))
        .await;
    uia_session(&resp, "m.login.registration_token");
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);
}

#[tokio::test]
async fn a_single_use_token_registers_once_and_is_then_refused() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let client = server.client();
    let token = create_token(&server, "1");
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], true);

    let challenge = client.post(REGISTER, &json!({"username": "alice", "password": "pw"})).await;
    let session = uia_session(&challenge, "m.login.registration_token");
    let body = client.post(REGISTER, &register_with_token("alice", &token, Some(&session))).await.expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    assert!(body["access_token"].is_string());

    // Spent: validity says so, and a second registration is refused with the flows again.
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], false);
    let resp = client.post(REGISTER, &register_with_token("bob", &token, None)).await;
    uia_session(&resp, "m.login.registration_token");
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);
    client.login("alice", "pw").await;
    client.post("/_matrix/client/v3/login", &login_body("bob", "pw")).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn unknown_and_revoked_tokens_are_invalid() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let client = server.client();
    assert_eq!(client.get(&validity("no-such-token")).await.expect(200)["valid"], false);
    let resp = client.post(REGISTER, &register_with_token("alice", "no-such-token", None)).await;
    uia_session(&resp, "m.login.registration_token");
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);

    let token = create_token(&server, "5");
    cli_ok(&server.cli(&["token", "revoke", &token], None));
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], false);
    let resp = client.post(REGISTER, &register_with_token("alice", &token, None)).await;
    assert_eq!((resp.status, resp.errcode()), (401, "M_FORBIDDEN"), "{}", resp.body);
}

#[tokio::test]
async fn token_validity_needs_the_token_parameter() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    server
        .client()
        .get("/_matrix/client/v1/register/m.login.registration_token/validity")
        .await
        .expect_error(400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn a_taken_username_is_refused_before_the_token_is_spent() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let client = server.client();
    let token = create_token(&server, "2");
    client.post(REGISTER, &register_with_token("alice", &token, None)).await.expect(200);
    client
        .post(REGISTER, &register_with_token("alice", &token, None))
        .await
        .expect_error(400, "M_USER_IN_USE");
    // The refused attempt did not count: one use is left.
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], true);
    client.post(REGISTER, &register_with_token("bob", &token, None)).await.expect(200);
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], false);
}

#[tokio::test]
async fn disabled_mode_refuses_registration_and_token_checks() {
    let server = Server::start_with_config(DISABLED_MODE).await;
    let client = server.client();
    client
        .post(REGISTER, &json!({"username": "alice", "password": "pw"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    client
        .post(REGISTER, &json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    client.get(&validity("anything")).await.expect_error(403, "M_FORBIDDEN");
    // The administrator's door still works.
    cli_ok(&server.cli(&["user", "create", "alice", "--password-stdin"], Some("pw\n")));
    client.login("alice", "pw").await;
}

#[tokio::test]
async fn open_mode_has_no_registration_tokens() {
    let server = Server::start().await;
    server.client().get(&validity("anything")).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_single_use_token_spent_concurrently_registers_only_one_account() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let client = server.client();
    let token = create_token(&server, "1");
    let (alice, bob) = (register_with_token("alice", &token, None), register_with_token("bob", &token, None));
    let (a, b) = tokio::join!(client.post(REGISTER, &alice), client.post(REGISTER, &bob));
    let refused = match (a.status, b.status) {
        (200, _) => &b,
        (_, 200) => &a,
        _ => panic!("neither registered: {} / {}", a.body, b.body),
    };
    // Refused like any spent token, whether the check or the commit saw it spent.
    uia_session(refused, "m.login.registration_token");
    assert_eq!(refused.errcode(), "M_FORBIDDEN", "{}", refused.body);
    assert_eq!(client.get(&validity(&token)).await.expect(200)["valid"], false);
    let list = cli_ok(&server.cli(&["token", "list", "--json"], None));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["tokens"][0]["completed"], 1, "{list}");
}
