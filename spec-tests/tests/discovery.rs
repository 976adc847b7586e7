//! `/versions`, `.well-known`, `auth_metadata`, CORS and unknown routes.

use spec_tests::*;

#[tokio::test]
async fn versions_lists_stable_versions_without_auth() {
    let server = Server::start().await;
    let body = server.client().get("/_matrix/client/versions").await.expect(200);
    let versions: Vec<&str> =
        body["versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(versions.contains(&"v1.1"), "{versions:?}");
}

#[tokio::test]
async fn auth_metadata_is_unrecognized_so_clients_use_login_flows() {
    let server = Server::start().await;
    server.client().get("/_matrix/client/v1/auth_metadata").await.expect_error(404, "M_UNRECOGNIZED");
}
