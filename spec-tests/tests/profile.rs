//! Profiles: `GET /profile/{userId}`, `GET`/`PUT /profile/{userId}/displayname` and
//! `/avatar_url`, who may change them, and the refusals for unknown users and bad values.

use spec_tests::*;

fn profile(user_id: &str) -> String {
    format!("/_matrix/client/v3/profile/{}", enc(user_id))
}

fn field(user_id: &str, name: &str) -> String {
    format!("{}/{name}", profile(user_id))
}

#[tokio::test]
async fn a_new_users_display_name_is_its_localpart() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let body = server.client().get(&profile("@alice:localhost")).await.expect(200);
    assert_eq!(body["displayname"], "alice", "{body}");
    assert!(body.get("avatar_url").is_none(), "{body}");
    let body = alice.get(&field("@alice:localhost", "displayname")).await.expect(200);
    assert_eq!(body, json!({"displayname": "alice"}));
    alice.get(&field("@alice:localhost", "avatar_url")).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn the_owner_sets_display_name_and_avatar() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let me = "@alice:localhost";
    alice.put(&field(me, "displayname"), &json!({"displayname": "Alice A."})).await.expect(200);
    alice.put(&field(me, "avatar_url"), &json!({"avatar_url": "mxc://localhost/abc123"})).await.expect(200);

    let body = server.client().get(&field(me, "displayname")).await.expect(200);
    assert_eq!(body["displayname"], "Alice A.");
    let body = server.client().get(&field(me, "avatar_url")).await.expect(200);
    assert_eq!(body["avatar_url"], "mxc://localhost/abc123");
    let body = server.client().get(&profile(me)).await.expect(200);
    assert_eq!(body["displayname"], "Alice A.");
    assert_eq!(body["avatar_url"], "mxc://localhost/abc123");

    // Changing it again replaces the value.
    alice.put(&field(me, "displayname"), &json!({"displayname": "Al"})).await.expect(200);
    assert_eq!(server.client().get(&profile(me)).await.expect(200)["displayname"], "Al");
}

#[tokio::test]
async fn changing_another_users_profile_is_forbidden() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    server.client().register("bob", "pw").await;
    let bob = "@bob:localhost";
    alice
        .put(&field(bob, "displayname"), &json!({"displayname": "Bobby"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    alice
        .put(&field(bob, "avatar_url"), &json!({"avatar_url": "mxc://localhost/x"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    let body = server.client().get(&profile(bob)).await.expect(200);
    assert_eq!(body["displayname"], "bob");
    assert!(body.get("avatar_url").is_none(), "{body}");
}

#[tokio::test]
async fn setting_a_profile_needs_a_token() {
    let server = Server::start().await;
    server.client().register("alice", "pw").await;
    server
        .client()
        .put(&field("@alice:localhost", "displayname"), &json!({"displayname": "x"}))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn unknown_users_have_no_profile() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    for user in ["@nobody:localhost", "@someone:elsewhere.example"] {
        alice.get(&profile(user)).await.expect_error(404, "M_NOT_FOUND");
        alice.get(&field(user, "displayname")).await.expect_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_malformed_user_id_in_the_path_is_invalid_param() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    alice.get(&profile("alice")).await.expect_error(400, "M_INVALID_PARAM");
    alice
        .put(&field("alice", "displayname"), &json!({"displayname": "x"}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_profile_value_of_the_wrong_type_is_400() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let me = "@alice:localhost";
    for (name, body) in [
        ("avatar_url", json!({"avatar_url": 42})),
        ("avatar_url", json!({"avatar_url": {"url": "mxc://localhost/x"}})),
        ("displayname", json!({"displayname": ["Alice"]})),
    ] {
        let resp = alice.put(&field(me, name), &body).await;
        assert_eq!(resp.status, 400, "{body} -> {}", resp.body);
        assert!(matches!(resp.errcode(), "M_BAD_JSON" | "M_INVALID_PARAM"), "{}", resp.body);
    }
    let body = server.client().get(&profile(me)).await.expect(200);
    assert_eq!(body, json!({"displayname": "alice"}));
}

#[tokio::test]
async fn a_deactivated_users_profile_is_emptied() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let me = "@alice:localhost";
    alice.put(&field(me, "avatar_url"), &json!({"avatar_url": "mxc://localhost/abc"})).await.expect(200);
    alice
        .post("/_matrix/client/v3/account/deactivate", &json!({"auth": password_auth("alice", "pw", None)}))
        .await
        .expect(200);
    let resp = server.client().get(&profile(me)).await;
    if resp.status == 200 {
        assert_eq!(resp.body, json!({}), "nothing of the old profile may remain");
    } else {
        resp.expect_error(404, "M_NOT_FOUND");
    }
    server.client().get(&field(me, "displayname")).await.expect_error(404, "M_NOT_FOUND");
}

/// Member events carry the member's current display name and avatar: on invite and join,
/// and a change of either is a new member event in every room the user is in.
#[tokio::test]
async fn member_events_follow_the_profile() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let bob = server.client().register("bob", "pw").await;
    let me = |c: &Client| enc(c.user_id());
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", me(&bob)),
        &json!({"displayname": "Bob B."}),
    )
    .await
    .expect(200);
    let mut rooms = Vec::new();
    for _ in 0..2 {
        rooms.push(alice.create_room(&json!({"invite": [bob.user_id()]})).await);
    }
    let member =
        |room: &str| format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(room), me(&bob));
    assert_eq!(alice.get(&member(&rooms[0])).await.expect(200)["displayname"], "Bob B.", "the invite");
    for room in &rooms {
        bob.join_room(room).await.expect(200);
    }
    assert_eq!(alice.get(&member(&rooms[0])).await.expect(200)["displayname"], "Bob B.", "the join");

    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", me(&bob)),
        &json!({"displayname": "Robert"}),
    )
    .await
    .expect(200);
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/avatar_url", me(&bob)),
        &json!({"avatar_url": "mxc://localhost/face"}),
    )
    .await
    .expect(200);
    for room in &rooms {
        let content = alice.get(&member(room)).await.expect(200);
        assert_eq!(content["displayname"], "Robert", "{room}: {content}");
        assert_eq!(content["avatar_url"], "mxc://localhost/face");
        assert_eq!(content["membership"], "join");
    }
    bob.delete(&format!("/_matrix/client/v3/profile/{}/avatar_url", me(&bob)), None).await.expect(200);
    assert!(alice.get(&member(&rooms[1])).await.expect(200).get("avatar_url").is_none());
}
