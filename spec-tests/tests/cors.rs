//! CORS, which browser clients (Element Web, Hydrogen, Cinny) cannot work without: every
//! client API response allows any origin, successes and errors alike, and a preflight
//! `OPTIONS` on any client path is answered with the allowed methods and headers.

use spec_tests::*;

#[track_caller]
fn assert_allows_any_origin(resp: &Resp, what: &str) {
    assert_eq!(
        resp.headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("*"),
        "{what}: status {}, headers {:?}",
        resp.status,
        resp.headers
    );
}

#[tokio::test]
async fn every_response_allows_any_origin() {
    let server = Server::start().await;
    let client = server.client();
    let alice = client.register("alice", "pw-alice").await;
    let cases = [
        ("versions", client.get("/_matrix/client/versions").await),
        ("whoami", alice.get("/_matrix/client/v3/account/whoami").await),
        ("missing token", client.get("/_matrix/client/v3/account/whoami").await),
        ("unknown route", client.get("/_matrix/client/v3/nope").await),
        ("wrong method", client.put("/_matrix/client/v3/login", &json!({})).await),
        ("bad json", client.request_raw("POST", "/_matrix/client/v3/login", "{").await),
        ("uia challenge", client.post("/_matrix/client/v3/register", &json!({"username": "bob"})).await),
        ("well-known", client.get("/.well-known/matrix/client").await),
    ];
    for (what, resp) in &cases {
        assert_allows_any_origin(resp, what);
    }
}

#[tokio::test]
async fn preflight_on_any_client_path_allows_the_methods_and_headers_clients_use() {
    let server = Server::start().await;
    let client = server.client();
    for path in [
        "/_matrix/client/v3/login",
        "/_matrix/client/v3/account/whoami",
        "/_matrix/client/v3/profile/%40alice%3Alocalhost/displayname",
        "/_matrix/client/v3/rooms/!r%3Alocalhost/send/m.room.message/1",
    ] {
        let resp = client
            .request_with_headers(
                "OPTIONS",
                path,
                &[
                    ("Origin", "https://app.element.io"),
                    ("Access-Control-Request-Method", "PUT"),
                    ("Access-Control-Request-Headers", "authorization, content-type"),
                ],
            )
            .await;
        assert!((200..300).contains(&resp.status), "{path}: status {}", resp.status);
        assert_allows_any_origin(&resp, path);
        let header = |name: &str| {
            resp.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase()
        };
        let methods = header("access-control-allow-methods");
        for method in ["get", "post", "put", "delete", "options"] {
            assert!(methods.contains(method), "{path}: allow-methods {methods:?} lacks {method}");
        }
        let headers = header("access-control-allow-headers");
        for name in ["authorization", "content-type", "x-requested-with"] {
            assert!(headers.contains(name), "{path}: allow-headers {headers:?} lacks {name}");
        }
    }
}
