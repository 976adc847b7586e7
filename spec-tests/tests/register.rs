//! `POST /register` in open mode (the test default): the `m.login.dummy` UIA round trip,
//! device id and name, `inhibit_login`, username rules and clashes, guests, and
//! `GET /register/available`.

use spec_tests::*;

const REGISTER: &str = "/_matrix/client/v3/register";

fn available(username: &str) -> String {
    format!("/_matrix/client/v3/register/available?username={}", enc(username))
}

#[tokio::test]
async fn register_without_auth_gets_a_dummy_challenge_and_completing_it_logs_in() {
    let server = Server::start().await;
    let client = server.client();
    let challenge = client.post(REGISTER, &json!({"username": "alice", "password": "pw-alice"})).await;
    let session = uia_session(&challenge, "m.login.dummy");
    assert!(challenge.body["params"].is_object(), "{}", challenge.body);

    let body = client
        .post(
            REGISTER,
            &json!({
                "username": "alice",
                "password": "pw-alice",
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await
        .expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    let token = body["access_token"].as_str().expect("access_token");
    let device_id = body["device_id"].as_str().expect("device_id");

    let whoami = client.with_token(token).get("/_matrix/client/v3/account/whoami").await.expect(200);
    assert_eq!(whoami["user_id"], "@alice:localhost");
    assert_eq!(whoami["device_id"], device_id);
    // The password given at registration is the account's password.
    client.login("alice", "pw-alice").await;
}

#[tokio::test]
async fn register_honours_device_id_and_initial_display_name() {
    let server = Server::start().await;
    let body = server
        .client()
        .post(
            REGISTER,
            &json!({
                "username": "alice",
                "password": "pw-alice",
                "device_id": "MYPHONE",
                "initial_device_display_name": "Alice's phone",
                "auth": {"type": "m.login.dummy"},
            }),
        )
        .await
        .expect(200);
    assert_eq!(body["device_id"], "MYPHONE");
    let alice = server.client().with_token(body["access_token"].as_str().unwrap());
    let devices = alice.get("/_matrix/client/v3/devices").await.expect(200);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["device_id"], "MYPHONE");
    assert_eq!(devices[0]["display_name"], "Alice's phone");
}

#[tokio::test]
async fn register_without_username_generates_one() {
    let server = Server::start().await;
    let body = server
        .client()
        .post(REGISTER, &json!({"password": "pw", "auth": {"type": "m.login.dummy"}}))
        .await
        .expect(200);
    let user_id = body["user_id"].as_str().unwrap();
    assert!(user_id.starts_with('@') && user_id.ends_with(":localhost"), "{user_id}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn inhibit_login_registers_without_a_token_or_device() {
    let server = Server::start().await;
    let client = server.client();
    let body = client
        .post(
            REGISTER,
            &json!({
                "username": "alice",
                "password": "pw-alice",
                "inhibit_login": true,
                "auth": {"type": "m.login.dummy"},
            }),
        )
        .await
        .expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    assert!(body.get("access_token").is_none(), "{body}");
    // ruma writes an absent device id as null.
    assert!(body["device_id"].is_null(), "{body}");
    // The account exists and has no device until it logs in.
    let alice = client.login("alice", "pw-alice").await;
    let devices = alice.get("/_matrix/client/v3/devices").await.expect(200);
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
}

#[tokio::test]
async fn an_upper_case_username_is_lower_cased() {
    let server = Server::start().await;
    let alice = server.client().register("AliCE", "pw-alice").await;
    assert_eq!(alice.user_id(), "@alice:localhost");
    server.client().login("alice", "pw-alice").await;
    server.client().login("ALICE", "pw-alice").await;
}

#[tokio::test]
async fn a_taken_username_is_user_in_use_before_and_after_uia() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;
    // Before UIA: no auth at all, so the client learns at once.
    client
        .post(REGISTER, &json!({"username": "alice", "password": "x"}))
        .await
        .expect_error(400, "M_USER_IN_USE");
    client
        .post(REGISTER, &json!({"username": "alice", "password": "x", "auth": {"type": "m.login.dummy"}}))
        .await
        .expect_error(400, "M_USER_IN_USE");
    // Case folding cannot be used to take the same name again.
    client
        .post(REGISTER, &json!({"username": "ALICE", "password": "x", "auth": {"type": "m.login.dummy"}}))
        .await
        .expect_error(400, "M_USER_IN_USE");
    // The original owner is untouched.
    client.login("alice", "pw-alice").await;
}

#[tokio::test]
async fn usernames_with_forbidden_characters_are_invalid_username() {
    let server = Server::start().await;
    let client = server.client();
    for bad in ["al ice", "alice!", "@alice:localhost", "ali:ce", "élodie", "", &"a".repeat(300)] {
        for auth in [None, Some(json!({"type": "m.login.dummy"}))] {
            let mut body = json!({"username": bad, "password": "pw"});
            if let Some(auth) = auth {
                body["auth"] = auth;
            }
            let resp = client.post(REGISTER, &body).await;
            assert_eq!(
                (resp.status, resp.errcode()),
                (400, "M_INVALID_USERNAME"),
                "username {bad:?}: {}",
                resp.body
            );
        }
    }
    // Every character the spec allows is accepted.
    let ok = client.register("a.b_c=d-e/f+g9", "pw").await;
    assert_eq!(ok.user_id(), "@a.b_c=d-e/f+g9:localhost");
}

#[tokio::test]
async fn guest_registration_is_refused() {
    let server = Server::start().await;
    let client = server.client();
    client
        .post(&format!("{REGISTER}?kind=guest"), &json!({}))
        .await
        .expect_error(403, "M_GUEST_ACCESS_FORBIDDEN");
    client
        .post(&format!("{REGISTER}?kind=guest"), &json!({"username": "g", "auth": {"type": "m.login.dummy"}}))
        .await
        .expect_error(403, "M_GUEST_ACCESS_FORBIDDEN");
    // kind=user is the ordinary registration.
    client
        .post(
            &format!("{REGISTER}?kind=user"),
            &json!({"username": "u", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await
        .expect(200);
}

#[tokio::test]
async fn an_auth_type_that_is_not_offered_is_refused_with_the_flows_again() {
    let server = Server::start().await;
    let resp = server
        .client()
        .post(
            REGISTER,
            &json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "x"}}),
        )
        .await;
    uia_session(&resp, "m.login.dummy");
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);
    server.client().get(&available("alice")).await.expect(200);
}

#[tokio::test]
async fn username_availability_says_available_taken_or_invalid() {
    let server = Server::start().await;
    let client = server.client();
    let body = client.get(&available("alice")).await.expect(200);
    assert_eq!(body["available"], true);

    client.register("alice", "pw-alice").await;
    client.get(&available("alice")).await.expect_error(400, "M_USER_IN_USE");
    client.get(&available("ALICE")).await.expect_error(400, "M_USER_IN_USE");
    client.get(&available("al ice")).await.expect_error(400, "M_INVALID_USERNAME");
    client.get(&available("bob!")).await.expect_error(400, "M_INVALID_USERNAME");
    client.get("/_matrix/client/v3/register/available").await.expect_error(400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn two_concurrent_registrations_of_one_name_create_one_account() {
    let server = Server::start().await;
    let client = server.client();
    let body = |password: &str| json!({"username": "alice", "password": password, "auth": {"type": "m.login.dummy"}});
    let (body_a, body_b) = (body("pw-a"), body("pw-b"));
    let (a, b) = tokio::join!(client.post(REGISTER, &body_a), client.post(REGISTER, &body_b));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{} / {}", a.body, b.body);
    let (winner, loser) = if a.status == 200 { ("pw-a", &b) } else { ("pw-b", &a) };
    loser.expect_error(400, "M_USER_IN_USE");
    client.login("alice", winner).await;
}
