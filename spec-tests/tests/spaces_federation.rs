//! Spaces across two Myelins: a client's `/hierarchy` on A reaches children only B has
//! through B's federation `/hierarchy`, and B answers that endpoint itself (children,
//! inaccessible children, `suggested_only`, errors).

mod federation_support;
mod sync_support;

use federation_support::signing::{signing_key_of, x_matrix};
use spec_tests::{rooms::*, *};

/// `GET /_matrix/client/v1/rooms/{room}/hierarchy`, expecting success.
async fn hierarchy(client: &Client, room: &str) -> Value {
    let path = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(room));
    let reply = client.get(&path).await;
    assert_eq!(reply.status, 200, "GET {path} as {}: {}", client.user_id(), reply.body);
    reply.body
}

fn room_ids(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET {uri}` on `to`'s federation listener, signed as `from` with its real key.
async fn federation_get(from: &Server, to: &Server, uri: &str) -> Resp {
    let header = x_matrix(&signing_key_of(from), &from.server_name(), &to.server_name(), "GET", uri, None);
    to.federation_client().request_with("GET", uri, &[("authorization", &header)], None).await
}

/// On B: the public space `Sub` lists the public room `Two` (first) and the invite-only
/// room `Hidden`; the public room `One` stands alone. Returns (sub, one, two, hidden).
async fn rooms_on_b(bob: &Client) -> (String, String, String, String) {
    let via = json!([server_name_of(bob.user_id())]);
    let sub = bob
        .create_room(
            &json!({"preset": "public_chat", "name": "Sub on B", "creation_content": {"type": "m.space"}}),
        )
        .await;
    let one = bob.create_room(&json!({"preset": "public_chat", "name": "One on B", "topic": "remote"})).await;
    let two = bob.create_room(&json!({"preset": "public_chat", "name": "Two on B"})).await;
    let hidden = bob.create_room(&json!({"preset": "private_chat", "name": "Hidden on B"})).await;
    bob.put_state(&sub, "m.space.child", &two, &json!({"via": via, "order": "a", "suggested": true}))
        .await
        .expect(200);
    bob.put_state(&sub, "m.space.child", &hidden, &json!({"via": via, "order": "b"})).await.expect(200);
    (sub, one, two, hidden)
}

/// Alice's space on A lists rooms only B has; her walk on A asks B about them, descends
/// into B's subspace and leaves out the room B says A's users cannot reach.
#[tokio::test]
async fn a_space_reaches_children_that_only_another_server_has() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let (sub, one, two, hidden) = rooms_on_b(&bob).await;
    let top = alice
        .create_room(
            &json!({"preset": "public_chat", "name": "Top on A", "creation_content": {"type": "m.space"}}),
        )
        .await;
    let via = json!([b.server_name()]);
    alice.put_state(&top, "m.space.child", &sub, &json!({"via": via, "order": "a"})).await.expect(200);
    alice.put_state(&top, "m.space.child", &one, &json!({"via": via, "order": "b"})).await.expect(200);

    let page = hierarchy(&alice, &top).await;
    assert_eq!(room_ids(&page), [top.clone(), sub.clone(), two.clone(), one.clone()], "{page}");
    assert!(!room_ids(&page).contains(&hidden), "{page}");
    let rooms = page["rooms"].as_array().unwrap();
    let sub_chunk = &rooms[1];
    assert_eq!(sub_chunk["name"], "Sub on B", "{sub_chunk}");
    assert_eq!(sub_chunk["room_type"], "m.space", "{sub_chunk}");
    assert_eq!(sub_chunk["num_joined_members"], 1, "{sub_chunk}");
    let listed: Vec<&str> = sub_chunk["children_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [two.as_str(), hidden.as_str()], "{sub_chunk}");
    let one_chunk = &rooms[3];
    assert_eq!(
        (&one_chunk["name"], &one_chunk["topic"]),
        (&json!("One on B"), &json!("remote")),
        "{one_chunk}"
    );
    assert!(one_chunk.get("join_rule").is_none_or(|rule| rule == "public"), "{one_chunk}");

    // Once Bob invites Alice to the hidden room, B counts it among the children A may see.
    bob.membership_action(&hidden, "invite", alice.user_id()).await.expect(200);
    let hidden_view =
        federation_get(&a, &b, &format!("/_matrix/federation/v1/hierarchy/{}", enc(&sub))).await;
    assert_eq!(hidden_view.status, 200, "{}", hidden_view.body);
    let children: Vec<&str> = hidden_view.body["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(children, [two.as_str(), hidden.as_str()], "{}", hidden_view.body);
}

/// B answers `/_matrix/federation/v1/hierarchy` itself: the space with its children state,
/// the children A's users could join, and the ones they could not.
#[tokio::test]
async fn a_server_describes_its_space_to_another_server() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let bob = b.client().register("bob", PASSWORD).await;
    let (sub, _, two, hidden) = rooms_on_b(&bob).await;

    let uri = format!("/_matrix/federation/v1/hierarchy/{}", enc(&sub));
    let reply = federation_get(&a, &b, &uri).await;
    assert_eq!(reply.status, 200, "GET {uri} on B as A: {}", reply.body);
    let body = &reply.body;
    assert_eq!(body["room"]["room_id"], sub.as_str(), "{body}");
    assert_eq!(body["room"]["name"], "Sub on B", "{body}");
    assert_eq!(body["room"]["room_type"], "m.space", "{body}");
    let children_state = body["room"]["children_state"].as_array().expect("children_state");
    assert_eq!(children_state.len(), 2, "{body}");
    assert!(
        children_state.iter().all(|c| c["origin_server_ts"].is_u64() && c["sender"] == bob.user_id()),
        "{body}"
    );
    let children = body["children"].as_array().expect("children");
    assert_eq!(children.len(), 1, "{body}");
    assert_eq!((&children[0]["room_id"], &children[0]["name"]), (&json!(two), &json!("Two on B")), "{body}");
    assert_eq!(body["inaccessible_children"], json!([hidden]), "{body}");

    let suggested = federation_get(&a, &b, &format!("{uri}?suggested_only=true")).await;
    assert_eq!(suggested.status, 200, "{}", suggested.body);
    assert_eq!(
        suggested.body["room"]["children_state"].as_array().map(Vec::len),
        Some(1),
        "{}",
        suggested.body
    );
    assert_eq!(suggested.body["inaccessible_children"], json!([]), "{}", suggested.body);

    // A room A could not join, one B does not have, and a request B cannot verify.
    let private_space =
        bob.create_room(&json!({"preset": "private_chat", "creation_content": {"type": "m.space"}})).await;
    let closed =
        federation_get(&a, &b, &format!("/_matrix/federation/v1/hierarchy/{}", enc(&private_space))).await;
    assert_eq!((closed.status, closed.errcode()), (404, "M_NOT_FOUND"), "{}", closed.body);
    let unknown =
        format!("/_matrix/federation/v1/hierarchy/{}", enc(&format!("!nowhere:{}", b.server_name())));
    let missing = federation_get(&a, &b, &unknown).await;
    assert_eq!((missing.status, missing.errcode()), (404, "M_NOT_FOUND"), "{}", missing.body);
    let unsigned = b.federation_client().get(&uri).await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
}
