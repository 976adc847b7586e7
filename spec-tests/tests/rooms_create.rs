//! `POST /createRoom`: presets, name, topic and alias, invites and `is_direct`,
//! `initial_state`, `power_level_content_override`, room versions 10 to 12, and the
//! refusals (taken alias, unsupported version, initial state the creator may not send).

use spec_tests::{rooms::*, *};

async fn server_with_alice() -> (Server, Client) {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    (server, alice)
}

async fn state_content(client: &Client, room: &str, kind: &str) -> Value {
    client.get_state(room, kind, "").await.expect(200)
}

#[tokio::test]
async fn public_chat_preset_makes_a_public_room_with_shared_history() {
    let (server, alice) = server_with_alice().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;

    assert_eq!(state_content(&alice, &room, "m.room.join_rules").await["join_rule"], "public");
    assert_eq!(
        state_content(&alice, &room, "m.room.history_visibility").await["history_visibility"],
        "shared"
    );
    let guest_access = alice.get_state(&room, "m.room.guest_access", "").await;
    assert!(
        guest_access.status == 404 || guest_access.body["guest_access"] == "forbidden",
        "public_chat keeps guests out: {guest_access:?}"
    );
    // Anyone may join without an invite.
    bob.join_room(&room).await.expect(200);
}

#[tokio::test]
async fn private_chat_preset_makes_an_invite_only_room_that_guests_may_join() {
    let (server, alice) = server_with_alice().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;

    assert_eq!(state_content(&alice, &room, "m.room.join_rules").await["join_rule"], "invite");
    assert_eq!(
        state_content(&alice, &room, "m.room.history_visibility").await["history_visibility"],
        "shared"
    );
    assert_eq!(state_content(&alice, &room, "m.room.guest_access").await["guest_access"], "can_join");
    bob.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn without_a_preset_the_visibility_chooses_the_join_rule() {
    let (_server, alice) = server_with_alice().await;
    let public = alice.create_room(&json!({"visibility": "public"})).await;
    let private = alice.create_room(&json!({})).await;
    assert_eq!(state_content(&alice, &public, "m.room.join_rules").await["join_rule"], "public");
    assert_eq!(state_content(&alice, &private, "m.room.join_rules").await["join_rule"], "invite");
}

#[tokio::test]
async fn trusted_private_chat_gives_invitees_the_power_of_the_creator() {
    let (server, alice) = server_with_alice().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;

    // Up to version 11, power is a number in `users`.
    let room = alice
        .create_room(
            &json!({"preset": "trusted_private_chat", "room_version": "11", "invite": [bob.user_id()]}),
        )
        .await;
    let power = state_content(&alice, &room, "m.room.power_levels").await;
    assert_eq!(power["users"][alice.user_id()], 100, "{power}");
    assert_eq!(power["users"][bob.user_id()], 100, "{power}");

    // From version 12, invitees become additional creators, merged with those the client asked for.
    let room = alice
        .create_room(&json!({
            "preset": "trusted_private_chat",
            "room_version": "12",
            "invite": [bob.user_id()],
            "creation_content": {"additional_creators": [carol.user_id()]},
        }))
        .await;
    let create = state_content(&alice, &room, "m.room.create").await;
    let mut creators: Vec<&str> = create["additional_creators"]
        .as_array()
        .expect("additional_creators")
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    creators.sort();
    assert_eq!(creators, [bob.user_id(), carol.user_id()], "{create}");
    let power = state_content(&alice, &room, "m.room.power_levels").await;
    assert!(power["users"].get(bob.user_id()).is_none(), "creators are implicit in v12: {power}");
    // Bob can do what only a creator can: change the power levels.
    bob.join_room(&room).await.expect(200);
    let mut raised = power.clone();
    raised["users"][format!("@dave:{}", server_name_of(alice.user_id()))] = json!(75);
    bob.put_state(&room, "m.room.power_levels", "", &raised).await.expect(200);
}

#[tokio::test]
async fn name_topic_and_alias_become_state_and_the_alias_resolves() {
    let (_server, alice) = server_with_alice().await;
    let room =
        alice.create_room(&json!({"name": "The Pub", "topic": "Happy hour", "room_alias_name": "pub"})).await;
    let alias = format!("#pub:{}", server_name_of(alice.user_id()));

    assert_eq!(state_content(&alice, &room, "m.room.name").await["name"], "The Pub");
    let topic = state_content(&alice, &room, "m.room.topic").await;
    assert_eq!(topic["topic"], "Happy hour");
    // v1.15: the topic also as an `m.topic` content block, in plain text.
    assert_eq!(topic["m.topic"], json!({"m.text": [{"mimetype": "text/plain", "body": "Happy hour"}]}));
    assert_eq!(state_content(&alice, &room, "m.room.canonical_alias").await["alias"], alias);
    let resolved = alice.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias))).await.expect(200);
    assert_eq!(resolved["room_id"], room);
    assert!(resolved["servers"].as_array().is_some_and(|s| !s.is_empty()), "{resolved}");
}

