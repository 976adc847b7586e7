//! Sessions: `GET`/`POST /login` (identifier forms, device id reuse, refusals), access
//! tokens (missing, unknown, in the query string), `/account/whoami`, `/logout` and
//! `/logout/all`.

use spec_tests::*;

const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn login_flows_offer_password() {
    let server = Server::start().await;
    let body = server.client().get(LOGIN).await.expect(200);
    let types: Vec<&str> =
        body["flows"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"m.login.password"), "{body}");
}

#[tokio::test]
async fn login_accepts_a_localpart_a_full_user_id_and_the_legacy_user_field() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;

    let mut device_ids = Vec::new();
    for body in [
        login_body("alice", "pw-alice"),
        login_body("@alice:localhost", "pw-alice"),
        json!({"type": "m.login.password", "user": "alice", "password": "pw-alice"}),
        json!({"type": "m.login.password", "user": "@alice:localhost", "password": "pw-alice"}),
    ] {
        let reply = client.post(LOGIN, &body).await.expect(200);
        assert_eq!(reply["user_id"], "@alice:localhost", "{body}");
        let token = reply["access_token"].as_str().expect("access_token");
        let whoami = client.with_token(token).get(WHOAMI).await.expect(200);
        assert_eq!(whoami["user_id"], "@alice:localhost");
        assert_eq!(whoami["device_id"], reply["device_id"]);
        device_ids.push(reply["device_id"].as_str().unwrap().to_owned());
    }
    // Each login without a device id is a new device.
    device_ids.sort();
    device_ids.dedup();
    assert_eq!(device_ids.len(), 4, "{device_ids:?}");
}

#[tokio::test]
async fn login_sets_the_initial_device_display_name() {
    let server = Server::start().await;
    server.client().register("alice", "pw-alice").await;
    let mut body = login_body("alice", "pw-alice");
    body["initial_device_display_name"] = json!("Laptop");
    let reply = server.client().post(LOGIN, &body).await.expect(200);
    let alice = server.client().with_token(reply["access_token"].as_str().unwrap());
    let device_id = reply["device_id"].as_str().unwrap();
    let device = alice.get(&format!("/_matrix/client/v3/devices/{device_id}")).await.expect(200);
    assert_eq!(device["display_name"], "Laptop");
}

#[tokio::test]
async fn logging_in_again_with_the_same_device_id_replaces_its_token() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;
    let mut body = login_body("alice", "pw-alice");
    body["device_id"] = json!("PHONE");
    body["initial_device_display_name"] = json!("First name");
    let first = client.post(LOGIN, &body).await.expect(200);
    assert_eq!(first["device_id"], "PHONE");
    body["initial_device_display_name"] = json!("Second name");
    let second = client.post(LOGIN, &body).await.expect(200);
    assert_eq!(second["device_id"], "PHONE");
    assert_ne!(first["access_token"], second["access_token"]);

    let old = client.with_token(first["access_token"].as_str().unwrap());
    old.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    let new = client.with_token(second["access_token"].as_str().unwrap());
    let devices = new.get("/_matrix/client/v3/devices").await.expect(200);
    let phones: Vec<&Value> =
        devices["devices"].as_array().unwrap().iter().filter(|d| d["device_id"] == "PHONE").collect();
    assert_eq!(phones.len(), 1, "{devices}");
    // The name is for a new device only: a known device keeps its own.
    assert_eq!(phones[0]["display_name"], "First name", "{devices}");
}

#[tokio::test]
async fn wrong_password_and_unknown_users_are_forbidden_alike() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;
    let wrong = client.post(LOGIN, &login_body("alice", "wrong")).await;
    wrong.expect_error(403, "M_FORBIDDEN");
    let unknown = client.post(LOGIN, &login_body("nobody", "pw-alice")).await;
    unknown.expect_error(403, "M_FORBIDDEN");
    // Same words either way, so login cannot be used to find out which users exist.
    assert_eq!(wrong.body["error"], unknown.body["error"]);
    client
        .post(LOGIN, &login_body("@alice:elsewhere.example", "pw-alice"))
        .await
        .expect_error(403, "M_FORBIDDEN");
    client.post(LOGIN, &login_body("not a user id!", "pw-alice")).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    alice
        .post(
            "/_matrix/client/v3/account/deactivate",
            &json!({"auth": password_auth("alice", "pw-alice", None)}),
        )
        .await
        .expect(200);
    server
        .client()
        .post(LOGIN, &login_body("alice", "pw-alice"))
        .await
        .expect_error(403, "M_USER_DEACTIVATED");
}

