//! What clients ask before and right after logging in: `/versions` (with and without a
//! token), `/.well-known/matrix/client`, `/capabilities`, `auth_metadata` (absent on purpose),
//! unknown routes and wrong methods, and the historical `r0` paths of the account endpoints.

use spec_tests::*;

fn versions_of(body: &Value) -> Vec<&str> {
    body["versions"].as_array().expect("versions array").iter().map(|v| v.as_str().unwrap()).collect()
}

#[tokio::test]
async fn versions_lists_stable_versions_without_auth() {
    let server = Server::start().await;
    let body = server.client().get("/_matrix/client/versions").await.expect(200);
    let versions = versions_of(&body);
    assert!(versions.contains(&"v1.1"), "{versions:?}");
    // v1.4 switches threads on in clients, v1.11 authenticated media; v1.15 is the newest
    // whose every requirement Myelin meets (docs/spec-coverage.md).
    for version in ["v1.4", "v1.11", "v1.15"] {
        assert!(versions.contains(&version), "{version} missing: {versions:?}");
    }
    assert!(!versions.contains(&"v1.16"), "{versions:?}");
    assert!(body.get("unstable_features").is_none_or(Value::is_object), "{body}");
}

#[tokio::test]
async fn versions_answers_the_same_with_an_access_token() {
    let server = Server::start().await;
    let anonymous = server.client().get("/_matrix/client/versions").await.expect(200);
    let alice = server.client().register("alice", "pw-alice").await;
    let authed = alice.get("/_matrix/client/versions").await.expect(200);
    assert_eq!(versions_of(&authed), versions_of(&anonymous));
}

#[tokio::test]
async fn well_known_client_points_at_the_server() {
    let server = Server::start().await;
    let body = server.client().get("/.well-known/matrix/client").await.expect(200);
    assert_eq!(body["m.homeserver"]["base_url"], server.base_url(), "{body}");
}

#[tokio::test]
async fn capabilities_offer_password_change_and_room_version_12() {
    let server = Server::start().await;
    server.client().get("/_matrix/client/v3/capabilities").await.expect_error(401, "M_MISSING_TOKEN");
    let alice = server.client().register("alice", "pw-alice").await;
    let body = alice.get("/_matrix/client/v3/capabilities").await.expect(200);
    let caps = &body["capabilities"];
    // Listed even where the spec lets a server leave out a default, since clients differ
    // in what they assume for a missing one.
    for name in ["m.change_password", "m.set_displayname", "m.set_avatar_url"] {
        assert_eq!(caps[name], json!({"enabled": true}), "{name}: {body}");
    }
    // No third-party identifiers, and login tokens only when configured.
    assert_eq!(caps["m.3pid_changes"], json!({"enabled": false}), "{body}");
    assert_eq!(caps["m.get_login_token"], json!({"enabled": false}), "{body}");
    assert_eq!(caps["m.room_versions"]["default"], "12", "{body}");
    for version in ["10", "11", "12"] {
        assert_eq!(caps["m.room_versions"]["available"][version], "stable", "{body}");
    }
}

#[tokio::test]
async fn auth_metadata_is_unrecognized_so_clients_use_login_flows() {
    let server = Server::start().await;
    server.client().get("/_matrix/client/v1/auth_metadata").await.expect_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn unknown_routes_are_404_unrecognized() {
    let server = Server::start().await;
    let client = server.client();
    client.get("/_matrix/client/v3/no_such_endpoint").await.expect_error(404, "M_UNRECOGNIZED");
    client.get("/no/such/path").await.expect_error(404, "M_UNRECOGNIZED");
    client.post("/_matrix/client/v3/nope", &json!({})).await.expect_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_405_unrecognized() {
    let server = Server::start().await;
    let client = server.client();
    client.put("/_matrix/client/v3/login", &json!({})).await.expect_error(405, "M_UNRECOGNIZED");
    client.post("/_matrix/client/versions", &json!({})).await.expect_error(405, "M_UNRECOGNIZED");
    client.delete("/_matrix/client/v3/account/whoami", None).await.expect_error(405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn head_on_a_get_endpoint_answers_like_get() {
    let server = Server::start().await;
    let resp = server.client().request("HEAD", "/_matrix/client/versions", None).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn r0_paths_serve_register_login_and_whoami() {
    let server = Server::start().await;
    let client = server.client();
    let registered = client
        .post(
            "/_matrix/client/r0/register",
            &json!({"username": "alice", "password": "pw-alice", "auth": {"type": "m.login.dummy"}}),
        )
        .await
        .expect(200);
    assert_eq!(registered["user_id"], "@alice:localhost");

    let login_types = client.get("/_matrix/client/r0/login").await.expect(200);
    assert_eq!(login_types["flows"][0]["type"], "m.login.password", "{login_types}");
    let logged_in =
        client.post("/_matrix/client/r0/login", &login_body("alice", "pw-alice")).await.expect(200);
    let token = logged_in["access_token"].as_str().unwrap();

    let whoami = client.with_token(token).get("/_matrix/client/r0/account/whoami").await.expect(200);
    assert_eq!(whoami["user_id"], "@alice:localhost");
    assert_eq!(whoami["device_id"], logged_in["device_id"]);
}