#[tokio::test]
async fn a_taken_alias_is_refused_with_room_in_use_and_creates_nothing() {
    let (_server, alice) = server_with_alice().await;
    let room = alice.create_room(&json!({"room_alias_name": "taken"})).await;
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"room_alias_name": "taken"}))
        .await
        .expect_error(400, "M_ROOM_IN_USE");
    assert_eq!(alice.joined_rooms().await, [room]);
}

#[tokio::test]
async fn invitees_of_a_direct_chat_get_is_direct_on_their_member_event() {
    let (server, alice) = server_with_alice().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let direct = alice.create_room(&json!({"invite": [bob.user_id()], "is_direct": true})).await;
    let group = alice.create_room(&json!({"invite": [bob.user_id()]})).await;

    let member = alice.get_state(&direct, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["is_direct"], true, "{member}");
    let member = alice.get_state(&group, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(member["membership"], "invite");
    assert!(member.get("is_direct").is_none_or(|d| d == false), "{member}");
    // The invitation is real: bob can join an invite-only room.
    bob.join_room(&direct).await.expect(200);
}

#[tokio::test]
async fn initial_state_overrides_the_preset_and_name_overrides_initial_state() {
    let (_server, alice) = server_with_alice().await;
    let room = alice
        .create_room(&json!({
            "preset": "private_chat",
            "name": "explicit",
            "initial_state": [
                {"type": "m.room.name", "content": {"name": "from initial_state"}},
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
                {"type": "org.example.custom", "state_key": "k", "content": {"a": 1}},
            ],
        }))
        .await;
    assert_eq!(state_content(&alice, &room, "m.room.name").await["name"], "explicit");
    assert_eq!(
        state_content(&alice, &room, "m.room.history_visibility").await["history_visibility"],
        "joined"
    );
    assert_eq!(alice.get_state(&room, "org.example.custom", "k").await.expect(200), json!({"a": 1}));
}

#[tokio::test]
async fn power_level_content_override_is_applied_over_the_defaults() {
    let (server, alice) = server_with_alice().await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice
        .create_room(&json!({
            "preset": "public_chat",
            "power_level_content_override": {"events_default": 20, "users": {bob.user_id(): 30}},
        }))
        .await;
    let power = state_content(&alice, &room, "m.room.power_levels").await;
    assert_eq!(power["events_default"], 20, "{power}");
    assert_eq!(power["users"][bob.user_id()], 30, "{power}");
    assert_eq!(power["ban"], 50, "untouched defaults stay: {power}");

    // The override is enforced: a member at 0 may no longer send messages.
    let carol = server.client().register("carol", PASSWORD).await;
    carol.join_room(&room).await.expect(200);
    carol
        .send_event(&room, "m.room.message", &json!({"msgtype": "m.text", "body": "hi"}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    bob.join_room(&room).await.expect(200);
    bob.send_text(&room, "I am allowed").await;
}

#[tokio::test]
async fn versions_10_11_and_12_can_be_created_and_12_is_the_default() {
    let (_server, alice) = server_with_alice().await;
    for version in ["10", "11", "12"] {
        let room = alice.create_room(&json!({"room_version": version})).await;
        let create = state_content(&alice, &room, "m.room.create").await;
        assert_eq!(create["room_version"], version, "{create}");
        alice.send_text(&room, "works").await;
    }
    let room = alice.create_room(&json!({})).await;
    assert_eq!(state_content(&alice, &room, "m.room.create").await["room_version"], "12");
}

#[tokio::test]
async fn an_unsupported_room_version_is_refused() {
    let (_server, alice) = server_with_alice().await;
    for version in ["1", "9", "org.example.custom"] {
        alice
            .post("/_matrix/client/v3/createRoom", &json!({"room_version": version}))
            .await
            .expect_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    }
    assert!(alice.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn version_12_rooms_have_hashed_ids_and_implicit_creators() {
    let (_server, alice) = server_with_alice().await;
    let room = alice.create_room(&json!({"room_version": "12"})).await;
    assert!(!room.contains(':'), "a v12 room id has no server name: {room}");

    let create = alice.get(&room_path(&room, "state/m.room.create/?format=event")).await.expect(200);
    assert_eq!(
        create["event_id"].as_str().unwrap()[1..],
        room[1..],
        "the room id is the create event's hash"
    );
    let power = state_content(&alice, &room, "m.room.power_levels").await;
    assert!(power["users"].get(alice.user_id()).is_none(), "{power}");
    let tombstone = power["events"]["m.room.tombstone"].as_i64().expect("a tombstone level");
    assert!(tombstone > power["state_default"].as_i64().unwrap_or(50), "{power}");
    // Implicit, but real: the creator changes power levels.
    let mut changed = power.clone();
    changed["events_default"] = json!(10);
    alice.put_state(&room, "m.room.power_levels", "", &changed).await.expect(200);

    // Older versions name the server and list the creator.
    for version in ["10", "11"] {
        let room = alice.create_room(&json!({"room_version": version})).await;
        assert!(room.ends_with(&format!(":{}", server_name_of(alice.user_id()))), "{room}");
        let power = state_content(&alice, &room, "m.room.power_levels").await;
        assert_eq!(power["users"][alice.user_id()], 100, "{power}");
    }
}

#[tokio::test]
async fn listing_the_creator_in_a_version_12_power_override_is_refused() {
    let (_server, alice) = server_with_alice().await;
    let resp = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"room_version": "12", "power_level_content_override": {"users": {alice.user_id(): 100}}}),
        )
        .await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(alice.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn initial_state_the_creator_may_not_send_is_refused_and_creates_nothing() {
    let (_server, alice) = server_with_alice().await;
    // The override leaves the creator too weak to set the rest of the initial state.
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({
                "room_version": "11",
                "visibility": "public",
                "name": "unreachable",
                "power_level_content_override": {"users": {alice.user_id(): 10}},
            }),
        )
        .await
        .expect_error(400, "M_INVALID_ROOM_STATE");
    assert!(alice.joined_rooms().await.is_empty());
    // Nothing half-made is published either.
    let directory = alice.get("/_matrix/client/v3/publicRooms").await.expect(200);
    assert_eq!(directory["chunk"], json!([]));
}

#[tokio::test]
async fn malformed_create_requests_are_refused_as_bad_json() {
    let (server, alice) = server_with_alice().await;
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"initial_state": [{"type": "m.room.topic", "content": []}]}),
        )
        .await
        .expect_error(400, "M_BAD_JSON");
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"creation_content": "not an object"}))
        .await
        .expect_error(400, "M_BAD_JSON");
    let anonymous = server.client();
    anonymous.post("/_matrix/client/v3/createRoom", &json!({})).await.expect_error(401, "M_MISSING_TOKEN");
    assert!(alice.joined_rooms().await.is_empty());
}
