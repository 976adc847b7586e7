//! Synapse-compatible admin API: media (a user's uploads, deleting a file with its
//! thumbnails, quarantine: a quarantined file is served to nobody).

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use spec_tests::{admin_api::*, rooms::PASSWORD, *};

/// Uploads `bytes` as `name`; returns the media id.
async fn upload(client: &Client, name: &str, bytes: Vec<u8>) -> String {
    let path = format!("/_matrix/media/v3/upload?filename={}", enc(name));
    let reply = client.request_raw("POST", &path, bytes).await.expect(200);
    let uri = reply["content_uri"].as_str().unwrap();
    uri.rsplit('/').next().unwrap().to_owned()
}

fn download(media_id: &str) -> String {
    format!("/_matrix/client/v1/media/download/localhost/{media_id}")
}

fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    RgbImage::from_pixel(64, 48, Rgb([200, 30, 30]))
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

fn media_ids(body: &Value) -> Vec<String> {
    body["media"].as_array().unwrap().iter().map(|m| m["media_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn media_endpoints_are_for_admins_only() {
    let server = Server::start().await;
    admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let id = upload(&alice, "a.txt", b"hello".to_vec()).await;
    assert_admin_only(&server, &alice, "GET", &user_path("v1/users", alice.user_id(), "/media"), None).await;
    for path in [format!("quarantine/localhost/{id}"), format!("unquarantine/localhost/{id}")] {
        assert_admin_only(
            &server,
            &alice,
            "POST",
            &admin_path(&format!("v1/media/{path}")),
            Some(&json!({})),
        )
        .await;
    }
    assert_admin_only(&server, &alice, "DELETE", &admin_path(&format!("v1/media/localhost/{id}")), None)
        .await;
    alice.get(&download(&id)).await.expect(200);
}

#[tokio::test]
async fn list_a_users_uploads() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let first = upload(&alice, "b-first.txt", b"one".to_vec()).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = upload(&alice, "a-second.txt", b"second!".to_vec()).await;
    upload(&bob, "bobs.txt", b"not alice's".to_vec()).await;

    let path = user_path("v1/users", "@alice:localhost", "/media");
    let listed = root.get(&path).await.expect(200);
    assert_eq!(media_ids(&listed), [second.clone(), first.clone()], "newest first: {listed}");
    assert_eq!(listed["total"], 2);
    let entry = &listed["media"][0];
    for (field, value) in [
        ("media_length", json!(7)),
        ("upload_name", json!("a-second.txt")),
        ("media_type", json!("application/json")),
        ("quarantined_by", Value::Null),
        ("safe_from_quarantine", json!(false)),
        ("last_access_ts", Value::Null),
    ] {
        assert_eq!(entry[field], value, "{field}: {entry}");
    }
    assert!(entry["created_ts"].as_u64().is_some());
    assert_eq!(
        media_ids(&root.get(&format!("{path}?order_by=upload_name")).await.expect(200)),
        [second.clone(), first.clone()]
    );
    assert_eq!(
        media_ids(&root.get(&format!("{path}?order_by=media_length&dir=b")).await.expect(200)),
        [second.clone(), first.clone()]
    );
    let page = root.get(&format!("{path}?order_by=created_ts&limit=1")).await.expect(200);
    assert_eq!((media_ids(&page), page["next_token"].clone()), (vec![first], json!(1)));

    root.get(&format!("{path}?order_by=colour")).await.expect_error(400, "M_INVALID_PARAM");
    root.get(&format!("{path}?from=-1")).await.expect_error(400, "M_INVALID_PARAM");
    root.get(&user_path("v1/users", "@nobody:localhost", "/media")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&user_path("v1/users", "nobody", "/media")).await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn quarantined_media_is_served_to_nobody() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let id = upload(&alice, "pic.png", png()).await;
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/localhost/{id}?width=16&height=16");
    alice.get(&thumbnail).await.expect(200);

    root.post(&admin_path(&format!("v1/media/quarantine/localhost/{id}")), &json!({})).await.expect(200);
    alice.get(&download(&id)).await.expect_error(404, "M_NOT_FOUND");
    root.get(&download(&id)).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&thumbnail).await.expect_error(404, "M_NOT_FOUND");
    let listed = root.get(&user_path("v1/users", "@alice:localhost", "/media")).await.expect(200);
    assert_eq!(listed["media"][0]["quarantined_by"], "@root:localhost");

    root.post(&admin_path(&format!("v1/media/unquarantine/localhost/{id}")), &json!({})).await.expect(200);
    alice.get(&download(&id)).await.expect(200);

    root.post(&admin_path("v1/media/quarantine/localhost/nosuchmedia"), &json!({}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&admin_path("v1/media/quarantine/bad%20server/x"), &json!({}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn delete_removes_the_file_and_its_thumbnails() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let id = upload(&alice, "pic.png", png()).await;
    let kept = upload(&alice, "other.png", png()).await;
    alice
        .get(&format!("/_matrix/client/v1/media/thumbnail/localhost/{id}?width=16&height=16"))
        .await
        .expect(200);
    let media_dir = server.data_dir().join("media");
    let thumbnails = || -> Vec<String> {
        std::fs::read_dir(media_dir.join("thumbnails"))
            .map(|dir| dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    assert!(thumbnails().iter().any(|name| name.starts_with(&id)), "{:?}", thumbnails());
    assert!(media_dir.join(&id).exists());

    let path = admin_path(&format!("v1/media/localhost/{id}"));
    assert_eq!(root.delete(&path, None).await.expect(200), json!({"deleted_media": [id], "total": 1}));
    alice.get(&download(&id)).await.expect_error(404, "M_NOT_FOUND");
    assert!(!media_dir.join(&id).exists(), "the file is gone");
    assert!(!thumbnails().iter().any(|name| name.starts_with(&id)), "{:?}", thumbnails());
    alice.get(&download(&kept)).await.expect(200);

    root.delete(&path, None).await.expect_error(404, "M_NOT_FOUND");
    root.delete(&admin_path(&format!("v1/media/elsewhere.example/{kept}")), None)
        .await
        .expect_error(400, "M_INVALID_PARAM");
}
