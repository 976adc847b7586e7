//! Device management: `GET /devices`, `GET`/`PUT`/`DELETE /devices/{deviceId}` and
//! `POST /delete_devices` (the deletions behind `m.login.password` UIA).

use spec_tests::*;

const DEVICES: &str = "/_matrix/client/v3/devices";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

fn device_path(id: &str) -> String {
    format!("{DEVICES}/{}", enc(id))
}

async fn device_ids(client: &Client) -> Vec<String> {
    let body = client.get(DEVICES).await.expect(200);
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn devices_lists_each_login_of_the_user_only() {
    let server = Server::start().await;
    let client = server.client();
    let first = client.register("alice", "pw").await;
    let second = client.login("alice", "pw").await;
    let bob = client.register("bob", "pw").await;

    let mut expected = vec![first.device_id.clone().unwrap(), second.device_id.clone().unwrap()];
    expected.sort();
    assert_eq!(device_ids(&first).await, expected);
    assert_eq!(device_ids(&bob).await, [bob.device_id.clone().unwrap()]);

    let body = first.get(DEVICES).await.expect(200);
    for device in body["devices"].as_array().unwrap() {
        assert!(device["last_seen_ts"].is_u64(), "{device}");
        assert!(device["last_seen_ip"].is_string(), "{device}");
    }
}

#[tokio::test]
async fn a_device_can_be_fetched_and_renamed() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let id = alice.device_id.clone().unwrap();
    let device = alice.get(&device_path(&id)).await.expect(200);
    assert_eq!(device["device_id"], id.as_str());

    alice.put(&device_path(&id), &json!({"display_name": "Work laptop"})).await.expect(200);
    let device = alice.get(&device_path(&id)).await.expect(200);
    assert_eq!(device["display_name"], "Work laptop");
    let listed = alice.get(DEVICES).await.expect(200);
    assert_eq!(listed["devices"][0]["display_name"], "Work laptop");

    // Without display_name the name is left as it is.
    alice.put(&device_path(&id), &json!({})).await.expect(200);
    let device = alice.get(&device_path(&id)).await.expect(200);
    assert_eq!(device["display_name"], "Work laptop", "{device}");
}

#[tokio::test]
async fn unknown_devices_and_other_users_devices_are_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let bob = server.client().register("bob", "pw").await;
    let bobs = bob.device_id.clone().unwrap();
    for id in ["NOSUCHDEVICE", bobs.as_str()] {
        alice.get(&device_path(id)).await.expect_error(404, "M_NOT_FOUND");
        alice
            .put(&device_path(id), &json!({"display_name": "mine now"}))
            .await
            .expect_error(404, "M_NOT_FOUND");
        alice.delete(&device_path(id), Some(&json!({}))).await.expect_error(404, "M_NOT_FOUND");
    }
    let device = bob.get(&device_path(&bobs)).await.expect(200);
    assert!(device.get("display_name").is_none() || device["display_name"] != "mine now", "{device}");
    bob.get(WHOAMI).await.expect(200);
}

#[tokio::test]
async fn deleting_a_device_needs_the_password_then_removes_it_and_its_token() {
    let server = Server::start().await;
    let client = server.client();
    let current = client.register("alice", "pw").await;
    let doomed = client.login("alice", "pw").await;
    let doomed_id = doomed.device_id.clone().unwrap();

    let challenge = current.delete(&device_path(&doomed_id), Some(&json!({}))).await;
    let session = uia_session(&challenge, "m.login.password");
    let wrong = current
        .delete(
            &device_path(&doomed_id),
            Some(&json!({"auth": password_auth("alice", "bad", Some(&session))})),
        )
        .await;
    uia_session(&wrong, "m.login.password");
    assert_eq!(wrong.errcode(), "M_FORBIDDEN", "{}", wrong.body);
    doomed.get(WHOAMI).await.expect(200);

    current
        .delete(
            &device_path(&doomed_id),
            Some(&json!({"auth": password_auth("alice", "pw", Some(&session))})),
        )
        .await
        .expect(200);
    doomed.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    current.get(&device_path(&doomed_id)).await.expect_error(404, "M_NOT_FOUND");
    assert_eq!(device_ids(&current).await, [current.device_id.clone().unwrap()]);
}

#[tokio::test]
async fn delete_devices_needs_the_password_then_removes_them_all() {
    let server = Server::start().await;
    let client = server.client();
    let current = client.register("alice", "pw").await;
    let a = client.login("alice", "pw").await;
    let b = client.login("alice", "pw").await;
    let keep = client.login("alice", "pw").await;
    let doomed = json!([a.device_id.clone().unwrap(), b.device_id.clone().unwrap(), "NOSUCHDEVICE"]);

    let challenge = current.post("/_matrix/client/v3/delete_devices", &json!({"devices": doomed})).await;
    let session = uia_session(&challenge, "m.login.password");
    a.get(WHOAMI).await.expect(200);

    current
        .post(
            "/_matrix/client/v3/delete_devices",
            &json!({"devices": doomed, "auth": password_auth("alice", "pw", Some(&session))}),
        )
        .await
        .expect(200);
    a.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    b.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    keep.get(WHOAMI).await.expect(200);
    let mut expected = vec![current.device_id.clone().unwrap(), keep.device_id.clone().unwrap()];
    expected.sort();
    assert_eq!(device_ids(&current).await, expected);
}

#[tokio::test]
async fn delete_devices_cannot_touch_another_users_devices() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let bob = server.client().register("bob", "pw").await;
    alice
        .post(
            "/_matrix/client/v3/delete_devices",
            &json!({"devices": [bob.device_id.clone().unwrap()], "auth": password_auth("alice", "pw", None)}),
        )
        .await
        .expect(200);
    bob.get(WHOAMI).await.expect(200);
}

#[tokio::test]
async fn delete_devices_without_the_list_is_missing_param() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    alice
        .post("/_matrix/client/v3/delete_devices", &json!({"auth": password_auth("alice", "pw", None)}))
        .await
        .expect_error(400, "M_MISSING_PARAM");
}
