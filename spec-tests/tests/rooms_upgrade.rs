//! Room upgrades (`POST /rooms/{roomId}/upgrade`): the new room's create event, the state
//! and bans carried over, power levels (creators implicit in v12), the tombstone, aliases
//! and the directory listing moved, the old room closed to ordinary members, members
//! following through `/sync`, and the refusals.

mod sync_support;

use spec_tests::{rooms::*, *};
use sync_support::{joined, of_type, sync};

/// `POST /rooms/{room}/upgrade` with `body`.
async fn upgrade(client: &Client, room: &str, body: &Value) -> Resp {
    client.post(&room_path(room, "upgrade"), body).await
}

/// Upgrades, expecting success; returns the replacement room.
async fn upgraded(client: &Client, room: &str, version: &str) -> String {
    let reply = upgrade(client, room, &json!({"new_version": version})).await.expect(200);
    reply["replacement_room"].as_str().expect("replacement_room").to_owned()
}

/// A state event's content in a room, expecting it to exist.
async fn state(client: &Client, room: &str, kind: &str, state_key: &str) -> Value {
    let reply = client.get_state(room, kind, state_key).await;
    assert_eq!(reply.status, 200, "GET state {kind}/{state_key} of {room}: {}", reply.body);
    reply.body
}

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

fn listing_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", enc(room))
}

#[tokio::test]
async fn an_upgrade_carries_the_room_over_and_closes_the_old_one() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let old = alice
        .create_room(&json!({
            "room_version": "11",
            "preset": "public_chat",
            "visibility": "public",
            "name": "Old name",
            "topic": "Old topic",
            "room_alias_name": "upgraded",
            "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
                {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                {"type": "m.room.avatar", "content": {"url": "mxc://example.org/avatar"}},
                {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
                {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example.org"], "allow_ip_literals": true}},
                {"type": "org.example.custom", "content": {"kept": false}},
            ],
        }))
        .await;
    let alias = format!("#upgraded:{}", server_name_of(alice.user_id()));
    bob.join_room(&old).await.expect(200);
    carol.join_room(&old).await.expect(200);
    let mut levels = state(&alice, &old, "m.room.power_levels", "").await;
    levels["users"][bob.user_id()] = json!(50);
    alice.put_state(&old, "m.room.power_levels", "", &levels).await.expect(200);
    alice
        .post(&room_path(&old, "ban"), &json!({"user_id": carol.user_id(), "reason": "spam"}))
        .await
        .expect(200);
    let last_before = alice.send_text(&old, "the last word").await;

    let new = upgraded(&alice, &old, "12").await;
    assert_ne!(new, old);

    // The new room's create event names its predecessor; v12 has no `creator`.
    let create = state(&alice, &new, "m.room.create", "").await;
    assert_eq!(create["room_version"], "12", "{create}");
    assert_eq!(create["predecessor"]["room_id"], old.as_str(), "{create}");
    assert_eq!(create["predecessor"]["event_id"], last_before.as_str(), "the last event before: {create}");
    assert!(create.get("type").is_none(), "{create}");
    // The transferable state, and nothing else.
    assert_eq!(state(&alice, &new, "m.room.name", "").await["name"], "Old name");
    assert_eq!(state(&alice, &new, "m.room.topic", "").await["topic"], "Old topic");
    assert_eq!(state(&alice, &new, "m.room.avatar", "").await["url"], "mxc://example.org/avatar");
    assert_eq!(state(&alice, &new, "m.room.join_rules", "").await["join_rule"], "public");
    assert_eq!(
        state(&alice, &new, "m.room.history_visibility", "").await["history_visibility"],
        "world_readable"
    );
    assert_eq!(state(&alice, &new, "m.room.guest_access", "").await["guest_access"], "can_join");
    assert_eq!(state(&alice, &new, "m.room.encryption", "").await["algorithm"], "m.megolm.v1.aes-sha2");
    assert_eq!(state(&alice, &new, "m.room.server_acl", "").await["deny"], json!(["evil.example.org"]));
    assert_eq!(state(&alice, &new, "m.room.canonical_alias", "").await["alias"], alias.as_str());
    alice.get_state(&new, "org.example.custom", "").await.expect_error(404, "M_NOT_FOUND");
    // Power levels: Bob keeps his; Alice, the new room's creator, is implicit in v12.
    let new_levels = state(&alice, &new, "m.room.power_levels", "").await;
    assert_eq!(new_levels["users"][bob.user_id()], 50, "{new_levels}");
    assert!(new_levels["users"].get(alice.user_id()).is_none(), "{new_levels}");
    // Carol stays banned, with her reason.
    let carol_member = state(&alice, &new, "m.room.member", carol.user_id()).await;
    assert_eq!((&carol_member["membership"], &carol_member["reason"]), (&json!("ban"), &json!("spam")));
    carol.join_room(&new).await.expect_error(403, "M_FORBIDDEN");

    // The old room: a tombstone, no canonical alias, ordinary members silenced.
    let tombstone = state(&alice, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new.as_str(), "{tombstone}");
    assert!(tombstone["body"].is_string(), "{tombstone}");
    let old_alias = state(&alice, &old, "m.room.canonical_alias", "").await;
    assert!(old_alias.get("alias").is_none(), "{old_alias}");
    let old_levels = state(&alice, &old, "m.room.power_levels", "").await;
    assert!(old_levels["events_default"].as_i64() >= Some(50), "{old_levels}");
    assert!(old_levels["invite"].as_i64() >= Some(50), "{old_levels}");
    let dave = server.client().register("dave", PASSWORD).await;
    dave.join_room(&old).await.expect(200);
    dave.send_event(&old, "m.room.message", &json!({"msgtype": "m.text", "body": "hello?"}))
        .await
        .expect_error(403, "M_FORBIDDEN");

    // The alias and the directory listing moved.
    let anyone = server.client();
    assert_eq!(anyone.get(&alias_path(&alias)).await.expect(200)["room_id"], new.as_str());
    assert_eq!(anyone.get(&listing_path(&new)).await.expect(200)["visibility"], "public");
    assert_eq!(anyone.get(&listing_path(&old)).await.expect(200)["visibility"], "private");
    let directory = anyone.get("/_matrix/client/v3/publicRooms").await.expect(200);
    let rooms: Vec<&str> =
        directory["chunk"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(rooms, [new.as_str()], "{directory}");
    let aliases = alice.get(&room_path(&new, "aliases")).await.expect(200);
    assert_eq!(aliases["aliases"], json!([alias]), "{aliases}");

    // Bob sees the tombstone through /sync and follows into the new room.
    let view = sync(&bob, None, 0, None).await;
    let section = joined(&view, &old);
    let mut tombstones = of_type(&section["timeline"], "m.room.tombstone");
    tombstones.extend(of_type(&section["state"], "m.room.tombstone"));
    assert_eq!(tombstones.len(), 1, "{view}");
    assert_eq!(tombstones[0]["content"]["replacement_room"], new.as_str());
    bob.join_room(&new).await.expect(200);
    bob.send_text(&new, "made it").await;
}

#[tokio::test]
async fn a_space_keeps_its_type_and_children_and_v11_rooms_keep_an_explicit_creator() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let space =
        alice.create_room(&json!({"preset": "private_chat", "creation_content": {"type": "m.space"}})).await;
    let child = alice.create_room(&json!({})).await;
    let via = json!([server_name_of(alice.user_id())]);
    alice
        .put_state(&space, "m.space.child", &child, &json!({"via": via, "suggested": true}))
        .await
        .expect(200);

    let new_space = upgraded(&alice, &space, "11").await;
    let create = state(&alice, &new_space, "m.room.create", "").await;
    assert_eq!(create["type"], "m.space", "{create}");
    assert_eq!(create["room_version"], "11", "{create}");
    assert_eq!(create["predecessor"]["room_id"], space.as_str(), "{create}");
    assert!(create["predecessor"]["event_id"].is_string(), "{create}");
    assert_eq!(
        state(&alice, &new_space, "m.space.child", &child).await,
        json!({"via": via, "suggested": true})
    );
    // Without implicit creators, Alice keeps the full power she had as the v12 room's creator.
    let levels = state(&alice, &new_space, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][alice.user_id()], 100, "{levels}");
    // And can upgrade again, back to v12, where she is an implicit creator once more.
    let newest = upgraded(&alice, &new_space, "12").await;
    let levels = state(&alice, &newest, "m.room.power_levels", "").await;
    assert!(levels["users"].get(alice.user_id()).is_none(), "{levels}");
    assert_eq!(state(&alice, &newest, "m.room.create", "").await["type"], "m.space");
}

