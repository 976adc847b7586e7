//! Requests refused before they reach a route still get a Matrix error: JSON with an `M_`
//! errcode. These are written by hand on raw TCP, since an HTTP library will not send them:
//! a malformed request line or header (400 `M_UNKNOWN`), a URI over 65,534 bytes (414
//! `M_TOO_LARGE`), too many headers (431 `M_TOO_LARGE`), a body over the limit (413
//! `M_TOO_LARGE`). And HTTP/2 takes URIs as long as HTTP/1 does.

use spec_tests::*;

/// `GET {target}` with `extra` header lines.
fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_answered_with_matrix_errors() {
    let server = Server::start().await;
    let long = "a".repeat(70 * 1024);
    let many_headers: String = (0..120).map(|i| format!("X-Header-{i}: value\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("a raw space in the path", get("/_matrix/client/versions extra", ""), 400, "M_UNKNOWN"),
        ("a request line without a target", b"GET\r\n\r\n".to_vec(), 400, "M_UNKNOWN"),
        ("no request line at all", b"\x01\x02 nonsense\r\n\r\n".to_vec(), 400, "M_UNKNOWN"),
        ("an unknown HTTP version", b"GET / HTTP/7.1\r\nHost: localhost\r\n\r\n".to_vec(), 400, "M_UNKNOWN"),
        ("a space in a header name", get("/_matrix/client/versions", "Bad Header: x\r\n"), 400, "M_UNKNOWN"),
        ("a Content-Length that is not a number", get("/", "Content-Length: ten\r\n"), 400, "M_UNKNOWN"),
        (
            "two different Content-Lengths",
            get("/", "Content-Length: 1\r\nContent-Length: 2\r\n"),
            400,
            "M_UNKNOWN",
        ),
        ("a 70 KB path", get(&format!("/_matrix/client/{long}"), ""), 414, "M_TOO_LARGE"),
        ("a 70 KB query", get(&format!("/_matrix/client/versions?q={long}"), ""), 414, "M_TOO_LARGE"),
        ("120 headers", get("/_matrix/client/versions", &many_headers), 431, "M_TOO_LARGE"),
        (
            "a body announced over the limit",
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
                .to_vec(),
            413,
            "M_TOO_LARGE",
        ),
    ];
    for (what, request, status, errcode) in cases {
        let resp = raw_http(server.addr, &request).await;
        assert_eq!((resp.status, resp.errcode()), (status, errcode), "{what}: {:?}", resp);
        assert!(resp.body["error"].is_string(), "{what}: {}", resp.body);
        let content_type = resp.headers.get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"), "{what}");
        // Web clients read errors only with CORS headers.
        assert!(resp.headers.contains_key("access-control-allow-origin"), "{what}: {:?}", resp.headers);
    }
    // The server is none the worse.
    server.client().get("/_matrix/client/versions").await.expect(200);
}

/// A bad request after a good one on the same connection is answered the same way, after
/// the good one's answer.
#[tokio::test]
async fn a_malformed_request_on_a_kept_alive_connection_gets_a_matrix_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let mut requests = get("/_matrix/client/versions", "");
    requests.extend(get("/_matrix/client/versions x", ""));
    stream.write_all(&requests).await.expect("write");
    let mut answers = Vec::new();
    // The server closes the connection after refusing the second request.
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answers))
        .await
        .expect("closed within 10 s")
        .expect("read");
    let answers = String::from_utf8(answers).expect("UTF-8 answers");
    let second = answers.rfind("HTTP/1.1 ").expect("two answers");
    assert!(answers.starts_with("HTTP/1.1 200 OK\r\n"), "{answers}");
    assert!(answers[second..].starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answers}");
    let body = answers[second..].split_once("\r\n\r\n").expect("a head").1;
    let error: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(error["errcode"], "M_UNKNOWN", "{answers}");
}

/// Over HTTP/2 the header list a client may send is announced large enough for any URI
/// a request can carry, so a long query is served as over HTTP/1 (it was answered by the
/// `h2` crate itself, with an empty 431, beyond 16 KiB).
#[tokio::test]
async fn a_long_uri_over_http2_is_served_as_over_http1() {
    let server = Server::start().await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    for length in [20 * 1024, 60 * 1024] {
        let query = "a".repeat(length);
        let resp = h2c
            .get(format!("{}/_matrix/client/versions?q={query}", server.base_url()))
            .send()
            .await
            .expect("an answer");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200, "a {length}-byte query");
    }
}
