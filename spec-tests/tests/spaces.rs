//! Spaces on one server: `GET /rooms/{roomId}/hierarchy` walks `m.space.child` events
//! depth first in the spec's child order, with `suggested_only`, `max_depth`, `limit` and
//! `from` paging, shows only rooms the user may see, and answers bad requests with the
//! spec's errors. The federated walk is in `spaces_federation.rs`.

use spec_tests::{rooms::*, *};

/// `GET /_matrix/client/v1/rooms/{room}/hierarchy?{query}`.
async fn hierarchy(client: &Client, room: &str, query: &str) -> Resp {
    client.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy?{query}", enc(room))).await
}

/// The room ids of a successful hierarchy page, in order.
fn room_ids(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A public space named `name`.
async fn space(client: &Client, name: &str) -> String {
    client
        .create_room(&json!({"preset": "public_chat", "name": name, "creation_content": {"type": "m.space"}}))
        .await
}

/// Lists `child` in `space` with `content` (a `via` of the client's server unless given).
async fn add_child(client: &Client, space: &str, child: &str, mut content: Value) {
    if content.get("via").is_none() {
        content["via"] = json!([server_name_of(client.user_id())]);
    }
    client.put_state(space, "m.space.child", child, &content).await.expect(200);
}

/// Every room of the hierarchy, page by page with `limit`; also returns how many pages.
async fn all_pages(client: &Client, room: &str, query: &str) -> (Vec<String>, usize) {
    let (mut rooms, mut pages, mut from) = (Vec::new(), 0, None::<String>);
    loop {
        let query = match &from {
            Some(from) => format!("{query}&from={}", enc(from)),
            None => query.to_owned(),
        };
        let page = hierarchy(client, room, &query).await.expect(200);
        pages += 1;
        rooms.extend(room_ids(&page));
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => return (rooms, pages),
        }
        assert!(pages < 20, "pagination does not end: {rooms:?}");
    }
}

/// The space `Top` lists the space `Sub` (ordered first) and the room `One`; `Sub` lists
/// `Two`. A room listed without a `via` is not a child.
struct Tree {
    top: String,
    sub: String,
    one: String,
    two: String,
}

async fn tree(alice: &Client) -> Tree {
    let top = space(alice, "Top").await;
    let sub = space(alice, "Sub").await;
    let one = alice.create_room(&json!({"preset": "public_chat", "name": "One", "topic": "the first"})).await;
    let two = alice.create_room(&json!({"preset": "public_chat", "name": "Two"})).await;
    let removed = alice.create_room(&json!({"preset": "public_chat", "name": "Removed"})).await;
    add_child(alice, &top, &one, json!({"order": "b", "suggested": true})).await;
    add_child(alice, &top, &sub, json!({"order": "a"})).await;
    add_child(alice, &top, &removed, json!({})).await;
    alice.put_state(&top, "m.space.child", &removed, &json!({})).await.expect(200);
    add_child(alice, &sub, &two, json!({})).await;
    Tree { top, sub, one, two }
}

