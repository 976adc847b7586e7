//! Aliases (`/directory/room/{alias}`, `/rooms/{id}/aliases`) and the published room
//! directory (`/directory/list/room/{id}`, `/publicRooms` with search and pagination).

use std::collections::HashSet;

use spec_tests::{rooms::*, *};

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

fn list_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", enc(room))
}

async fn room_aliases(client: &Client, room: &str) -> Vec<String> {
    let reply = client.get(&room_path(room, "aliases")).await.expect(200);
    let mut aliases: Vec<String> = reply["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    aliases.sort();
    aliases
}

#[tokio::test]
async fn aliases_are_created_resolved_listed_and_deleted() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let server_name = server_name_of(alice.user_id()).to_owned();
    let (first, second) = (format!("#first:{server_name}"), format!("#second:{server_name}"));

    alice.put(&alias_path(&first), &json!({"room_id": room})).await.expect(200);
    alice.put(&alias_path(&second), &json!({"room_id": room})).await.expect(200);
    let resolved = server.client().get(&alias_path(&first)).await.expect(200);
    assert_eq!(resolved["room_id"], room);
    assert_eq!(resolved["servers"], json!([server_name]));
    assert_eq!(room_aliases(&alice, &room).await, [first.clone(), second.clone()]);

    // An alias names one room; taking it again is a conflict.
    let other_room = alice.create_room(&json!({})).await;
    alice.put(&alias_path(&first), &json!({"room_id": other_room})).await.expect_error(409, "M_UNKNOWN");
    assert_eq!(alice.get(&alias_path(&first)).await.expect(200)["room_id"], room);

    alice.delete(&alias_path(&first), None).await.expect(200);
    alice.get(&alias_path(&first)).await.expect_error(404, "M_NOT_FOUND");
    alice.delete(&alias_path(&first), None).await.expect_error(404, "M_NOT_FOUND");
    assert_eq!(room_aliases(&alice, &room).await, [second]);
    // A deleted alias is free again.
    alice.put(&alias_path(&first), &json!({"room_id": other_room})).await.expect(200);
    assert_eq!(alice.get(&alias_path(&first)).await.expect(200)["room_id"], other_room);
}

#[tokio::test]
async fn aliases_are_deleted_only_by_their_creator_or_a_room_moderator() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);
    let server_name = server_name_of(alice.user_id()).to_owned();
    let alices = format!("#alices:{server_name}");
    let (bobs, bobs_too) = (format!("#bobs:{server_name}"), format!("#bobs_too:{server_name}"));
    alice.put(&alias_path(&alices), &json!({"room_id": room})).await.expect(200);
    bob.put(&alias_path(&bobs), &json!({"room_id": room})).await.expect(200);
    bob.put(&alias_path(&bobs_too), &json!({"room_id": room})).await.expect(200);

    carol.delete(&alias_path(&bobs), None).await.expect_error(403, "M_FORBIDDEN");
    bob.delete(&alias_path(&alices), None).await.expect_error(403, "M_FORBIDDEN");
    assert_eq!(room_aliases(&alice, &room).await, [alices.clone(), bobs.clone(), bobs_too.clone()]);
    // Bob, without power, removes what he created; the moderator removes anyone's.
    bob.delete(&alias_path(&bobs), None).await.expect(200);
    alice.delete(&alias_path(&bobs_too), None).await.expect(200);
    assert_eq!(room_aliases(&alice, &room).await, [alices]);
}

#[tokio::test]
async fn aliases_are_refused_for_strangers_other_servers_and_malformed_names() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let eve = server.client().register("eve", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    let server_name = server_name_of(alice.user_id()).to_owned();

    eve.put(&alias_path(&format!("#eves:{server_name}")), &json!({"room_id": room}))
        .await
        .expect_error(403, "M_FORBIDDEN");
    eve.get(&room_path(&room, "aliases")).await.expect_error(403, "M_FORBIDDEN");
    let foreign = alice.put(&alias_path("#elsewhere:other.example"), &json!({"room_id": room})).await;
    assert_eq!(foreign.status, 400, "{foreign:?}");
    let malformed = alice.put(&alias_path("no-hash-sign"), &json!({"room_id": room})).await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    alice.get(&alias_path("no-hash-sign")).await.expect_error(400, "M_INVALID_PARAM");
    let missing = alice
        .put(
            &alias_path(&format!("#ghost:{server_name}")),
            &json!({"room_id": format!("!ghost:{server_name}")}),
        )
        .await;
    assert!(matches!(missing.status, 403 | 404), "{missing:?}");
    assert!(room_aliases(&alice, &room).await.is_empty());
}

