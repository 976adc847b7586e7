//! Bad input answered with the spec's errors: malformed JSON (`M_NOT_JSON`), JSON of the
//! wrong shape (`M_BAD_JSON`), missing fields and query parameters (`M_MISSING_PARAM`),
//! oversized bodies with and without `Content-Length` (413 `M_TOO_LARGE`), and rate limits
//! on login and registration (429 `M_LIMIT_EXCEEDED` with `retry_after_ms`).

use spec_tests::*;

const LOGIN: &str = "/_matrix/client/v3/login";
const REGISTER: &str = "/_matrix/client/v3/register";
const SMALL_BODIES: &str = "[limits]\nmax_request_bytes = 2048\n[rate_limits]\nenabled = false\n";
const TIGHT_RATE_LIMITS: &str = "[rate_limits]\nenabled = true\n\
    [rate_limits.login]\nper_second = 0.1\nburst = 2\n\
    [rate_limits.register]\nper_second = 0.1\nburst = 2\n";

#[tokio::test]
async fn malformed_json_is_not_json() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw").await;
    for body in ["{", "{\"type\": \"m.login.password\",}", "not json at all", "{\"a\": tru}"] {
        let resp = client.request_raw("POST", LOGIN, body).await;
        assert_eq!((resp.status, resp.errcode()), (400, "M_NOT_JSON"), "{body:?}: {}", resp.body);
    }
    let resp =
        alice.request_raw("PUT", "/_matrix/client/v3/profile/%40alice%3Alocalhost/displayname", "{").await;
    resp.expect_error(400, "M_NOT_JSON");
    let resp = client.request_raw("POST", REGISTER, "{\"username\": ").await;
    resp.expect_error(400, "M_NOT_JSON");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_bad_json() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw").await;
    for (path, body) in [
        (
            LOGIN,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": 5}),
        ),
        (LOGIN, json!(["m.login.password"])),
        (REGISTER, json!({"username": 42, "auth": {"type": "m.login.dummy"}})),
        (REGISTER, json!({"username": "bob", "inhibit_login": "yes"})),
    ] {
        let resp = client.post(path, &body).await;
        assert_eq!((resp.status, resp.errcode()), (400, "M_BAD_JSON"), "{path} {body}: {}", resp.body);
    }
    let resp = alice.post("/_matrix/client/v3/account/password", &json!({"new_password": ["x"]})).await;
    resp.expect_error(400, "M_BAD_JSON");
    let resp = alice.put("/_matrix/client/v3/devices/X", &json!({"display_name": 7})).await;
    resp.expect_error(400, "M_BAD_JSON");
    // Valid JSON that names another field than the path does is the wrong shape, not "not JSON".
    let resp = alice
        .put(
            "/_matrix/client/v3/profile/%40alice%3Alocalhost/displayname",
            &json!({"avatar_url": "mxc://a/b"}),
        )
        .await;
    resp.expect_error(400, "M_BAD_JSON");
    // Nothing was registered by the refused requests.
    client.get("/_matrix/client/v3/register/available?username=bob").await.expect(200);
}

#[tokio::test]
async fn a_login_without_a_type_is_refused_and_the_server_carries_on() {
    let server = Server::start().await;
    let client = server.client();
    client.register("alice", "pw").await;
    client.post(LOGIN, &json!({})).await.expect_error(400, "M_BAD_JSON");
    client.post(LOGIN, &json!({"user": "alice", "password": "pw"})).await.expect_error(400, "M_BAD_JSON");
    // No body at all is not JSON (as Synapse answers too).
    client.request_raw("POST", LOGIN, "").await.expect_error(400, "M_NOT_JSON");
    client.login("alice", "pw").await;
}

#[tokio::test]
async fn missing_required_fields_and_parameters_are_missing_param() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw").await;
    alice
        .post("/_matrix/client/v3/account/password", &json!({"auth": password_auth("alice", "pw", None)}))
        .await
        .expect_error(400, "M_MISSING_PARAM");
    client.get("/_matrix/client/v3/register/available").await.expect_error(400, "M_MISSING_PARAM");
    client
        .post(
            LOGIN,
            &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}}),
        )
        .await
        .expect_error(400, "M_MISSING_PARAM");
    // Still the old password: nothing was half-done.
    client.login("alice", "pw").await;
}

