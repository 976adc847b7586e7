//! A server that predates authenticated media (Matrix v1.11) answers the federation media
//! endpoint with 404 `M_UNRECOGNIZED`; the spec then requires falling back to its
//! deprecated `/_matrix/media/v3/download`, with `allow_remote=false`. The old server here
//! is a stand-in speaking just enough HTTP over TLS.

use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use spec_tests::{federation::self_signed_certificate, rooms::PASSWORD, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FILE: &[u8] = b"a file from an old server\n";

/// Serves one answer per request on `listener`: `M_UNRECOGNIZED` for the federation media
/// endpoint, the file `oldfile1` on the legacy one, 404 for anything else. Records each request line.
async fn old_server(listener: tokio::net::TcpListener, seen: Arc<Mutex<Vec<String>>>) {
    let (cert, key) = self_signed_certificate();
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("certificate")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
            seen.lock().unwrap().push(line.clone());
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let (status, kind, extra, body): (&str, &str, &str, Vec<u8>) =
                if path.starts_with("/_matrix/federation/v1/media/download/") {
                    let body = br#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#.to_vec();
                    ("404 Not Found", "application/json", "", body)
                } else if path.starts_with("/_matrix/media/v3/download/") && path.contains("/oldfile1") {
                    (
                        "200 OK",
                        "text/plain",
                        "Content-Disposition: inline; filename=\"old.txt\"\r\n",
                        FILE.to_vec(),
                    )
                } else {
                    (
                        "404 Not Found",
                        "application/json",
                        "",
                        br#"{"errcode":"M_NOT_FOUND","error":"no"}"#.to_vec(),
                    )
                };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(&body).await;
            let _ = tls.shutdown().await;
        });
    }
}

#[tokio::test]
async fn media_of_a_server_without_authenticated_media_comes_through_the_legacy_endpoint() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let old = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(old_server(listener, seen.clone()));

    let server = Server::start_federating().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let token = alice.access_token.clone().expect("logged in");
    let download = |media_id: &str| {
        let url = format!("{}/_matrix/client/v1/media/download/{}/{media_id}", server.base_url(), enc(&old));
        let token = token.clone();
        async move {
            let reply = reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("download");
            (reply.status().as_u16(), reply.bytes().await.expect("body").to_vec())
        }
    };
    let (status, bytes) = download("oldfile1").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, FILE);
    let requests = seen.lock().unwrap().clone();
    assert!(requests[0].starts_with("GET /_matrix/federation/v1/media/download/oldfile1"), "{requests:?}");
    let legacy =
        requests.iter().find(|r| r.contains("/_matrix/media/v3/download/")).expect("a legacy request");
    assert!(
        legacy.contains(&format!("/_matrix/media/v3/download/{old}/oldfile1?allow_remote=false")),
        "{legacy}"
    );

    // Cached from then on: a second download asks the old server nothing.
    let before = seen.lock().unwrap().len();
    assert_eq!(download("oldfile1").await, (200, FILE.to_vec()));
    assert_eq!(seen.lock().unwrap().len(), before, "served from the cache");

    // A file the old server does not have either is not found here.
    assert_eq!(download("nothing").await.0, 404);
}