#[tokio::test]
async fn directory_visibility_is_public_to_read_and_changed_only_by_moderators() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "name": "Listed later"})).await;
    bob.join_room(&room).await.expect(200);
    let anonymous = server.client();

    assert_eq!(anonymous.get(&list_path(&room)).await.expect(200)["visibility"], "private");
    bob.put(&list_path(&room), &json!({"visibility": "public"})).await.expect_error(403, "M_FORBIDDEN");
    assert_eq!(anonymous.get(&list_path(&room)).await.expect(200)["visibility"], "private");

    alice.put(&list_path(&room), &json!({"visibility": "public"})).await.expect(200);
    assert_eq!(anonymous.get(&list_path(&room)).await.expect(200)["visibility"], "public");
    let listed = alice.get("/_matrix/client/v3/publicRooms").await.expect(200);
    assert_eq!(listed["chunk"][0]["room_id"], room, "{listed}");

    alice.put(&list_path(&room), &json!({"visibility": "private"})).await.expect(200);
    let listed = alice.get("/_matrix/client/v3/publicRooms").await.expect(200);
    assert_eq!(listed["chunk"], json!([]));

    // A published invite-only room says so.
    let invite_only = alice.create_room(&json!({"preset": "private_chat"})).await;
    alice.put(&list_path(&invite_only), &json!({"visibility": "public"})).await.expect(200);
    let listed = alice.get("/_matrix/client/v3/publicRooms").await.expect(200);
    assert_eq!(listed["chunk"][0]["room_id"], invite_only);
    assert_eq!(listed["chunk"][0]["join_rule"], "invite");
    assert_eq!(listed["chunk"][0]["guest_can_join"], true);

    let unknown = format!("!unknown:{}", server_name_of(alice.user_id()));
    anonymous.get(&list_path(&unknown)).await.expect_error(404, "M_NOT_FOUND");
    alice.put(&list_path(&unknown), &json!({"visibility": "public"})).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn public_rooms_lists_published_rooms_with_search_and_pagination() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let names = ["Alpha lounge", "Beta lab", "Gamma garden", "Delta dock", "Epsilon bay"];
    let mut rooms = Vec::new();
    for name in names {
        rooms.push(
            alice.create_room(&json!({"visibility": "public", "preset": "public_chat", "name": name})).await,
        );
    }
    let topical = alice
        .create_room(&json!({"visibility": "public", "name": "Zeta", "topic": "all about BETA testing", "room_alias_name": "zeta"}))
        .await;
    rooms.push(topical.clone());
    alice.create_room(&json!({"name": "Beta secret"})).await;
    // The busiest room is listed first.
    bob.join_room(&rooms[3]).await.expect(200);

    let anonymous = server.client();
    let all = anonymous.get("/_matrix/client/v3/publicRooms").await.expect(200);
    assert_eq!(all["total_room_count_estimate"], 6, "{all}");
    let chunk = all["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 6);
    assert_eq!(chunk[0]["room_id"], rooms[3]);
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[0]["name"], "Delta dock");
    // An absent join rule means public.
    assert!(chunk[0].get("join_rule").is_none_or(|rule| rule == "public"), "{all}");
    assert_eq!(chunk[0]["world_readable"], false);
    assert_eq!(chunk[0]["guest_can_join"], false);
    let zeta = chunk.iter().find(|r| r["room_id"] == topical).expect("zeta listed");
    assert_eq!(zeta["topic"], "all about BETA testing");
    assert_eq!(zeta["canonical_alias"], format!("#zeta:{}", server_name_of(alice.user_id())));

    // Paging by two serves every room once, and pages can be walked back.
    let mut seen = Vec::new();
    let mut since: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/publicRooms?limit=2&since={}", enc(since)),
            None => "/_matrix/client/v3/publicRooms?limit=2".to_owned(),
        };
        let page = anonymous.get(&path).await.expect(200);
        let chunk = page["chunk"].as_array().unwrap().clone();
        assert!(chunk.len() <= 2);
        seen.extend(chunk.iter().map(|r| r["room_id"].as_str().unwrap().to_owned()));
        pages.push(page.clone());
        match page["next_batch"].as_str() {
            Some(next) => since = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination did not end");
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
    assert_eq!(seen, chunk.iter().map(|r| r["room_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>());
    let back = pages[2]["prev_batch"].as_str().expect("prev_batch on the last page");
    let previous = anonymous
        .get(&format!("/_matrix/client/v3/publicRooms?limit=2&since={}", enc(back)))
        .await
        .expect(200);
    assert_eq!(previous["chunk"], pages[1]["chunk"]);

    // Searching matches names, topics and aliases, case-insensitively.
    let search = |term: &str, limit: Option<u64>| {
        let alice = alice.clone();
        let mut body = json!({"filter": {"generic_search_term": term}});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        async move { alice.post("/_matrix/client/v3/publicRooms", &body).await.expect(200) }
    };
    let found = search("beta", None).await;
    let mut ids: Vec<&str> =
        found["chunk"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = [rooms[1].as_str(), topical.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "the unpublished 'Beta secret' stays hidden: {found}");
    assert_eq!(search("ZETA", None).await["chunk"][0]["room_id"], topical);
    assert_eq!(search("nothing matches this", None).await["chunk"], json!([]));
    let limited = search("a", Some(4)).await;
    assert_eq!(limited["chunk"].as_array().unwrap().len(), 4);
    let rest = alice
        .post(
            "/_matrix/client/v3/publicRooms",
            &json!({"filter": {"generic_search_term": "a"}, "limit": 4, "since": limited["next_batch"]}),
        )
        .await
        .expect(200);
    let total = limited["chunk"].as_array().unwrap().len() + rest["chunk"].as_array().unwrap().len();
    assert_eq!(total, 6, "every published room has an 'a' somewhere");

    // The filtered form needs a login; the plain listing does not.
    anonymous.post("/_matrix/client/v3/publicRooms", &json!({})).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_canonical_alias_event_may_only_name_valid_aliases_of_this_room() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let other_room = alice.create_room(&json!({})).await;
    let server_name = server_name_of(alice.user_id()).to_owned();
    let (ours, theirs, unset) =
        (format!("#ours:{server_name}"), format!("#theirs:{server_name}"), format!("#unset:{server_name}"));
    alice.put(&alias_path(&ours), &json!({"room_id": room})).await.expect(200);
    alice.put(&alias_path(&theirs), &json!({"room_id": other_room})).await.expect(200);
    let put = |content: Value| {
        let alice = alice.clone();
        let room = room.clone();
        async move { alice.put_state(&room, "m.room.canonical_alias", "", &content).await }
    };

    put(json!({"alias": unset})).await.expect_error(400, "M_BAD_ALIAS");
    put(json!({"alias": theirs})).await.expect_error(400, "M_BAD_ALIAS");
    put(json!({"alias": ours, "alt_aliases": [theirs]})).await.expect_error(400, "M_BAD_ALIAS");
    put(json!({"alias": "not an alias"})).await.expect_error(400, "M_INVALID_PARAM");
    put(json!({"alias": ours, "alt_aliases": "#not:alist"})).await.expect_error(400, "M_INVALID_PARAM");
    alice.get_state(&room, "m.room.canonical_alias", "").await.expect_error(404, "M_NOT_FOUND");

    put(json!({"alias": ours})).await.expect(200);
    assert_eq!(alice.get_state(&room, "m.room.canonical_alias", "").await.expect(200)["alias"], ours);
    // An alias already listed is not checked again, even once deleted.
    alice.delete(&alias_path(&ours), None).await.expect(200);
    put(json!({"alias": ours, "alt_aliases": []})).await.expect(200);
    put(json!({})).await.expect(200);
    // Without the power to send it, the answer is the auth rules' refusal, whatever the alias.
    bob.join_room(&room).await.expect(200);
    bob.put_state(&room, "m.room.canonical_alias", "", &json!({"alias": theirs}))
        .await
        .expect_error(403, "M_FORBIDDEN");
}

/// v1.4: `filter.room_types` picks rooms by their type; `null` stands for rooms without one.
#[tokio::test]
async fn public_rooms_filter_by_room_type() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let space = alice
        .create_room(&json!({"preset": "public_chat", "visibility": "public", "creation_content": {"type": "m.space"}}))
        .await;
    let plain = alice.create_room(&json!({"preset": "public_chat", "visibility": "public"})).await;
    let listed = |types: Value| {
        let alice = &alice;
        async move {
            let reply =
                alice.post("/_matrix/client/v3/publicRooms", &json!({"filter": {"room_types": types}})).await;
            let chunk = reply.expect(200)["chunk"].as_array().unwrap().clone();
            let mut ids: Vec<String> =
                chunk.iter().map(|r| r["room_id"].as_str().unwrap().to_owned()).collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![space.clone(), plain.clone()];
    both.sort();
    assert_eq!(listed(json!([])).await, both);
    assert_eq!(listed(json!(["m.space"])).await, vec![space.clone()]);
    assert_eq!(listed(json!([null])).await, vec![plain.clone()]);
    assert_eq!(listed(json!([null, "m.space"])).await, both);
}
