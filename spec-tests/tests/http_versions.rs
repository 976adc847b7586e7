//! The HTTP versions the listeners speak: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on
//! the plain client listener; HTTP/2 or HTTP/1.1, as ALPN settles, on the TLS federation
//! listener. And how long an HTTP/1 client may take over its headers.

use reqwest::Version;
use spec_tests::*;

const VERSIONS: &str = "/_matrix/client/versions";

async fn get_versions(http: &reqwest::Client, base: &str) -> Version {
    let resp = http.get(format!("{base}{VERSIONS}")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    let version = resp.version();
    let body: Value = resp.json().await.expect("JSON body");
    assert!(body["versions"].as_array().is_some_and(|v| !v.is_empty()), "{body}");
    version
}

#[tokio::test]
async fn the_client_listener_speaks_http1_and_http2_with_prior_knowledge() {
    let server = Server::start().await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    assert_eq!(get_versions(&h2c, &server.base_url()).await, Version::HTTP_2);
    let h1 = reqwest::Client::builder().http1_only().build().expect("client");
    assert_eq!(get_versions(&h1, &server.base_url()).await, Version::HTTP_11);
}

#[tokio::test]
async fn an_http1_request_whose_first_byte_arrives_alone_is_served() {
    // "P" alone could be the start of the HTTP/2 preface ("PRI * HTTP/2.0..."): the server
    // has to wait for more before it picks the protocol.
    let server = Server::start().await;
    let request = b"PUT /_matrix/client/v3/rooms/!r:localhost/send/m.room.message/1 HTTP/1.1\r\n\
                    Host: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    raw_http_in_pieces(server.addr, &[&request[..1], &request[1..]])
        .await
        .expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn the_federation_listener_negotiates_http2_or_http1_by_alpn() {
    let server = Server::start_federating().await;
    assert_eq!(federation_version(&server, false).await, Version::HTTP_2);
    assert_eq!(federation_version(&server, true).await, Version::HTTP_11);
}

/// The HTTP version of a federation request from a client that offers HTTP/2 by ALPN unless
/// `http1_only`.
async fn federation_version(server: &Server, http1_only: bool) -> Version {
    let cert = reqwest::Certificate::from_pem(server.federation().cert_pem.as_bytes()).expect("PEM");
    let builder = reqwest::Client::builder().tls_built_in_root_certs(false).add_root_certificate(cert);
    let http = if http1_only { builder.http1_only() } else { builder }.build().expect("HTTPS client");
    let url = format!("{}/_matrix/federation/v1/version", server.federation_url());
    let resp = http.get(url).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    resp.version()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        Server::start_with_config(&format!("{TEST_CONFIG}\n[limits]\nheader_timeout_secs = 1\n")).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let started = std::time::Instant::now();
    // Whatever the server says on closing, the connection ends.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still connected after 10 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed before the timeout");
    // A client that sends its request in time is served as before.
    raw_http(server.addr, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect(200);
}
