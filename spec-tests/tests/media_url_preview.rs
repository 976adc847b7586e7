//! Link previews (`GET /_matrix/client/v1/media/preview_url` and the legacy
//! `/_matrix/media/{v3,r0}/preview_url`), against a small web server this test runs on
//! loopback: OpenGraph pages, a page with only a title, an oEmbed page and its document, a
//! PNG, redirects, a huge body and a slow answer. The preview's image comes back as an
//! `mxc://` URI served by the media endpoints; previews are cached; the outbound rule
//! (`outbound.allowed_networks`) holds for the page and for every redirect; the off switch,
//! bad input and authentication get their errors.

use std::{
    collections::HashMap,
    io::Cursor,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use spec_tests::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const PASSWORD: &str = "correct horse battery staple";
const PREVIEW: &str = "/_matrix/client/v1/media/preview_url";
const LEGACY_PREVIEW: &str = "/_matrix/media/v3/preview_url";
const R0_PREVIEW: &str = "/_matrix/media/r0/preview_url";

/// The most a preview reads of one answer here, well under `/huge`.
const MAX_FETCH: usize = 64 * 1024;

/// A server that may fetch from 127.0.0.1 only (not the rest of 127.0.0.0/8), with a small
/// fetch limit and a short time limit.
fn config_opening(networks: &str) -> String {
    format!(
        "{TEST_CONFIG}\n[media.url_preview]\nmax_fetch_bytes = {MAX_FETCH}\ntimeout_secs = 2\n\
         [outbound]\nallowed_networks = {networks}\n"
    )
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

/// The web server previews are made of; counts the requests for each path.
struct Site {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Site {
    /// Serves on `ip` (a loopback address) at a free port.
    async fn start(ip: [u8; 4]) -> Site {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await.expect("bind the test site");
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hits = counted.clone();
                tokio::spawn(async move { serve(stream, addr, hits).await });
            }
        });
        Site { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

async fn serve(mut stream: TcpStream, addr: SocketAddr, hits: Arc<Mutex<HashMap<String, usize>>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    *hits.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    let html = |body: String| ("200 OK", "text/html; charset=utf-8", body.into_bytes(), vec![]);
    let (status, content_type, body, extra): (&str, &str, Vec<u8>, Vec<String>) = match path {
        "/og.html" => html(
            r#"<!doctype html><html><head><title>Not this title</title>
            <meta property="og:title" content="Ducks &amp; Geese">
            <meta property="og:description" content="All about waterfowl.">
            <meta property="og:site_name" content="Bird Site">
            <meta property="og:image" content="/image.png">
            </head><body><p>text</p></body></html>"#
                .to_owned(),
        ),
        "/title.html" => {
            html("<html><head><title>Only a title</title></head><body>hi</body></html>".to_owned())
        }
        "/oembed.html" => html(format!(
            r#"<html><head><title>Video page</title>
            <link rel="alternate" type="application/json+oembed" href="http://{addr}/oembed.json">
            </head></html>"#
        )),
        "/oembed.json" => (
            "200 OK",
            "application/json",
            serde_json::to_vec(&json!({
                "version": "1.0",
                "type": "video",
                "title": "A video from oEmbed",
                "provider_name": "Tube",
                "thumbnail_url": "/image.png",
                "html": "<iframe></iframe>",
            }))
            .unwrap(),
            vec![],
        ),
        "/image.png" => ("200 OK", "image/png", png(40, 30), vec![]),
        "/redirect" => ("302 Found", "text/plain", vec![], vec!["Location: /og.html".to_owned()]),
        // To a loopback address the test servers' outbound list does not open (so the
        // refusal is shown without any traffic leaving this machine), at `?port=`.
        "/redirect-away" => {
            let port = query.strip_prefix("port=").unwrap_or("1");
            ("302 Found", "text/plain", vec![], vec![format!("Location: http://127.0.0.2:{port}/og.html")])
        }
        "/redirect-loop" => ("302 Found", "text/plain", vec![], vec!["Location: /redirect-loop".to_owned()]),
        "/huge" => ("200 OK", "text/html", vec![b'a'; 4 * MAX_FETCH], vec![]),
        "/huge-unannounced" => {
            // No Content-Length: the body ends when the connection closes.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            for _ in 0..64 {
                if stream.write_all(&[b'b'; MAX_FETCH / 8]).await.is_err() {
                    return;
                }
            }
            return;
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            html("<title>Too late</title>".to_owned())
        }
        "/missing" => ("404 Not Found", "text/html", b"gone".to_vec(), vec![]),
        "/plain.txt" => ("200 OK", "text/plain", b"just text".to_vec(), vec![]),
        _ => ("404 Not Found", "text/plain", vec![], vec![]),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(&line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn preview_path(base: &str, url: &str) -> String {
    format!("{base}?url={}", enc(url))
}

async fn preview(client: &Client, url: &str) -> Resp {
    client.get(&preview_path(PREVIEW, url)).await
}

/// `{server}/{media id}` of an `mxc://` URI.
fn media_path(mxc: &str) -> String {
    let (server, id) = mxc.strip_prefix("mxc://").expect("an mxc URI").split_once('/').unwrap();
    format!("{}/{}", enc(server), enc(id))
}

#[tokio::test]
async fn opengraph_page_with_its_image_stored_as_media() {
    let site = Site::start([127, 0, 0, 1]).await;
    let server = Server::start_with_config(&config_opening(r#"["127.0.0.1/32"]"#)).await;
    let alice = server.client().register("alice", PASSWORD).await;

    let og = preview(&alice, &site.url("/og.html")).await.expect(200);
    assert_eq!(og["og:title"], "Ducks & Geese", "{og:#}");
    assert_eq!(og["og:description"], "All about waterfowl.");
    assert_eq!(og["og:site_name"], "Bird Site");
    assert_eq!(og["og:image:width"], 40);
    assert_eq!(og["og:image:height"], 30);
    assert_eq!(og["og:image:type"], "image/png");
    let size = png(40, 30).len();
    assert_eq!(og["matrix:image:size"], size);
    let mxc = og["og:image"].as_str().expect("og:image");
    assert!(mxc.starts_with(&format!("mxc://{}/", rooms::server_name_of(alice.user_id()))), "{mxc}");

    // The image is a file of this server's content repository.
    let download = alice.get(&format!("/_matrix/client/v1/media/download/{}", media_path(mxc))).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.headers["content-type"], "image/png");
    assert_eq!(download.headers["content-length"], size.to_string().as_str());
    let thumbnail = alice
        .get(&format!(
            "/_matrix/client/v1/media/thumbnail/{}?width=16&height=16&method=scale",
            media_path(mxc)
        ))
        .await;
    assert_eq!(thumbnail.status, 200);
    assert!(thumbnail.headers["content-type"].to_str().unwrap().starts_with("image/"));

    // Asked again, on any path, with a `ts` and with a fragment (never sent, so the same
    // page), the preview comes from the cache: the site is not asked.
    assert_eq!((site.hits("/og.html"), site.hits("/image.png")), (1, 1));
    for (base, url) in [(PREVIEW, "/og.html"), (LEGACY_PREVIEW, "/og.html#part"), (R0_PREVIEW, "/og.html")] {
        let again = alice.get(&format!("{}&ts=1234", preview_path(base, &site.url(url)))).await.expect(200);
        assert_eq!(again, og, "{base}");
    }
    assert_eq!((site.hits("/og.html"), site.hits("/image.png")), (1, 1));

    // Another page showing the same image gets the same stored file, not a second copy.
    let og2 = preview(&alice, &site.url("/oembed.html")).await.expect(200);
    assert_eq!(og2["og:image"], og["og:image"], "{og2:#}");
    assert_eq!(site.hits("/image.png"), 1);

    // Several asking for the same new page at once make one fetch.
    let bob = server.client().register("bob", PASSWORD).await;
    let url = site.url("/title.html");
    let (a, b, c) = tokio::join!(preview(&alice, &url), preview(&bob, &url), preview(&alice, &url));
    for resp in [a, b, c] {
        let og = resp.expect(200);
        assert_eq!(og["og:title"], "Only a title", "{og:#}");
        assert!(og.get("og:image").is_none(), "{og:#}");
    }
    assert_eq!(site.hits("/title.html"), 1);
}

#[tokio::test]
async fn fallbacks_oembed_images_and_redirects() {
    let site = Site::start([127, 0, 0, 1]).await;
    let server = Server::start_with_config(&config_opening(r#"["127.0.0.1/32"]"#)).await;
    let alice = server.client().register("alice", PASSWORD).await;

    // A page without OpenGraph tags but with an oEmbed document: the document's title
    // beats the page's <title>, and its thumbnail is the image.
    let og = preview(&alice, &site.url("/oembed.html")).await.expect(200);
    assert_eq!(og["og:title"], "A video from oEmbed", "{og:#}");
    assert_eq!(og["og:site_name"], "Tube", "{og:#}");
    assert!(og["og:image"].as_str().unwrap().starts_with("mxc://"), "{og:#}");
    assert_eq!(site.hits("/oembed.json"), 1);

    // A URL that is an image previews as that image.
    let og = preview(&alice, &site.url("/image.png")).await.expect(200);
    assert!(og["og:image"].as_str().unwrap().starts_with("mxc://"), "{og:#}");
    assert_eq!((og["og:image:width"].as_u64(), og["og:image:height"].as_u64()), (Some(40), Some(30)));

    // A redirect is followed to the page.
    let og = preview(&alice, &site.url("/redirect")).await.expect(200);
    assert_eq!(og["og:title"], "Ducks & Geese", "{og:#}");

    // A page with nothing to say gives an empty preview.
    assert_eq!(preview(&alice, &site.url("/plain.txt")).await.expect(200), json!({}));

    // Redirecting for ever is given up.
    preview(&alice, &site.url("/redirect-loop")).await.expect_error(502, "M_UNKNOWN");
    assert!(site.hits("/redirect-loop") <= 6, "{}", site.hits("/redirect-loop"));
}

#[tokio::test]
async fn the_outbound_rule_holds_for_the_page_and_every_redirect() {
    // What 127.0.0.1's redirect points to, which no test server may reach.
    let away = Site::start([127, 0, 0, 2]).await;
    let site = Site::start([127, 0, 0, 1]).await;
    let opened = Server::start_with_config(&config_opening(r#"["127.0.0.1/32"]"#)).await;
    let alice = opened.client().register("alice", PASSWORD).await;

    let away_url = format!("http://127.0.0.2:{}/og.html", away.addr.port());
    let resp = preview(&alice, &away_url).await;
    resp.expect_error(403, "M_UNKNOWN");
    assert!(resp.body["error"].as_str().unwrap().contains("outbound.allowed_networks"), "{}", resp.body);

    // The same address reached through a redirect.
    let redirect = site.url(&format!("/redirect-away?port={}", away.addr.port()));
    let resp = preview(&alice, &redirect).await;
    resp.expect_error(403, "M_UNKNOWN");
    assert!(resp.body["error"].as_str().unwrap().contains("outbound.allowed_networks"), "{}", resp.body);
    assert_eq!(site.hits("/redirect-away"), 1);
    assert_eq!(away.total_hits(), 0, "the refused address was never contacted");

    // A server whose list opens nothing refuses loopback, by address or by name, and never
    // contacts the site.
    let closed = Server::start_with_config(&config_opening("[]")).await;
    let bob = closed.client().register("bob", PASSWORD).await;
    let before = site.total_hits();
    for url in [site.url("/og.html"), format!("http://localhost:{}/og.html", site.addr.port())] {
        let resp = preview(&bob, &url).await;
        resp.expect_error(403, "M_UNKNOWN");
        assert!(resp.body["error"].as_str().unwrap().contains("outbound.allowed_networks"), "{}", resp.body);
    }
    assert_eq!(site.total_hits(), before, "the site was never contacted");
}

#[tokio::test]
async fn large_slow_and_failing_pages() {
    let site = Site::start([127, 0, 0, 1]).await;
    let server = Server::start_with_config(&config_opening(r#"["127.0.0.1/32"]"#)).await;
    let alice = server.client().register("alice", PASSWORD).await;

    // Announced or not, a body over the limit is refused.
    preview(&alice, &site.url("/huge")).await.expect_error(502, "M_TOO_LARGE");
    preview(&alice, &site.url("/huge-unannounced")).await.expect_error(502, "M_TOO_LARGE");

    // The time limit (2 s here) ends a preview of a page that does not answer.
    let started = Instant::now();
    preview(&alice, &site.url("/slow")).await.expect_error(502, "M_UNKNOWN");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    // An error status, and a port nothing listens on.
    preview(&alice, &site.url("/missing")).await.expect_error(502, "M_UNKNOWN");
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = unused.local_addr().unwrap().port();
    drop(unused);
    preview(&alice, &format!("http://127.0.0.1:{closed_port}/")).await.expect_error(502, "M_UNKNOWN");

    // The server is fine afterwards.
    assert_eq!(preview(&alice, &site.url("/title.html")).await.expect(200)["og:title"], "Only a title");
}

#[tokio::test]
async fn bad_input_and_authentication() {
    let server = Server::start_with_config(&config_opening(r#"["127.0.0.1/32"]"#)).await;
    let alice = server.client().register("alice", PASSWORD).await;

    alice.get(PREVIEW).await.expect_error(400, "M_MISSING_PARAM");
    alice.get(LEGACY_PREVIEW).await.expect_error(400, "M_MISSING_PARAM");
    for url in
        ["not a url", "/relative/path", "ftp://127.0.0.1/file", "file:///etc/passwd", "javascript:alert(1)"]
    {
        preview(&alice, url).await.expect_error(400, "M_INVALID_PARAM");
    }
    for base in [PREVIEW, LEGACY_PREVIEW, R0_PREVIEW] {
        server
            .client()
            .get(&preview_path(base, "http://127.0.0.1/"))
            .await
            .expect_error(401, "M_MISSING_TOKEN");
    }
}

#[tokio::test]
async fn previews_can_be_turned_off() {
    let site = Site::start([127, 0, 0, 1]).await;
    let config = format!(
        "{TEST_CONFIG}\n[media.url_preview]\nenabled = false\n[outbound]\nallowed_networks = [\"127.0.0.1/32\"]\n"
    );
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    for base in [PREVIEW, LEGACY_PREVIEW, R0_PREVIEW] {
        alice.get(&preview_path(base, &site.url("/og.html"))).await.expect_error(404, "M_UNRECOGNIZED");
    }
    assert_eq!(site.total_hits(), 0);
}
