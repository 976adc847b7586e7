//! Restricted rooms (`restricted`, `knock_restricted` join rules): members of an allowed
//! room join without an invite, their join naming a user of the resident server who may
//! invite (`join_authorised_via_users_server`); others are refused or may knock. Then the
//! same from another server: the resident server vouches for the join in `make_join` and
//! countersigns it in `send_join`.

mod federation_support;
mod sync_support;

use federation_support::{CROSSING, Feed, signing::signed_request};
use spec_tests::{rooms::*, *};

/// The member event of `user` as `/members` lists it (with its id and sender).
async fn member_event(client: &Client, room: &str, user: &str) -> Value {
    let members = client.get(&room_path(room, "members")).await.expect(200);
    members["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["state_key"] == user)
        .cloned()
        .unwrap_or_else(|| panic!("{user} in {room}: {members}"))
}

/// A room of `owner`'s whose join rule `join_rule` admits members of `allowed`.
async fn restricted_room(owner: &Client, join_rule: &str, allowed: &str) -> String {
    let room = owner.create_room(&json!({"preset": "private_chat", "name": "Members only"})).await;
    let rules = json!({"join_rule": join_rule, "allow": [{"type": "m.room_membership", "room_id": allowed}]});
    owner.put_state(&room, "m.room.join_rules", "", &rules).await.expect(200);
    room
}

#[tokio::test]
async fn members_of_the_allowed_room_join_vouched_for_by_a_user_who_may_invite() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let dave = server.client().register("dave", PASSWORD).await;
    let space = alice
        .create_room(&json!({"preset": "private_chat", "invite": [bob.user_id(), dave.user_id()]}))
        .await;
    bob.join_room(&space).await.expect(200);
    let room = restricted_room(&alice, "restricted", &space).await;

    carol.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
    // Invited to the allowed room is not joined to it.
    dave.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
    bob.join_room(&room).await.expect(200);
    let join = member_event(&alice, &room, bob.user_id()).await;
    assert_eq!(join["content"]["membership"], "join");
    assert_eq!(join["content"]["join_authorised_via_users_server"], alice.user_id(), "{join}");
    assert_eq!(join["sender"], bob.user_id());

    // Only the join is checked: leaving the allowed room later keeps bob in.
    bob.post(&room_path(&space, "leave"), &json!({})).await.expect(200);
    bob.send_text(&room, "still here").await;

    // An invite admits anyone, and then no one needs to vouch.
    alice.membership_action(&room, "invite", carol.user_id()).await.expect(200);
    carol.join_room(&room).await.expect(200);
    let join = member_event(&alice, &room, carol.user_id()).await;
    assert!(join["content"].get("join_authorised_via_users_server").is_none(), "{join}");
}

#[tokio::test]
async fn a_knock_restricted_room_admits_members_of_the_allowed_room_and_lets_others_knock() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let space = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&space).await.expect(200);
    let room = restricted_room(&alice, "knock_restricted", &space).await;

    bob.join_room(&room).await.expect(200);
    let join = member_event(&alice, &room, bob.user_id()).await;
    assert_eq!(join["content"]["join_authorised_via_users_server"], alice.user_id(), "{join}");
    carol.join_room(&room).await.expect_error(403, "M_FORBIDDEN");
    carol.knock_room(&room, &json!({"reason": "may I?"})).await.expect(200);
    assert_eq!(member_event(&alice, &room, carol.user_id()).await["content"]["membership"], "knock");
    bob.knock_room(&room, &json!({})).await.expect_error(403, "M_FORBIDDEN");

    // A plain `restricted` room takes no knocks.
    let closed = restricted_room(&alice, "restricted", &space).await;
    carol.knock_room(&closed, &json!({})).await.expect_error(403, "M_FORBIDDEN");
}

