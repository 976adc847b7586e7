//! The user's own account: `POST /account/password` and `POST /account/deactivate`, both
//! behind `m.login.password` user-interactive auth.

use spec_tests::*;

const PASSWORD: &str = "/_matrix/client/v3/account/password";
const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const LOGIN: &str = "/_matrix/client/v3/login";

#[tokio::test]
async fn password_change_first_asks_for_the_current_password() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "old-pw").await;
    let resp = alice.post(PASSWORD, &json!({"new_password": "new-pw"})).await;
    uia_session(&resp, "m.login.password");
    // Nothing changed yet.
    server.client().login("alice", "old-pw").await;
}

#[tokio::test]
async fn a_wrong_current_password_is_401_forbidden_with_the_flows() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "old-pw").await;
    let challenge = alice.post(PASSWORD, &json!({"new_password": "new-pw"})).await;
    let session = uia_session(&challenge, "m.login.password");
    let resp = alice
        .post(
            PASSWORD,
            &json!({"new_password": "new-pw", "auth": password_auth("alice", "wrong", Some(&session))}),
        )
        .await;
    assert_eq!(uia_session(&resp, "m.login.password"), session);
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);
    assert!(resp.body["error"].is_string(), "{}", resp.body);
    server.client().login("alice", "old-pw").await;
    server.client().post(LOGIN, &login_body("alice", "new-pw")).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn uia_as_another_user_is_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    server.client().register("bob", "pw-bob").await;
    // Bob's correct password does not authorise a change to Alice's account.
    let resp = alice
        .post(PASSWORD, &json!({"new_password": "x", "auth": password_auth("bob", "pw-bob", None)}))
        .await;
    uia_session(&resp, "m.login.password");
    assert_eq!(resp.errcode(), "M_FORBIDDEN", "{}", resp.body);
    server.client().login("alice", "pw-alice").await;
    server.client().login("bob", "pw-bob").await;
}

#[tokio::test]
async fn a_password_change_logs_out_other_devices_and_keeps_this_one() {
    let server = Server::start().await;
    let client = server.client();
    let current = client.register("alice", "old-pw").await;
    let other = client.login("alice", "old-pw").await;
    let challenge = current.post(PASSWORD, &json!({"new_password": "new-pw"})).await;
    let session = uia_session(&challenge, "m.login.password");
    current
        .post(
            PASSWORD,
            &json!({"new_password": "new-pw", "auth": password_auth("alice", "old-pw", Some(&session))}),
        )
        .await
        .expect(200);

    client.post(LOGIN, &login_body("alice", "old-pw")).await.expect_error(403, "M_FORBIDDEN");
    client.login("alice", "new-pw").await;
    other.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    current.get(WHOAMI).await.expect(200);
    let devices = current.get("/_matrix/client/v3/devices").await.expect(200);
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&other.device_id.as_deref().unwrap()), "{ids:?}");
    assert!(ids.contains(&current.device_id.as_deref().unwrap()), "{ids:?}");
}

#[tokio::test]
async fn logout_devices_false_keeps_the_other_devices() {
    let server = Server::start().await;
    let client = server.client();
    let current = client.register("alice", "old-pw").await;
    let other = client.login("alice", "old-pw").await;
    current
        .post(
            PASSWORD,
            &json!({
                "new_password": "new-pw",
                "logout_devices": false,
                "auth": password_auth("@alice:localhost", "old-pw", None),
            }),
        )
        .await
        .expect(200);
    other.get(WHOAMI).await.expect(200);
    current.get(WHOAMI).await.expect(200);
    client.login("alice", "new-pw").await;
}

#[tokio::test]
async fn a_password_change_without_new_password_is_missing_param() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    alice
        .post(PASSWORD, &json!({"auth": password_auth("alice", "pw", None)}))
        .await
        .expect_error(400, "M_MISSING_PARAM");
    server.client().login("alice", "pw").await;
}

#[tokio::test]
async fn deactivation_asks_for_the_password_then_ends_the_account_for_good() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw-alice").await;
    let other = client.login("alice", "pw-alice").await;

    let challenge = alice.post(DEACTIVATE, &json!({})).await;
    let session = uia_session(&challenge, "m.login.password");
    let wrong =
        alice.post(DEACTIVATE, &json!({"auth": password_auth("alice", "nope", Some(&session))})).await;
    uia_session(&wrong, "m.login.password");
    assert_eq!(wrong.errcode(), "M_FORBIDDEN", "{}", wrong.body);
    alice.get(WHOAMI).await.expect(200);

    let body = alice
        .post(DEACTIVATE, &json!({"auth": password_auth("alice", "pw-alice", Some(&session))}))
        .await
        .expect(200);
    assert!(body["id_server_unbind_result"].is_string(), "{body}");

    alice.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    other.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    client.post(LOGIN, &login_body("alice", "pw-alice")).await.expect_error(403, "M_USER_DEACTIVATED");
    // The name is never handed out again.
    client
        .post(
            "/_matrix/client/v3/register",
            &json!({"username": "alice", "password": "x", "auth": {"type": "m.login.dummy"}}),
        )
        .await
        .expect_error(400, "M_USER_IN_USE");
    client
        .get("/_matrix/client/v3/register/available?username=alice")
        .await
        .expect_error(400, "M_USER_IN_USE");
}

/// A deactivated account leaves every room it was in or invited to, so the others see it
/// go; with `erase`, its display name goes too.
#[tokio::test]
async fn deactivation_leaves_every_room() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw-alice").await;
    let bob = client.register("bob", "pw-bob").await;
    let joined = bob.create_room(&json!({"invite": [alice.user_id()]})).await;
    alice.join_room(&joined).await.expect(200);
    let invited = bob.create_room(&json!({"invite": [alice.user_id()]})).await;

    let challenge = alice.post(DEACTIVATE, &json!({})).await;
    let session = uia_session(&challenge, "m.login.password");
    alice
        .post(DEACTIVATE, &json!({"erase": true, "auth": password_auth("alice", "pw-alice", Some(&session))}))
        .await
        .expect(200);

    for room in [&joined, &invited] {
        let member = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(room),
                enc(alice.user_id())
            ))
            .await
            .expect(200);
        assert_eq!(member["membership"], "leave", "{room}: {member}");
    }
    let profile = bob.get(&format!("/_matrix/client/v3/profile/{}", enc(alice.user_id()))).await.expect(200);
    assert!(profile.get("displayname").is_none(), "erased: {profile}");
}