#[tokio::test]
async fn a_moderator_without_full_power_is_raised_for_the_copy_then_restored() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"room_version": "11", "preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    // Bob may send the tombstone at 60, though encryption, ACLs and power levels need 100.
    let mut levels = state(&alice, &room, "m.room.power_levels", "").await;
    levels["users"][bob.user_id()] = json!(60);
    levels["events"]["m.room.tombstone"] = json!(60);
    alice.put_state(&room, "m.room.power_levels", "", &levels).await.expect(200);
    alice
        .put_state(&room, "m.room.encryption", "", &json!({"algorithm": "m.megolm.v1.aes-sha2"}))
        .await
        .expect(200);

    let new = upgraded(&bob, &room, "11").await;
    assert_eq!(state(&bob, &new, "m.room.encryption", "").await["algorithm"], "m.megolm.v1.aes-sha2");
    let new_levels = state(&bob, &new, "m.room.power_levels", "").await;
    assert_eq!(new_levels["users"][bob.user_id()], 60, "restored: {new_levels}");
    assert_eq!(new_levels["users"][alice.user_id()], 100, "{new_levels}");
}

#[tokio::test]
async fn upgrades_are_refused_without_power_or_a_known_version_or_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let outsider = server.client().register("outsider", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);

    upgrade(&bob, &room, &json!({"new_version": "12"})).await.expect_error(403, "M_FORBIDDEN");
    upgrade(&outsider, &room, &json!({"new_version": "12"})).await.expect_error(403, "M_FORBIDDEN");
    for version in ["9", "1", "999"] {
        upgrade(&alice, &room, &json!({"new_version": version}))
            .await
            .expect_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    }
    let unknown = format!("!nowhere:{}", server_name_of(alice.user_id()));
    upgrade(&alice, &unknown, &json!({"new_version": "12"})).await.expect_error(404, "M_NOT_FOUND");
    upgrade(&alice, &room, &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    upgrade(&alice, &room, &json!({"new_version": 12})).await.expect_error(400, "M_BAD_JSON");
    alice
        .request_raw("POST", &room_path(&room, "upgrade"), "{not json")
        .await
        .expect_error(400, "M_NOT_JSON");
    server
        .client()
        .post(&room_path(&room, "upgrade"), &json!({"new_version": "12"}))
        .await
        .expect_error(401, "M_MISSING_TOKEN");

    // Nothing happened to the room.
    alice.get_state(&room, "m.room.tombstone", "").await.expect_error(404, "M_NOT_FOUND");
    assert_eq!(alice.joined_rooms().await, [room]);
}