#[tokio::test]
async fn nested_spaces_are_walked_depth_first_with_their_summaries_and_children() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let Tree { top, sub, one, two } = tree(&alice).await;
    let alias = format!("#one:{}", server_name_of(alice.user_id()));
    alice
        .put(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)), &json!({"room_id": one}))
        .await
        .expect(200);
    alice.put_state(&one, "m.room.canonical_alias", "", &json!({"alias": alias})).await.expect(200);
    alice.put_state(&one, "m.room.avatar", "", &json!({"url": "mxc://example.org/one"})).await.expect(200);

    let page = hierarchy(&alice, &top, "").await.expect(200);
    // Sub's subtree comes before One: Sub sorts first by its `order`.
    assert_eq!(room_ids(&page), [top.clone(), sub.clone(), two.clone(), one.clone()], "{page}");
    assert!(page.get("next_batch").is_none(), "{page}");

    let rooms = page["rooms"].as_array().unwrap();
    let top_chunk = &rooms[0];
    assert_eq!(top_chunk["name"], "Top");
    assert_eq!(top_chunk["room_type"], "m.space");
    // An absent join rule means public.
    assert!(top_chunk.get("join_rule").is_none_or(|rule| rule == "public"), "{top_chunk}");
    assert_eq!(top_chunk["num_joined_members"], 1);
    assert_eq!(top_chunk["world_readable"], false);
    assert_eq!(top_chunk["guest_can_join"], false);
    // Only the children with a `via`, as stripped events with their timestamps.
    let children = top_chunk["children_state"].as_array().expect("children_state");
    let listed: Vec<&str> = children.iter().map(|c| c["state_key"].as_str().unwrap()).collect();
    assert_eq!(listed, [sub.as_str(), one.as_str()], "{top_chunk}");
    for child in children {
        assert_eq!(child["type"], "m.space.child", "{child}");
        assert_eq!(child["sender"], alice.user_id(), "{child}");
        assert!(child["origin_server_ts"].as_u64().is_some_and(|ts| ts > 0), "{child}");
        assert!(child["content"]["via"].is_array(), "{child}");
        assert!(child.get("event_id").is_none(), "stripped: {child}");
    }

    let one_chunk = &rooms[3];
    assert_eq!(one_chunk["name"], "One");
    assert_eq!(one_chunk["topic"], "the first");
    assert_eq!(one_chunk["canonical_alias"], alias);
    assert_eq!(one_chunk["avatar_url"], "mxc://example.org/one");
    assert!(one_chunk.get("room_type").is_none(), "{one_chunk}");
    assert_eq!(one_chunk["children_state"], json!([]), "not a space: {one_chunk}");
}

#[tokio::test]
async fn suggested_only_and_max_depth_prune_the_walk() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let Tree { top, sub, one, two } = tree(&alice).await;

    let suggested = hierarchy(&alice, &top, "suggested_only=true").await.expect(200);
    assert_eq!(room_ids(&suggested), [top.clone(), one.clone()], "{suggested}");
    let listed = &suggested["rooms"][0]["children_state"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "only the suggested child: {listed}");

    let root_only = hierarchy(&alice, &top, "max_depth=0").await.expect(200);
    assert_eq!(room_ids(&root_only), [top.as_str()], "{root_only}");
    let one_level = hierarchy(&alice, &top, "max_depth=1").await.expect(200);
    assert_eq!(room_ids(&one_level), [top.clone(), sub.clone(), one.clone()], "{one_level}");
    let deeper = hierarchy(&alice, &top, "max_depth=2").await.expect(200);
    assert_eq!(room_ids(&deeper), [top, sub, two, one], "{deeper}");
}

