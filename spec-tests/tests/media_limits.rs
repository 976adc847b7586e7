//! Limits on what media takes (issue #25): a per-user quota (`media.user_quota_bytes`,
//! refused with 403 `M_FORBIDDEN` as the spec lists for a full quota; deleting a file gives
//! its room back) and a lifetime for uploads (`retention.local_media_lifetime`), after
//! which the file is gone from the server and from the disk.

use std::time::{Duration, Instant};

use spec_tests::{admin_api::*, rooms::PASSWORD, *};

const UPLOAD: &str = "/_matrix/media/v3/upload";
const CREATE: &str = "/_matrix/media/v1/create";

/// `(status, body)` of a raw request with a token.
async fn send(client: &Client, method: &str, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", client.base))
        .bearer_auth(client.access_token.as_deref().unwrap())
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn upload(client: &Client, size: usize) -> (u16, Value) {
    send(client, "POST", UPLOAD, vec![7u8; size]).await
}

/// `{server}/{id}` of an `mxc://` URI.
fn media_path(mxc: &Value) -> String {
    mxc.as_str().unwrap().strip_prefix("mxc://").unwrap().to_owned()
}

#[tokio::test]
async fn uploads_past_a_users_quota_are_refused_until_space_is_freed() {
    let config = format!("{UNLIMITED_CONFIG}\n[media]\nuser_quota_bytes = 1000\n");
    let server = Server::start_with_config(&config).await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;

    let (status, first) = upload(&alice, 600).await;
    assert_eq!(status, 200, "{first}");
    let (status, refused) = upload(&alice, 500).await;
    assert_eq!((status, refused["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{refused}");
    // An asynchronous upload counts when its bytes come, not when the id is reserved.
    let (status, reserved) = send(&alice, "POST", CREATE, Vec::new()).await;
    assert_eq!(status, 200, "{reserved}");
    let reserved_path = format!("/_matrix/media/v3/upload/{}", media_path(&reserved["content_uri"]));
    let (status, body) = send(&alice, "PUT", &reserved_path, vec![1u8; 500]).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    // The quota is each user's own.
    assert_eq!(upload(&bob, 600).await.0, 200);
    // What fits still goes in.
    assert_eq!(upload(&alice, 400).await.0, 200);
    assert_eq!(upload(&alice, 1).await.0, 403);

    let deleted =
        root.delete(&admin_path(&format!("v1/media/{}", media_path(&first["content_uri"]))), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let (status, body) = send(&alice, "PUT", &reserved_path, vec![1u8; 500]).await;
    assert_eq!(status, 200, "deleting a file did not give its room back: {body}");
}

#[tokio::test]
async fn uploads_past_their_lifetime_are_removed_from_the_disk() {
    let config = format!(
        "{UNLIMITED_CONFIG}\n[retention]\nenabled = true\npurge_interval = \"1s\"\nlocal_media_lifetime = \"2s\"\n"
    );
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let (status, uploaded) = upload(&alice, 100).await;
    assert_eq!(status, 200, "{uploaded}");
    let path = media_path(&uploaded["content_uri"]);
    let media_id = path.rsplit('/').next().unwrap().to_owned();
    let download = format!("/_matrix/client/v1/media/download/{path}");
    assert_eq!(send(&alice, "GET", &download, Vec::new()).await.0, 200);
    assert!(server.data_dir().join("media").join(&media_id).exists());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = send(&alice, "GET", &download, Vec::new()).await;
        if status == 404 {
            assert_eq!(body["errcode"], "M_NOT_FOUND");
            break;
        }
        assert!(Instant::now() < deadline, "the upload outlived its lifetime");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!server.data_dir().join("media").join(&media_id).exists(), "the file is still on disk");
    let verified = cli_ok(&server.cli(&["db", "verify"], None));
    assert!(verified.contains("verifies clean"), "{verified}");
}
