//! The content repository: `POST /_matrix/media/v3/upload`, downloads on the authenticated
//! (`/_matrix/client/v1/media/download`) and legacy (`/_matrix/media/v3/download`) paths,
//! file names and `Content-Disposition`, the headers that keep browsers from running
//! uploads, size limits, thumbnails of real PNGs, asynchronous uploads
//! (`/media/v1/create` then `PUT /upload/{server}/{id}`), `/config` on both paths, and the
//! freeze of the legacy paths: they serve only files stored before it (or while
//! `media.allow_legacy_unauthenticated` is on).

use std::{
    io::Cursor,
    time::{Duration, Instant},
};

use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::header::HeaderMap;
use spec_tests::*;

const PASSWORD: &str = "correct horse battery staple";
const UPLOAD: &str = "/_matrix/media/v3/upload";
const CREATE: &str = "/_matrix/media/v1/create";

/// Without the freeze, for the tests of what the legacy paths do with what they serve.
const UNFROZEN: &str = "[rate_limits]\nenabled = false\n[media]\nallow_legacy_unauthenticated = true\n";

/// A raw media response: status, headers and body bytes.
struct Got {
    status: u16,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    #[track_caller]
    fn expect_error(&self, status: u16, errcode: &str) {
        let body = self.json();
        assert_eq!((self.status, body["errcode"].as_str().unwrap_or("")), (status, errcode), "{body}");
    }
}

async fn send(client: &Client, method: &str, path: &str, content_type: Option<&str>, bytes: Vec<u8>) -> Got {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut request = http.request(method.parse().unwrap(), format!("{}{path}", client.base)).body(bytes);
    if let Some(token) = &client.access_token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("HTTP request");
    Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.unwrap().to_vec(),
    }
}

async fn get(client: &Client, path: &str) -> Got {
    send(client, "GET", path, None, Vec::new()).await
}

/// Uploads `bytes` and returns the `mxc://` URI.
async fn upload(client: &Client, content_type: &str, filename: Option<&str>, bytes: &[u8]) -> String {
    let path = match filename {
        Some(name) => format!("{UPLOAD}?filename={}", enc(name)),
        None => UPLOAD.to_owned(),
    };
    let got = send(client, "POST", &path, Some(content_type), bytes.to_vec()).await;
    assert_eq!(got.status, 200, "{}", got.json());
    got.json()["content_uri"].as_str().expect("content_uri").to_owned()
}

/// `{server}/{media id}` of an `mxc://` URI.
fn media_path(mxc: &str) -> String {
    let rest = mxc.strip_prefix("mxc://").expect("an mxc URI");
    let (server, id) = rest.split_once('/').unwrap();
    format!("{}/{}", enc(server), enc(id))
}

fn download_path(mxc: &str) -> String {
    format!("/_matrix/client/v1/media/download/{}", media_path(mxc))
}

fn legacy_download_path(mxc: &str) -> String {
    format!("/_matrix/media/v3/download/{}", media_path(mxc))
}

fn thumbnail_path(mxc: &str, width: u32, height: u32, method: &str) -> String {
    format!(
        "/_matrix/client/v1/media/thumbnail/{}?width={width}&height={height}&method={method}",
        media_path(mxc)
    )
}

fn png(image: DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

/// An opaque PNG with a gradient, so scaling has something to do.
fn opaque_png(width: u32, height: u32) -> Vec<u8> {
    png(DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })))
}

fn transparent_png(width: u32, height: u32) -> Vec<u8> {
    png(DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, Rgba([10, 200, 10, 100]))))
}

#[tokio::test]
async fn an_upload_downloads_byte_identical_on_both_paths() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mxc = upload(&alice, "application/octet-stream", None, &bytes).await;
    assert!(mxc.starts_with("mxc://"), "{mxc}");
    let media_id = mxc.rsplit('/').next().unwrap();
    assert!(media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{mxc}");

    for path in [download_path(&mxc), legacy_download_path(&mxc)] {
        let got = get(&alice, &path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.json());
        assert!(got.bytes == bytes, "{path}: the bytes differ");
        assert_eq!(got.header("content-type"), "application/octet-stream", "{path}");
    }

    // Another user may download it; the authenticated path needs a token, the legacy one not.
    let bob = server.client().register("bob", PASSWORD).await;
    assert!(get(&bob, &download_path(&mxc)).await.bytes == bytes);
    get(&server.client(), &download_path(&mxc)).await.expect_error(401, "M_MISSING_TOKEN");
    let anonymous = get(&server.client(), &legacy_download_path(&mxc)).await;
    assert_eq!(anonymous.status, 200);
    assert!(anonymous.bytes == bytes);
}

