//! Membership: joining by id and by alias, invites, leaving and forgetting, kicks, bans
//! and unbans with their power checks, `/joined_rooms`, `/members` with its filters and
//! `/joined_members`.

use spec_tests::{rooms::*, *};

async fn membership_of(client: &Client, room: &str, user: &str) -> String {
    let member = client.get_state(room, "m.room.member", user).await.expect(200);
    member["membership"].as_str().expect("membership").to_owned()
}

#[tokio::test]
async fn joining_works_by_alias_and_by_room_id_and_is_listed_in_joined_rooms() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "room_alias_name": "lobby"})).await;

    let alias = format!("#lobby:{}", server_name_of(alice.user_id()));
    let joined = bob.join_room(&alias).await.expect(200);
    assert_eq!(joined["room_id"], room);
    let joined = carol.post(&room_path(&room, "join"), &json!({})).await.expect(200);
    assert_eq!(joined["room_id"], room);

    for client in [&alice, &bob, &carol] {
        assert_eq!(client.joined_rooms().await, [room.as_str()]);
        assert_eq!(membership_of(&alice, &room, client.user_id()).await, "join");
    }
    // Joining again changes nothing.
    bob.join_room(&room).await.expect(200);
    let members = alice.get(&room_path(&room, "members")).await.expect(200);
    assert_eq!(members["chunk"].as_array().unwrap().len(), 3, "{members}");
}

#[tokio::test]
async fn an_invite_only_room_refuses_uninvited_joins_and_admits_invitees() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;

    bob.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
    assert!(bob.joined_rooms().await.is_empty());

    alice.membership_action(&room, "invite", bob.user_id()).await.expect(200);
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "invite");
    bob.join_room(&room).await.expect(200);
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "join");
}

#[tokio::test]
async fn an_invitation_is_rejected_by_leaving_and_then_no_longer_admits() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat", "invite": [bob.user_id()]})).await;

    bob.post(&room_path(&room, "leave"), &json!({"reason": "no thanks"})).await.expect(200);
    let member = alice.get_state(&room, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(member["membership"], "leave");
    assert_eq!(member["reason"], "no thanks");
    bob.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn inviting_needs_membership_and_power_and_a_user_not_yet_joined() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    // In a public room inviting takes power 50.
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;

    carol.membership_action(&room, "invite", bob.user_id()).await.expect_error(403, "M_FORBIDDEN");
    bob.join_room(&room).await.expect(200);
    bob.membership_action(&room, "invite", carol.user_id()).await.expect_error(403, "M_FORBIDDEN");
    alice.membership_action(&room, "invite", bob.user_id()).await.expect_error(403, "M_FORBIDDEN");
    alice.membership_action(&room, "invite", carol.user_id()).await.expect(200);
    assert_eq!(membership_of(&alice, &room, carol.user_id()).await, "invite");
}

#[tokio::test]
async fn a_member_without_power_cannot_kick_or_ban_but_a_moderator_can_kick() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);

    bob.membership_action(&room, "kick", carol.user_id()).await.expect_error(403, "M_FORBIDDEN");
    bob.membership_action(&room, "ban", carol.user_id()).await.expect_error(403, "M_FORBIDDEN");
    assert_eq!(membership_of(&alice, &room, carol.user_id()).await, "join");

    let kicked = alice
        .post(&room_path(&room, "kick"), &json!({"user_id": carol.user_id(), "reason": "calm down"}))
        .await;
    kicked.expect(200);
    let member = alice.get_state(&room, "m.room.member", carol.user_id()).await.expect(200);
    assert_eq!(
        (member["membership"].as_str(), member["reason"].as_str()),
        (Some("leave"), Some("calm down"))
    );
    assert!(carol.joined_rooms().await.is_empty());
    // A kick is not a ban: the room is public, so carol may come back.
    carol.join_room(&room).await.expect(200);
}

#[tokio::test]
async fn a_banned_user_cannot_rejoin_or_be_invited_until_unbanned() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);

    alice.membership_action(&room, "ban", bob.user_id()).await.expect(200);
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "ban");
    assert!(bob.joined_rooms().await.is_empty());
    bob.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
    bob.send_event(&room, "m.room.message", &json!({"msgtype": "m.text", "body": "let me in"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    alice.membership_action(&room, "invite", bob.user_id()).await.expect_error(403, "M_FORBIDDEN");

    carol.membership_action(&room, "unban", bob.user_id()).await.expect_error(403, "M_FORBIDDEN");
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "ban");
    alice.membership_action(&room, "unban", bob.user_id()).await.expect(200);
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "leave");
    bob.join_room(&room).await.expect(200);
}

#[tokio::test]
async fn a_room_can_be_forgotten_only_after_leaving_and_its_history_is_then_gone() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    alice.send_text(&room, "before bob left").await;

    bob.post(&room_path(&room, "forget"), &json!({})).await.expect_error(400, "M_UNKNOWN");

    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    assert!(bob.joined_rooms().await.is_empty());
    // Having left, bob still reads what he was there for.
    let history = bob.messages(&room, "dir=b&limit=50").await.expect(200);
    assert!(
        history["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "before bob left"),
        "{history}"
    );

    bob.post(&room_path(&room, "forget"), &json!({})).await.expect(200);
    bob.messages(&room, "dir=b&limit=50").await.expect_error(403, "M_FORBIDDEN");
    // Forgetting is not a ban.
    bob.join_room(&room).await.expect(200);
    assert_eq!(bob.joined_rooms().await, [room]);
}

