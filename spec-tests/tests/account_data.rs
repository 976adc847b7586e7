//! Account data, global and per room, and room tags: storing, reading, who may, and how
//! each change reaches `/sync` exactly once.

mod sync_support;

use spec_tests::*;
use sync_support::*;

fn global_path(user: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/user/{}/account_data/{kind}", enc(user))
}

fn room_path(user: &str, room: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/{kind}", enc(user), enc(room))
}

fn tag_path(user: &str, room: &str, tag: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/tags/{}", enc(user), enc(room), enc(tag))
}

#[tokio::test]
async fn global_account_data_is_stored_and_synced_once() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let token = next_batch(&sync(&alice, None, 0, None).await);

    let content = json!({"theme": "dark", "size": 3});
    alice.put(&global_path(alice.user_id(), "org.example.settings"), &content).await.expect(200);
    assert_eq!(alice.get(&global_path(alice.user_id(), "org.example.settings")).await.expect(200), content);

    let body = sync(&alice, Some(&token), 5000, None).await;
    let synced = of_type(&body["account_data"], "org.example.settings");
    assert_eq!(synced.len(), 1, "{body}");
    assert_eq!(synced[0]["content"], content);

    let again = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(of_type(&again["account_data"], "org.example.settings").is_empty(), "{again}");
    // An initial sync carries the latest value.
    alice
        .put(&global_path(alice.user_id(), "org.example.settings"), &json!({"theme": "light"}))
        .await
        .expect(200);
    let initial = sync(&alice, None, 0, None).await;
    let synced = of_type(&initial["account_data"], "org.example.settings");
    assert_eq!(synced.len(), 1, "{initial}");
    assert_eq!(synced[0]["content"], json!({"theme": "light"}));
}

#[tokio::test]
async fn room_account_data_is_stored_and_synced_once_in_its_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let token = next_batch(&sync(&alice, None, 0, None).await);

    let path = room_path(alice.user_id(), &room, "org.example.draft");
    alice.put(&path, &json!({"text": "half a thought"})).await.expect(200);
    assert_eq!(alice.get(&path).await.expect(200), json!({"text": "half a thought"}));
    // Global and room account data of one type are separate.
    alice.get(&global_path(alice.user_id(), "org.example.draft")).await.expect_error(404, "M_NOT_FOUND");

    let body = sync(&alice, Some(&token), 5000, None).await;
    let synced = of_type(&joined(&body, &room)["account_data"], "org.example.draft");
    assert_eq!(synced.len(), 1, "{body}");
    assert_eq!(synced[0]["content"]["text"], "half a thought");
    assert!(of_type(&body["account_data"], "org.example.draft").is_empty(), "{body}");

    let again = sync(&alice, Some(&next_batch(&body)), 0, None).await;
    assert!(joined(&again, &room).is_null(), "{again}");
}

#[tokio::test]
async fn unknown_account_data_is_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    alice.get(&global_path(alice.user_id(), "org.example.never")).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn server_managed_account_data_cannot_be_put() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    alice
        .put(&global_path(alice.user_id(), "m.push_rules"), &json!({"global": {}}))
        .await
        .expect_error(405, "M_BAD_JSON");
    alice
        .put(&room_path(alice.user_id(), &room, "m.fully_read"), &json!({"event_id": "$x"}))
        .await
        .expect_error(405, "M_BAD_JSON");
}

#[tokio::test]
async fn another_users_account_data_is_forbidden() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    alice.put(&global_path(alice.user_id(), "org.example.secret"), &json!({"pin": 1234})).await.expect(200);

    bob.get(&global_path(alice.user_id(), "org.example.secret")).await.expect_error(403, "M_FORBIDDEN");
    bob.put(&global_path(alice.user_id(), "org.example.secret"), &json!({}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    bob.get(&room_path(alice.user_id(), &room, "org.example.x")).await.expect_error(403, "M_FORBIDDEN");
    bob.put(&room_path(alice.user_id(), &room, "org.example.x"), &json!({}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    bob.get(&format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(alice.user_id()), enc(&room)))
        .await
        .expect_error(403, "M_FORBIDDEN");
    bob.put(&tag_path(alice.user_id(), &room, "u.x"), &json!({})).await.expect_error(403, "M_FORBIDDEN");
    // Alice's data is untouched.
    assert_eq!(
        alice.get(&global_path(alice.user_id(), "org.example.secret")).await.expect(200),
        json!({"pin": 1234})
    );
}

#[tokio::test]
async fn tags_can_be_added_listed_and_removed_and_sync_as_m_tag() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = public_room(&alice).await;
    let tags_path = format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(alice.user_id()), enc(&room));
    let token = next_batch(&sync(&alice, None, 0, None).await);

    alice.put(&tag_path(alice.user_id(), &room, "u.work"), &json!({"order": 0.5})).await.expect(200);
    alice.put(&tag_path(alice.user_id(), &room, "m.favourite"), &json!({})).await.expect(200);
    let tags = alice.get(&tags_path).await.expect(200);
    assert_eq!(tags, json!({"tags": {"u.work": {"order": 0.5}, "m.favourite": {}}}));

    let body = sync(&alice, Some(&token), 5000, None).await;
    let synced = of_type(&joined(&body, &room)["account_data"], "m.tag");
    assert_eq!(synced.len(), 1, "{body}");
    assert_eq!(synced[0]["content"]["tags"]["u.work"]["order"], 0.5, "{body}");

    alice.delete(&tag_path(alice.user_id(), &room, "u.work"), None).await.expect(200);
    assert_eq!(alice.get(&tags_path).await.expect(200), json!({"tags": {"m.favourite": {}}}));
    let body = sync(&alice, Some(&next_batch(&body)), 5000, None).await;
    let synced = of_type(&joined(&body, &room)["account_data"], "m.tag");
    assert_eq!(synced.len(), 1, "{body}");
    assert_eq!(synced[0]["content"], json!({"tags": {"m.favourite": {}}}), "{body}");
}