#[tokio::test]
async fn uploads_need_a_token() {
    let server = Server::start().await;
    let got = send(&server.client(), "POST", UPLOAD, Some("text/plain"), b"hi".to_vec()).await;
    got.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn the_upload_file_name_and_the_file_name_variant_set_content_disposition() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let named = upload(&alice, "text/plain", Some("notes.txt"), b"some notes").await;
    let unnamed = upload(&alice, "text/plain", None, b"other notes").await;

    for path in [download_path(&named), legacy_download_path(&named)] {
        let got = get(&alice, &path).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), "text/plain", "{path}");
        let disposition = got.header("content-disposition");
        assert!(disposition.starts_with("inline"), "{path}: {disposition}");
        // A token or a quoted string (RFC 6266).
        assert!(
            disposition.contains("filename=notes.txt") || disposition.contains("filename=\"notes.txt\""),
            "{path}: {disposition}"
        );
    }
    let got = get(&alice, &download_path(&unnamed)).await;
    assert!(!got.header("content-disposition").contains("filename"), "{}", got.header("content-disposition"));

    // The `/{fileName}` variant names the download whatever the upload was called.
    for path in [
        format!("{}/{}", download_path(&named), enc("report final.txt")),
        format!("{}/{}", legacy_download_path(&unnamed), enc("report final.txt")),
    ] {
        let got = get(&alice, &path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.json());
        let disposition = got.header("content-disposition");
        assert!(disposition.contains("report final.txt"), "{path}: {disposition}");
        assert!(!disposition.contains("notes.txt"), "{path}: {disposition}");
    }
}

#[tokio::test]
async fn downloads_carry_a_restrictive_csp_and_nosniff_and_scripts_are_attachments() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let html = upload(&alice, "text/html", Some("page.html"), b"<script>alert(1)</script>").await;
    let svg = upload(&alice, "image/svg+xml", None, b"<svg xmlns='http://www.w3.org/2000/svg'/>").await;
    let image = upload(&alice, "image/png", None, &opaque_png(8, 8)).await;

    for mxc in [&html, &svg, &image] {
        for path in [download_path(mxc), legacy_download_path(mxc), thumbnail_path(&image, 4, 4, "scale")] {
            let got = get(&alice, &path).await;
            assert_eq!(got.status, 200, "{path}: {}", got.json());
            let csp = got.header("content-security-policy");
            for directive in ["sandbox", "default-src 'none'", "script-src 'none'"] {
                assert!(csp.contains(directive), "{path}: CSP {csp:?} lacks {directive}");
            }
            assert_eq!(got.header("x-content-type-options"), "nosniff", "{path}");
        }
    }
    for mxc in [&html, &svg] {
        let got = get(&alice, &download_path(mxc)).await;
        assert!(
            got.header("content-disposition").starts_with("attachment"),
            "{}",
            got.header("content-disposition")
        );
    }
    let got = get(&alice, &download_path(&image)).await;
    assert!(got.header("content-disposition").starts_with("inline"), "{}", got.header("content-disposition"));
}

