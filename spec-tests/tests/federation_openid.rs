//! OpenID tokens checked by another service: `GET /_matrix/federation/v1/openid/userinfo`
//! tells who a token this server issued belongs to, until it expires.

use spec_tests::{rooms::*, *};

#[tokio::test]
async fn an_issued_openid_token_names_its_user_and_nothing_else_does() {
    let server = Server::start_federating().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/user/{}/openid/request_token", enc(alice.user_id()));
    let token = alice.post(&path, &json!({})).await.expect(200)["access_token"].as_str().unwrap().to_owned();

    let federation = server.federation_client();
    let userinfo =
        |token: &str| format!("/_matrix/federation/v1/openid/userinfo?access_token={}", enc(token));
    let info = federation.get(&userinfo(&token)).await.expect(200);
    assert_eq!(info["sub"], alice.user_id(), "{info}");
    federation.get(&userinfo("not-a-token")).await.expect_error(401, "M_UNKNOWN_TOKEN");
    // Alice's access token is not an OpenID token.
    let access_token = alice.access_token.clone().expect("logged in");
    federation.get(&userinfo(&access_token)).await.expect_error(401, "M_UNKNOWN_TOKEN");
    federation.get("/_matrix/federation/v1/openid/userinfo").await.expect_error(400, "M_MISSING_PARAM");
}