#[tokio::test]
async fn pages_follow_from_tokens_and_refuse_a_changed_request() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let Tree { top, sub, one, two } = tree(&alice).await;

    let first = hierarchy(&alice, &top, "limit=1").await.expect(200);
    assert_eq!(room_ids(&first), [top.as_str()], "{first}");
    let from = first["next_batch"].as_str().expect("next_batch").to_owned();
    let second = hierarchy(&alice, &top, &format!("limit=2&from={}", enc(&from))).await.expect(200);
    assert_eq!(room_ids(&second), [sub.clone(), two.clone()], "{second}");

    let (rooms, pages) = all_pages(&alice, &top, "limit=2").await;
    assert_eq!(rooms, [top.clone(), sub, two, one], "every room once, in order");
    assert_eq!(pages, 2);

    // The token belongs to the request it continues.
    let from_suggested = format!("limit=1&suggested_only=true&from={}", enc(&from));
    hierarchy(&alice, &top, &from_suggested).await.expect_error(400, "M_INVALID_PARAM");
    hierarchy(&alice, &top, &format!("limit=1&max_depth=1&from={}", enc(&from)))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    let other_space = space(&alice, "Other").await;
    hierarchy(&alice, &other_space, &format!("from={}", enc(&from)))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    hierarchy(&alice, &top, "from=not-a-token").await.expect_error(400, "M_INVALID_PARAM");
    hierarchy(&alice, &top, "limit=0").await.expect_error(400, "M_INVALID_PARAM");
    hierarchy(&alice, &top, "limit=many").await.expect_error(400, "M_INVALID_PARAM");
    hierarchy(&alice, &top, "max_depth=-1").await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn only_rooms_the_user_may_see_are_shown() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let top = space(&alice, "Top").await;
    let public = alice.create_room(&json!({"preset": "public_chat", "name": "Public"})).await;
    let private = alice.create_room(&json!({"preset": "private_chat", "name": "Private"})).await;
    let readable = alice
        .create_room(&json!({
            "preset": "private_chat",
            "name": "Readable",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}],
        }))
        .await;
    let invited = alice.create_room(&json!({"preset": "private_chat", "name": "Invited"})).await;
    let restricted = alice
        .create_room(&json!({
            "preset": "private_chat",
            "name": "Restricted",
            "initial_state": [{"type": "m.room.join_rules", "content": {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": top}],
            }}],
        }))
        .await;
    for (order, child) in [&public, &private, &readable, &invited, &restricted].into_iter().enumerate() {
        add_child(&alice, &top, child, json!({"order": order.to_string()})).await;
    }
    alice.membership_action(&invited, "invite", bob.user_id()).await.expect(200);

    // Alice, in every room, sees them all; Bob, not in the space, sees what is open to him.
    let all = room_ids(&hierarchy(&alice, &top, "").await.expect(200));
    assert_eq!(all.len(), 6, "{all:?}");
    let shown = hierarchy(&bob, &top, "").await.expect(200);
    let bobs = room_ids(&shown);
    assert_eq!(bobs, [top.clone(), public.clone(), readable.clone(), invited.clone()], "{shown}");
    let readable_chunk = &shown["rooms"][2];
    assert_eq!(readable_chunk["world_readable"], true, "{readable_chunk}");
    assert_eq!(readable_chunk["join_rule"], "invite", "{readable_chunk}");

    // Joined to the space, Bob may join the restricted room, so it is shown, with its rule.
    bob.join_room(&top).await.expect(200);
    let shown = hierarchy(&bob, &top, "").await.expect(200);
    assert!(room_ids(&shown).contains(&restricted), "{shown}");
    let chunk =
        shown["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == restricted.as_str()).unwrap();
    assert_eq!(chunk["join_rule"], "restricted", "{chunk}");
    assert_eq!(chunk["allowed_room_ids"], json!([top]), "{chunk}");
    assert!(!room_ids(&shown).contains(&private), "{shown}");
}

#[tokio::test]
async fn a_space_the_user_may_not_see_or_that_does_not_exist_is_forbidden() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let secret =
        alice.create_room(&json!({"preset": "private_chat", "creation_content": {"type": "m.space"}})).await;
    hierarchy(&bob, &secret, "").await.expect_error(403, "M_FORBIDDEN");
    let unknown = format!("!nowhere:{}", server_name_of(alice.user_id()));
    hierarchy(&alice, &unknown, "").await.expect_error(403, "M_FORBIDDEN");
    // A banned user does not see even a public space.
    let open = space(&alice, "Open").await;
    bob.join_room(&open).await.expect(200);
    alice.membership_action(&open, "ban", bob.user_id()).await.expect(200);
    hierarchy(&bob, &open, "").await.expect_error(403, "M_FORBIDDEN");
    server
        .client()
        .get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&open)))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_loop_of_spaces_lists_each_room_once() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let (a, b) = (space(&alice, "A").await, space(&alice, "B").await);
    add_child(&alice, &a, &b, json!({})).await;
    add_child(&alice, &b, &a, json!({})).await;
    add_child(&alice, &b, &b, json!({})).await;
    let page = hierarchy(&alice, &a, "").await.expect(200);
    assert_eq!(room_ids(&page), [a.clone(), b.clone()], "{page}");
    let from_b = hierarchy(&alice, &b, "").await.expect(200);
    assert_eq!(room_ids(&from_b), [b, a], "{from_b}");
}