#[tokio::test]
async fn an_upload_over_the_configured_limit_is_413_too_large_and_config_reports_the_limit() {
    let config = "[rate_limits]\nenabled = false\n[media]\nmax_upload_bytes = 10000\n";
    let server = Server::start_with_config(config).await;
    let alice = server.client().register("alice", PASSWORD).await;

    let got = send(&alice, "POST", UPLOAD, Some("application/octet-stream"), vec![7; 10_001]).await;
    got.expect_error(413, "M_TOO_LARGE");
    upload(&alice, "application/octet-stream", None, &[7; 10_000]).await;

    // An asynchronous upload has the same limit.
    let created = send(&alice, "POST", CREATE, None, Vec::new()).await;
    assert_eq!(created.status, 200, "{}", created.json());
    let mxc = created.json()["content_uri"].as_str().unwrap().to_owned();
    let path = format!("{UPLOAD}/{}", media_path(&mxc));
    send(&alice, "PUT", &path, Some("text/plain"), vec![b'a'; 10_001]).await.expect_error(413, "M_TOO_LARGE");

    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let got = get(&alice, path).await;
        assert_eq!(
            (got.status, &got.json()["m.upload.size"]),
            (200, &json!(10_000)),
            "{path}: {}",
            got.json()
        );
    }
    get(&server.client(), "/_matrix/client/v1/media/config").await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn unknown_or_malformed_media_is_404_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let server_name = alice.user_id().split_once(':').unwrap().1.to_owned();
    for id in ["doesnotexist", "bad%id", "a.b"] {
        let mxc = format!("mxc://{server_name}/{id}");
        for path in [download_path(&mxc), legacy_download_path(&mxc), thumbnail_path(&mxc, 32, 32, "crop")] {
            get(&alice, &path).await.expect_error(404, "M_NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn thumbnails_of_a_png_fit_the_requested_box() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let opaque = upload(&alice, "image/png", None, &opaque_png(400, 200)).await;
    let transparent = upload(&alice, "image/png", None, &transparent_png(300, 300)).await;

    // (image, width, height, method, expected size)
    let cases = [
        (&opaque, 100, 100, "scale", (100, 50)),
        (&opaque, 64, 64, "crop", (64, 64)),
        (&opaque, 800, 600, "scale", (400, 200)),
        (&transparent, 32, 32, "crop", (32, 32)),
        (&transparent, 50, 80, "scale", (50, 50)),
    ];
    for (mxc, width, height, method, expected) in cases {
        let path = thumbnail_path(mxc, width, height, method);
        // The second request is served from the thumbnail made by the first.
        let mut content_types = Vec::new();
        for _ in 0..2 {
            let got = get(&alice, &path).await;
            assert_eq!(got.status, 200, "{path}: {}", got.json());
            let content_type = got.header("content-type").to_owned();
            let format = match content_type.as_str() {
                "image/png" => ImageFormat::Png,
                "image/jpeg" => ImageFormat::Jpeg,
                other => panic!("{path}: thumbnail served as {other:?}"),
            };
            let image = image::load_from_memory_with_format(&got.bytes, format)
                .unwrap_or_else(|e| panic!("{path}: not a {content_type}: {e}"));
            assert_eq!(image.dimensions(), expected, "{path}");
            assert!(image.width() <= width && image.height() <= height, "{path}: larger than asked");
            content_types.push(content_type);
        }
        assert_eq!(content_types[0], content_types[1], "{path}: a cached thumbnail changed its type");
    }

    // The legacy path serves thumbnails too.
    let legacy =
        format!("/_matrix/media/v3/thumbnail/{}?width=10&height=10&method=crop", media_path(&opaque));
    let got = get(&alice, &legacy).await;
    assert_eq!(got.status, 200, "{}", got.json());
    assert_eq!(image::load_from_memory(&got.bytes).unwrap().dimensions(), (10, 10));
}

/// The first requests for one thumbnail, all at once, each get it: they all make it, and
/// each writes it through a temporary file of its own (a shared one was renamed away under
/// the later ones, which then answered 500).
#[tokio::test]
async fn concurrent_first_requests_for_a_thumbnail_all_succeed() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let mxc = upload(&alice, "image/png", None, &opaque_png(400, 200)).await;
    let path = thumbnail_path(&mxc, 32, 32, "crop");
    let requests: Vec<_> = (0..8).map(|_| get(&alice, &path)).collect();
    for got in futures_util::future::join_all(requests).await {
        assert_eq!(got.status, 200, "{path}: {}", got.json());
    }
}

#[tokio::test]
async fn bad_thumbnail_requests_are_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let text = upload(&alice, "text/plain", None, b"not an image at all").await;
    let image = upload(&alice, "image/png", None, &opaque_png(20, 20)).await;

    let got = get(&alice, &thumbnail_path(&text, 32, 32, "scale")).await;
    assert_eq!(got.status, 400, "a thumbnail of text: {}", got.json());
    for query in [
        "width=0&height=10",
        "width=10&height=-1",
        "width=ten&height=10",
        "height=10",
        "width=10&height=10&method=squash",
    ] {
        let path = format!("/_matrix/client/v1/media/thumbnail/{}?{query}", media_path(&image));
        let got = get(&alice, &path).await;
        assert_eq!(got.status, 400, "{query}: {}", got.json());
    }
    get(&server.client(), &thumbnail_path(&image, 8, 8, "crop")).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_asynchronous_upload_fills_a_created_id_once_and_only_by_its_creator() {
    let server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let created = send(&alice, "POST", CREATE, None, Vec::new()).await;
    assert_eq!(created.status, 200, "{}", created.json());
    let body = created.json();
    let mxc = body["content_uri"].as_str().expect("content_uri").to_owned();
    assert!(body["unused_expires_at"].as_u64().is_some(), "{body}");
    let path = format!("{UPLOAD}/{}", media_path(&mxc));

    // Before the upload, a download that will not wait is 504 M_NOT_YET_UPLOADED.
    for download in [download_path(&mxc), legacy_download_path(&mxc)] {
        let started = Instant::now();
        get(&alice, &format!("{download}?timeout_ms=200")).await.expect_error(504, "M_NOT_YET_UPLOADED");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    send(&bob, "PUT", &path, Some("text/plain"), b"bob's".to_vec()).await.expect_error(403, "M_FORBIDDEN");
    send(&server.client(), "PUT", &path, Some("text/plain"), b"x".to_vec())
        .await
        .expect_error(401, "M_MISSING_TOKEN");

    let got =
        send(&alice, "PUT", &format!("{path}?filename=a.txt"), Some("text/plain"), b"alice's".to_vec()).await;
    assert_eq!((got.status, got.json()), (200, json!({})));
    let again = send(&alice, "PUT", &path, Some("text/plain"), b"again".to_vec()).await;
    again.expect_error(409, "M_CANNOT_OVERWRITE_MEDIA");

    let got = get(&bob, &download_path(&mxc)).await;
    assert_eq!((got.status, got.bytes.as_slice()), (200, b"alice's".as_slice()));
    assert!(got.header("content-disposition").contains("a.txt"), "{}", got.header("content-disposition"));

    // An id nobody created cannot be uploaded to.
    let server_name = alice.user_id().split_once(':').unwrap().1.to_owned();
    let unknown = format!("{UPLOAD}/{}/notcreated", enc(&server_name));
    send(&alice, "PUT", &unknown, Some("text/plain"), b"x".to_vec()).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_download_waits_for_a_pending_upload_within_its_timeout() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let mxc = send(&alice, "POST", CREATE, None, Vec::new()).await.json()["content_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("{UPLOAD}/{}", media_path(&mxc));

    let waiting = {
        let alice = alice.clone();
        let download = format!("{}?timeout_ms=15000", download_path(&mxc));
        tokio::spawn(async move { get(&alice, &download).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let got = send(&alice, "PUT", &path, Some("text/plain"), b"worth the wait".to_vec()).await;
    assert_eq!(got.status, 200, "{}", got.json());
    let got = waiting.await.unwrap();
    assert_eq!(got.status, 200, "the waiting download failed: {}", got.json());
    assert_eq!(got.bytes, b"worth the wait");
    assert!(started.elapsed() < Duration::from_secs(10), "the download did not wake up for the upload");
}

/// The spec's freeze (v1.11): the unauthenticated paths serve a file stored before it (here:
/// while `allow_legacy_unauthenticated` was on, as a file from an older Myelin is), and
/// answer 404 for one stored after it, which the authenticated paths serve.
#[tokio::test]
async fn the_legacy_paths_serve_only_files_stored_before_the_freeze() {
    let mut server = Server::start_with_config(UNFROZEN).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let old_file = upload(&alice, "text/plain", Some("old.txt"), b"from before").await;
    let old_image = upload(&alice, "image/png", None, &opaque_png(40, 40)).await;
    assert!(server.stop().await.success());
    std::fs::write(server.config_path(), TEST_CONFIG).unwrap();
    server.restart().await;

    let new_file = upload(&alice, "text/plain", Some("new.txt"), b"from after").await;
    let new_image = upload(&alice, "image/png", None, &opaque_png(40, 40)).await;
    let reserved = send(&alice, "POST", CREATE, None, Vec::new()).await.json()["content_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let legacy_thumbnail = |mxc: &str, version: &str| {
        format!("/_matrix/media/{version}/thumbnail/{}?width=8&height=8", media_path(mxc))
    };
    let anonymous = server.client();

    for version in ["v3", "r0"] {
        let download = |mxc: &str| format!("/_matrix/media/{version}/download/{}", media_path(mxc));
        let got = get(&anonymous, &download(&old_file)).await;
        assert_eq!((got.status, got.bytes.as_slice()), (200, b"from before".as_slice()), "{version}");
        let got = get(&anonymous, &format!("{}/renamed.txt", download(&old_file))).await;
        assert_eq!(got.status, 200, "{version}: {}", got.json());
        assert_eq!(get(&anonymous, &legacy_thumbnail(&old_image, version)).await.status, 200, "{version}");

        get(&anonymous, &download(&new_file)).await.expect_error(404, "M_NOT_FOUND");
        get(&alice, &download(&new_file)).await.expect_error(404, "M_NOT_FOUND");
        get(&anonymous, &format!("{}/renamed.txt", download(&new_file)))
            .await
            .expect_error(404, "M_NOT_FOUND");
        get(&anonymous, &legacy_thumbnail(&new_image, version)).await.expect_error(404, "M_NOT_FOUND");
        // Not worth waiting for either.
        let started = Instant::now();
        get(&anonymous, &format!("{}?timeout_ms=5000", download(&reserved)))
            .await
            .expect_error(404, "M_NOT_FOUND");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    for mxc in [&old_file, &new_file] {
        assert_eq!(get(&alice, &download_path(mxc)).await.status, 200);
    }
    assert_eq!(get(&alice, &thumbnail_path(&new_image, 8, 8, "scale")).await.status, 200);
}