/// Bob on B is in the allowed room on A, so A vouches for his join to the restricted room:
/// the template names Alice, A countersigns the join in `send_join`, B keeps the field and
/// A's signature, and the room works on both sides. Carol on B, in no allowed room, is
/// refused with A's 403.
#[tokio::test]
async fn a_user_of_another_server_joins_through_the_allowed_room_and_the_resident_server_signs() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let carol = b.client().register("carol", PASSWORD).await;
    let space = alice.create_room(&json!({"preset": "public_chat", "name": "Space"})).await;
    // Room ids name no server since room version 12: the server to join through is asked.
    let join_path =
        |room: &str| format!("/_matrix/client/v3/join/{}?via={}", enc(room), enc(&a.server_name()));
    let joined = bob.post(&join_path(&space), &json!({})).await;
    assert_eq!(joined.status, 200, "bob joins the allowed room from B: {}", joined.body);
    let room = restricted_room(&alice, "restricted", &space).await;
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;

    carol.post(&join_path(&room), &json!({})).await.expect_error(403, "M_FORBIDDEN");

    let joined = bob.post(&join_path(&room), &json!({})).await;
    assert_eq!(joined.status, 200, "bob joins the restricted room from B: {}", joined.body);
    alice_feed.membership(&room, bob.user_id(), "join").await;
    let on_a = member_event(&alice, &room, bob.user_id()).await;
    assert_eq!(on_a["content"]["join_authorised_via_users_server"], alice.user_id(), "{on_a}");
    let on_b = member_event(&bob, &room, bob.user_id()).await;
    assert_eq!(on_b["event_id"], on_a["event_id"], "one join on both servers");
    assert_eq!(on_b["content"]["join_authorised_via_users_server"], alice.user_id(), "{on_b}");

    // The join as A serves it to B carries both servers' signatures.
    let uri = format!("/_matrix/federation/v1/event/{}", enc(on_a["event_id"].as_str().unwrap()));
    let served = signed_request(&b, &a, "GET", &uri, None).await;
    assert_eq!(served.status, 200, "GET {uri}: {}", served.body);
    let signatures = &served.body["pdus"][0]["signatures"];
    assert!(signatures[a.server_name()].is_object(), "A countersigned: {signatures}");
    assert!(signatures[b.server_name()].is_object(), "B signed: {signatures}");

    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;
    alice.send_text(&room, "welcome").await;
    assert_eq!(bob_feed.messages(&room, 1, CROSSING).await, ["welcome"]);
    bob.send_text(&room, "thanks").await;
    assert_eq!(alice_feed.messages(&room, 2, CROSSING).await, ["welcome", "thanks"]);
}

/// The resident server's side: `make_join` vouches only for users in an allowed room it
/// can see, and `send_join` refuses a join that names someone else's user to vouch for it.
#[tokio::test]
async fn make_join_and_send_join_check_restricted_joins() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let space = alice.create_room(&json!({"preset": "public_chat"})).await;
    let room = restricted_room(&alice, "restricted", &space).await;
    let elsewhere = restricted_room(&alice, "restricted", &format!("!unknown:{}", b.server_name())).await;
    let bob = format!("@bob:{}", b.server_name());
    let make_join =
        |room: &str| format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(room), enc(&bob));

    signed_request(&b, &a, "GET", &make_join(&room), None).await.expect_error(403, "M_FORBIDDEN");
    signed_request(&b, &a, "GET", &make_join(&elsewhere), None)
        .await
        .expect_error(400, "M_UNABLE_TO_AUTHORISE_JOIN");

    // A join claiming a user of B vouches for it is not A's to sign.
    let template = signed_request(&b, &a, "GET", &make_join(&space), None).await;
    assert_eq!(template.status, 200, "make_join for the public room: {}", template.body);
    let mut event = template.body["event"].clone();
    event["content"]["join_authorised_via_users_server"] = json!(format!("@someone:{}", b.server_name()));
    event["room_id"] = json!(room);
    let uri = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room), enc("$whatever"));
    signed_request(&b, &a, "PUT", &uri, Some(&event)).await.expect_error(400, "M_INVALID_PARAM");
}