#[tokio::test]
async fn members_can_be_filtered_by_membership_and_joined_members_has_profiles() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let dave = server.client().register("dave", PASSWORD).await;
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(alice.user_id())),
            &json!({"displayname": "Alice A."}),
        )
        .await
        .expect(200);
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    dave.join_room(&room).await.expect(200);
    dave.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    alice.membership_action(&room, "invite", carol.user_id()).await.expect(200);

    let members_with = |query: &'static str| {
        let alice = alice.clone();
        let room = room.clone();
        async move {
            let reply = alice.get(&room_path(&room, &format!("members{query}"))).await.expect(200);
            let mut users: Vec<(String, String)> = reply["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    assert_eq!(e["type"], "m.room.member", "{e}");
                    (
                        e["state_key"].as_str().unwrap().to_owned(),
                        e["content"]["membership"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            users.sort();
            users
        }
    };
    let (a, b, c, d) = (alice.user_id(), bob.user_id(), carol.user_id(), dave.user_id());
    let pair = |u: &str, m: &str| (u.to_owned(), m.to_owned());
    assert_eq!(
        members_with("").await,
        [pair(a, "join"), pair(b, "join"), pair(c, "invite"), pair(d, "leave")]
    );
    assert_eq!(members_with("?membership=join").await, [pair(a, "join"), pair(b, "join")]);
    assert_eq!(members_with("?not_membership=join").await, [pair(c, "invite"), pair(d, "leave")]);
    assert_eq!(members_with("?membership=invite").await, [pair(c, "invite")]);
    assert_eq!(
        members_with("?not_membership=leave").await,
        [pair(a, "join"), pair(b, "join"), pair(c, "invite")]
    );
    // Both together are an "or": membership is `invite`, or is anything but `join`.
    assert_eq!(
        members_with("?membership=invite&not_membership=join").await,
        [pair(c, "invite"), pair(d, "leave")]
    );

    let joined = alice.get(&room_path(&room, "joined_members")).await.expect(200);
    let joined = joined["joined"].as_object().expect("joined");
    let mut users: Vec<&str> = joined.keys().map(String::as_str).collect();
    users.sort();
    assert_eq!(users, [a, b]);
    assert_eq!(joined[a]["display_name"], "Alice A.");
}

#[tokio::test]
async fn a_non_member_cannot_list_members_or_read_state() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let eve = server.client().register("eve", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;

    eve.get(&room_path(&room, "members")).await.expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, "joined_members")).await.expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, "state")).await.expect_error(403, "M_FORBIDDEN");
    eve.get_state(&room, "m.room.create", "").await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn joining_an_unknown_room_or_alias_or_a_malformed_id_fails() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let server_name = server_name_of(alice.user_id()).to_owned();

    let unknown = alice.post(&room_path(&format!("!nowhere:{server_name}"), "join"), &json!({})).await;
    assert!(
        matches!((unknown.status, unknown.errcode()), (404, "M_NOT_FOUND") | (403, "M_FORBIDDEN")),
        "{unknown:?}"
    );
    alice.join_room(&format!("#nowhere:{server_name}")).await.expect_error(404, "M_NOT_FOUND");
    let malformed = alice.post(&room_path("not-a-room-id", "join"), &json!({})).await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(alice.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn a_member_who_left_reads_state_and_members_as_they_were_when_leaving() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "name": "Old name"})).await;
    bob.join_room(&room).await.expect(200);
    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    alice.put_state(&room, "m.room.name", "", &json!({"name": "New name"})).await.expect(200);
    carol.join_room(&room).await.expect(200);

    assert_eq!(bob.get_state(&room, "m.room.name", "").await.expect(200)["name"], "Old name");
    let state = bob.get(&room_path(&room, "state")).await.expect(200);
    let state = state.as_array().unwrap();
    let name = state.iter().find(|e| e["type"] == "m.room.name").expect("name");
    assert_eq!(name["content"]["name"], "Old name");
    let own = state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id());
    assert_eq!(own.expect("own member event")["content"]["membership"], "leave");
    assert!(!state.iter().any(|e| e["state_key"] == carol.user_id()), "carol came later");
    let members = bob.get(&room_path(&room, "members")).await.expect(200);
    let mut users: Vec<&str> =
        members["chunk"].as_array().unwrap().iter().map(|e| e["state_key"].as_str().unwrap()).collect();
    users.sort();
    assert_eq!(users, [alice.user_id(), bob.user_id()]);

    // Only members see who is joined now; a forgotten room shows nothing at all.
    bob.get(&room_path(&room, "joined_members")).await.expect_error(403, "M_FORBIDDEN");
    bob.post(&room_path(&room, "forget"), &json!({})).await.expect(200);
    bob.get(&room_path(&room, "state")).await.expect_error(403, "M_FORBIDDEN");
    bob.get(&room_path(&room, "members")).await.expect_error(403, "M_FORBIDDEN");
}

/// An endpoint whose body is all optional takes an empty body as `{}` (matrix-nio joins
/// with none); where the body has required fields, an empty one is still not JSON.
#[tokio::test]
async fn an_empty_body_is_an_empty_object_where_every_field_is_optional() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let joined = bob.request_raw("POST", &format!("/_matrix/client/v3/join/{}", enc(&room)), "").await;
    assert_eq!(joined.expect(200)["room_id"], room);
    assert_eq!(membership_of(&alice, &room, bob.user_id()).await, "join");
    let login = server.client().request_raw("POST", "/_matrix/client/v3/login", "").await;
    login.expect_error(400, "M_NOT_JSON");
}