#[tokio::test]
async fn an_oversized_body_with_content_length_is_too_large() {
    let server = Server::start_with_config(SMALL_BODIES).await;
    let client = server.client();
    let big = json!({"type": "m.login.password", "user": "alice", "password": "x".repeat(10 * 1024)});
    client.post(LOGIN, &big).await.expect_error(413, "M_TOO_LARGE");
    // Just under the limit is still read (and judged on its content).
    let fits = json!({"type": "m.login.password", "user": "alice", "password": "x".repeat(1500)});
    client.post(LOGIN, &fits).await.expect_error(403, "M_FORBIDDEN");
    // The server is fine afterwards.
    client.register("alice", "pw").await;
}

#[tokio::test]
async fn an_oversized_chunked_body_is_too_large() {
    let server = Server::start_with_config(SMALL_BODIES).await;
    let mut request = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    let payload = format!(
        "{{\"type\":\"m.login.password\",\"user\":\"a\",\"password\":\"{}\"}}",
        "x".repeat(10 * 1024)
    );
    for chunk in payload.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_http(server.addr, &request).await;
    resp.expect_error(413, "M_TOO_LARGE");
    server.client().get("/_matrix/client/versions").await.expect(200);
}

#[tokio::test]
async fn a_small_chunked_body_is_read_normally() {
    let server = Server::start_with_config(SMALL_BODIES).await;
    server.client().register("alice", "pw").await;
    let payload = login_body("alice", "pw").to_string();
    let (a, b) = payload.as_bytes().split_at(payload.len() / 2);
    let mut request = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for chunk in [a, b] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let body = raw_http(server.addr, &request).await.expect(200);
    assert_eq!(body["user_id"], "@alice:localhost");
}

#[track_caller]
fn assert_limited(resp: &Resp) {
    resp.expect_error(429, "M_LIMIT_EXCEEDED");
    let retry =
        resp.body["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("retry_after_ms: {}", resp.body));
    // One token refills in 10 s at 0.1 per second.
    assert!(retry > 0 && retry <= 10_000, "{retry}");
}

#[tokio::test]
async fn login_attempts_beyond_the_burst_are_rate_limited() {
    let server = Server::start_with_config(TIGHT_RATE_LIMITS).await;
    let client = server.client();
    client.post(LOGIN, &login_body("alice", "wrong")).await.expect_error(403, "M_FORBIDDEN");
    client.post(LOGIN, &login_body("alice", "wrong")).await.expect_error(403, "M_FORBIDDEN");
    assert_limited(&client.post(LOGIN, &login_body("alice", "wrong")).await);
    // Other endpoints are not throttled by it.
    client.get("/_matrix/client/versions").await.expect(200);
    client.get(LOGIN).await.expect(200);
}

#[tokio::test]
async fn registration_token_checks_are_rate_limited_against_guessing() {
    let config = format!("[registration]\nmode = \"token\"\n{TIGHT_RATE_LIMITS}");
    let server = Server::start_with_config(&config).await;
    let client = server.client();
    let path = "/_matrix/client/v1/register/m.login.registration_token/validity?token=guess";
    for _ in 0..2 {
        assert_eq!(client.get(path).await.expect(200)["valid"], false);
    }
    assert_limited(&client.get(path).await);
}

#[tokio::test]
async fn registration_attempts_beyond_the_burst_are_rate_limited() {
    let server = Server::start_with_config(TIGHT_RATE_LIMITS).await;
    let client = server.client();
    let challenge = client.post(REGISTER, &json!({"username": "alice", "password": "pw"})).await;
    let session = uia_session(&challenge, "m.login.dummy");
    client
        .post(REGISTER, &json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}}))
        .await
        .expect(200);
    assert_limited(&client.post(REGISTER, &json!({"username": "bob", "password": "pw"})).await);
    assert_limited(&client.get("/_matrix/client/v3/register/available?username=bob").await);
    // Login has a bucket of its own.
    client.login("alice", "pw").await;
}