#[tokio::test]
async fn unsupported_login_types_and_identifiers_are_400() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw-alice").await;
    for body in [
        json!({"type": "m.login.token", "token": "abc"}),
        json!({"type": "org.example.custom", "user": "alice"}),
        json!({"type": "m.login.password", "password": "pw-alice",
               "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}}),
        json!({"type": "m.login.password", "password": "pw-alice"}),
    ] {
        let resp = client.post(LOGIN, &body).await;
        assert_eq!(resp.status, 400, "{body} -> {}", resp.body);
        assert!(resp.errcode().starts_with("M_"), "{}", resp.body);
    }
}

#[tokio::test]
async fn a_missing_token_is_401_missing_token() {
    let server = Server::start().await;
    let client = server.client();
    for path in [WHOAMI, "/_matrix/client/v3/devices", "/_matrix/client/v3/capabilities"] {
        client.get(path).await.expect_error(401, "M_MISSING_TOKEN");
    }
    client.post("/_matrix/client/v3/logout", &json!({})).await.expect_error(401, "M_MISSING_TOKEN");
    client
        .post("/_matrix/client/v3/account/password", &json!({"new_password": "x"}))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
    client
        .post("/_matrix/client/v3/account/deactivate", &json!({}))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_unknown_token_is_401_unknown_token() {
    let server = Server::start().await;
    let garbage = server.client().with_token("myl_not_a_real_token");
    garbage.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    garbage.get("/_matrix/client/v3/devices").await.expect_error(401, "M_UNKNOWN_TOKEN");
    let raw = server.client().get(&format!("{WHOAMI}?access_token=garbage")).await;
    raw.expect_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn the_access_token_query_parameter_works_like_the_header() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let token = alice.access_token.clone().unwrap();
    let body = server.client().get(&format!("{WHOAMI}?access_token={token}")).await.expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_eq!(body["device_id"], alice.device_id.clone().unwrap());
}

#[tokio::test]
async fn whoami_names_the_user_and_device_of_the_token() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    for client in [&alice, &bob] {
        let body = client.get(WHOAMI).await.expect(200);
        assert_eq!(body["user_id"], client.user_id());
        assert_eq!(body["device_id"], client.device_id.clone().unwrap());
        // Absent means false.
        assert_ne!(body["is_guest"], true, "{body}");
    }
}

#[tokio::test]
async fn logout_kills_the_token_and_removes_the_device() {
    let server = Server::start().await;
    let client = server.client();
    let first = client.register("alice", "pw-alice").await;
    let second = client.login("alice", "pw-alice").await;
    first.post("/_matrix/client/v3/logout", &json!({})).await.expect(200);
    first.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    first.post("/_matrix/client/v3/logout", &json!({})).await.expect_error(401, "M_UNKNOWN_TOKEN");

    second.get(WHOAMI).await.expect(200);
    let devices = second.get("/_matrix/client/v3/devices").await.expect(200);
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.device_id.as_deref().unwrap()]);
}

#[tokio::test]
async fn logout_all_kills_every_token_of_the_user_only() {
    let server = Server::start().await;
    let client = server.client();
    let sessions = [
        client.register("alice", "pw-alice").await,
        client.login("alice", "pw-alice").await,
        client.login("alice", "pw-alice").await,
    ];
    let bob = client.register("bob", "pw-bob").await;
    sessions[1].post("/_matrix/client/v3/logout/all", &json!({})).await.expect(200);
    for session in &sessions {
        session.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    }
    bob.get(WHOAMI).await.expect(200);
    let alice = client.login("alice", "pw-alice").await;
    let devices = alice.get("/_matrix/client/v3/devices").await.expect(200);
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
}
