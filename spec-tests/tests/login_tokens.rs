//! Login tokens (spec v1.7): `POST /login/get_token` behind `m.login.password` UIA, and
//! `m.login.token` in `GET`/`POST /login`; single use, refused once spent, unknown or
//! belonging to a deactivated account; all of it off unless `login.token_login` is on.

use spec_tests::*;

const LOGIN: &str = "/_matrix/client/v3/login";
const GET_TOKEN: &str = "/_matrix/client/v1/login/get_token";
const CAPABILITIES: &str = "/_matrix/client/v3/capabilities";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

const TOKEN_LOGIN: &str = r#"
[login]
token_login = true
[rate_limits]
enabled = false
"#;

fn login_types(body: &Value) -> Vec<Value> {
    body["flows"].as_array().unwrap_or_else(|| panic!("no flows: {body}")).clone()
}

/// Asks for a login token as `client` (user `user`, password `password`), through UIA.
async fn get_token(client: &Client, user: &str, password: &str) -> Value {
    let challenge = client.post(GET_TOKEN, &json!({})).await;
    let session = uia_session(&challenge, "m.login.password");
    client.post(GET_TOKEN, &json!({"auth": password_auth(user, password, Some(&session))})).await.expect(200)
}

fn token_login(token: &str) -> Value {
    json!({"type": "m.login.token", "token": token})
}

#[tokio::test]
async fn without_the_config_there_are_no_login_tokens() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;

    let flows = login_types(&server.client().get(LOGIN).await.expect(200));
    assert!(flows.iter().all(|f| f["type"] != "m.login.token"), "{flows:?}");
    alice.post(GET_TOKEN, &json!({})).await.expect_error(404, "M_UNRECOGNIZED");
    let caps = alice.get(CAPABILITIES).await.expect(200);
    assert_eq!(caps["capabilities"]["m.get_login_token"], json!({"enabled": false}), "{caps}");
    // Not offered, so an unsupported login type.
    server.client().post(LOGIN, &token_login("anything")).await.expect_error(400, "M_UNKNOWN");
}

#[tokio::test]
async fn a_login_token_logs_another_client_in_once() {
    let server = Server::start_with_config(TOKEN_LOGIN).await;
    let alice = server.client().register("alice", "pw").await;

    let flows = login_types(&server.client().get(LOGIN).await.expect(200));
    let token_flow =
        flows.iter().find(|f| f["type"] == "m.login.token").unwrap_or_else(|| panic!("{flows:?}"));
    assert_eq!(token_flow["get_login_token"], true, "{flows:?}");
    let caps = alice.get(CAPABILITIES).await.expect(200);
    assert_eq!(caps["capabilities"]["m.get_login_token"], json!({"enabled": true}), "{caps}");

    let issued = get_token(&alice, "alice", "pw").await;
    assert_eq!(issued["expires_in_ms"], 120_000, "{issued}");
    let token = issued["login_token"].as_str().unwrap_or_else(|| panic!("{issued}"));

    let mut body = token_login(token);
    body["initial_device_display_name"] = json!("Phone");
    let reply = server.client().post(LOGIN, &body).await.expect(200);
    assert_eq!(reply["user_id"], alice.user_id());
    assert_ne!(reply["device_id"].as_str(), alice.device_id.as_deref(), "a new device");
    let phone = server.client().with_token(reply["access_token"].as_str().unwrap());
    assert_eq!(phone.get(WHOAMI).await.expect(200)["user_id"], alice.user_id());
    let device =
        phone.get(&format!("/_matrix/client/v3/devices/{}", reply["device_id"].as_str().unwrap())).await;
    assert_eq!(device.expect(200)["display_name"], "Phone");

    // Single use, and unknown tokens are refused the same way.
    server.client().post(LOGIN, &token_login(token)).await.expect_error(403, "M_FORBIDDEN");
    server.client().post(LOGIN, &token_login("myl_login_nosuchtoken")).await.expect_error(403, "M_FORBIDDEN");
    // Each token is new.
    let again = get_token(&alice, "alice", "pw").await;
    assert_ne!(again["login_token"], issued["login_token"]);
    server.client().post(LOGIN, &token_login(again["login_token"].as_str().unwrap())).await.expect(200);
}

#[tokio::test]
async fn a_login_token_needs_the_password_every_time_and_an_access_token() {
    let server = Server::start_with_config(TOKEN_LOGIN).await;
    let alice = server.client().register("alice", "pw").await;
    server.client().register("bob", "pw-bob").await;

    server.client().post(GET_TOKEN, &json!({})).await.expect_error(401, "M_MISSING_TOKEN");
    // Asked again after a success: the spec wants consent for every new client.
    get_token(&alice, "alice", "pw").await;
    let challenge = alice.post(GET_TOKEN, &json!({})).await;
    let session = uia_session(&challenge, "m.login.password");
    let wrong = alice.post(GET_TOKEN, &json!({"auth": password_auth("alice", "nope", Some(&session))})).await;
    uia_session(&wrong, "m.login.password");
    assert_eq!(wrong.errcode(), "M_FORBIDDEN", "{}", wrong.body);
    // Another user's password does not do.
    let other = alice.post(GET_TOKEN, &json!({"auth": password_auth("bob", "pw-bob", None)})).await;
    uia_session(&other, "m.login.password");
    assert_eq!(other.errcode(), "M_FORBIDDEN", "{}", other.body);
    alice.request_raw("POST", GET_TOKEN, "{not json").await.expect_error(400, "M_NOT_JSON");
}

#[tokio::test]
async fn a_login_token_of_a_deactivated_account_is_refused_and_bad_bodies_are_errors() {
    let server = Server::start_with_config(TOKEN_LOGIN).await;
    let alice = server.client().register("alice", "pw").await;
    let token = get_token(&alice, "alice", "pw").await["login_token"].as_str().unwrap().to_owned();
    alice
        .post("/_matrix/client/v3/account/deactivate", &json!({"auth": password_auth("alice", "pw", None)}))
        .await
        .expect(200);
    server.client().post(LOGIN, &token_login(&token)).await.expect_error(403, "M_USER_DEACTIVATED");

    server.client().post(LOGIN, &json!({"type": "m.login.token"})).await.expect_error(400, "M_MISSING_PARAM");
    let wrong_type = server.client().post(LOGIN, &json!({"type": "m.login.token", "token": 5})).await;
    wrong_type.expect_error(400, "M_BAD_JSON");
}
