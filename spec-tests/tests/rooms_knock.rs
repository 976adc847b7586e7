//! Knocking: `POST /knock` in rooms whose join rule is `knock`, the knock in the knocker's
//! `/sync` (`rooms.knock`, and sliding sync) and the room's member list, accepting it by an
//! invite, rejecting it by a kick, rescinding it by leaving, the refusals, and all of it
//! between two Myelins (`make_knock`, `send_knock`, and their errors).

mod federation_support;
mod sync_support;

use federation_support::{CROSSING, Feed, signing::signed_request};
use spec_tests::{rooms::*, *};
use sync_support::{next_batch, sync};

/// A private room of `owner`'s whose join rule is `knock`, with a name and an alias.
async fn knock_room(owner: &Client, alias: &str) -> String {
    let room = owner
        .create_room(&json!({"preset": "private_chat", "name": "Knock here", "room_alias_name": alias}))
        .await;
    owner.put_state(&room, "m.room.join_rules", "", &json!({"join_rule": "knock"})).await.expect(200);
    room
}

/// The user's membership in the room, as the member list says.
async fn listed_membership(client: &Client, room: &str, user: &str) -> Option<String> {
    let members = client.get(&room_path(room, "members")).await.expect(200);
    members["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["state_key"] == user)
        .map(|e| e["content"]["membership"].as_str().expect("membership").to_owned())
}

/// The stripped state of a knocked room in a sync response; panics when the room is not
/// under `rooms.knock`.
fn knock_state<'a>(sync: &'a Value, room: &str) -> &'a Vec<Value> {
    sync["rooms"]["knock"][room]["knock_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{room} under rooms.knock: {sync}"))
}

fn stripped<'a>(events: &'a [Value], kind: &str, state_key: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind && e["state_key"] == state_key)
}

/// Which of `join`, `invite`, `knock` and `leave` hold the room in a sync response.
fn sections(sync: &Value, room: &str) -> Vec<&'static str> {
    ["join", "invite", "knock", "leave"]
        .into_iter()
        .filter(|s| sync["rooms"][*s].get(room).is_some())
        .collect()
}

#[tokio::test]
async fn a_knock_shows_in_sync_and_the_member_list_and_an_invite_lets_the_knocker_in() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = knock_room(&alice, "knockers").await;
    let since = next_batch(&sync(&bob, None, 0, None).await);

    // By alias, with a reason.
    let alias = format!("#knockers:{}", server_name_of(alice.user_id()));
    let knocked = bob.knock_room(&alias, &json!({"reason": "let me in"})).await.expect(200);
    assert_eq!(knocked["room_id"], room);

    let update = sync(&bob, Some(&since), 0, None).await;
    assert_eq!(sections(&update, &room), ["knock"], "{update}");
    let state = knock_state(&update, &room);
    assert!(stripped(state, "m.room.create", "").is_some(), "the create event: {state:?}");
    assert_eq!(stripped(state, "m.room.name", "").expect("name")["content"]["name"], "Knock here");
    assert_eq!(
        stripped(state, "m.room.join_rules", "").expect("join rules")["content"]["join_rule"],
        "knock"
    );
    let own = stripped(state, "m.room.member", bob.user_id()).expect("the knock itself");
    assert_eq!(own["content"]["membership"], "knock");
    assert_eq!(own["content"]["reason"], "let me in");
    for event in state {
        let mut keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["content", "sender", "state_key", "type"], "stripped: {event}");
    }
    // A full sync shows it too, and nothing of the room's history.
    let full = sync(&bob, None, 0, None).await;
    assert_eq!(sections(&full, &room), ["knock"], "{full}");

    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("knock"));
    let member = alice.get_state(&room, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(member["reason"], "let me in");

    // Accepted by an invite: the room moves to `invite`, and bob can join.
    let since = next_batch(&update);
    alice.membership_action(&room, "invite", bob.user_id()).await.expect(200);
    let update = sync(&bob, Some(&since), 0, None).await;
    assert_eq!(sections(&update, &room), ["invite"], "{update}");
    bob.join_room(&room).await.expect(200);
    let update = sync(&bob, Some(&next_batch(&update)), 0, None).await;
    assert_eq!(sections(&update, &room), ["join"], "{update}");
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("join"));
}

#[tokio::test]
async fn a_knock_is_rejected_by_a_kick_and_rescinded_by_leaving() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = knock_room(&alice, "doorstep").await;
    // Carol is in the room without the power to kick.
    alice.membership_action(&room, "invite", carol.user_id()).await.expect(200);
    carol.join_room(&room).await.expect(200);

    bob.knock_room(&room, &json!({})).await.expect(200);
    carol.membership_action(&room, "kick", bob.user_id()).await.expect_error(403, "M_FORBIDDEN");
    let since = next_batch(&sync(&bob, None, 0, None).await);
    alice
        .post(&room_path(&room, "kick"), &json!({"user_id": bob.user_id(), "reason": "not today"}))
        .await
        .expect(200);
    let update = sync(&bob, Some(&since), 0, None).await;
    assert_eq!(sections(&update, &room), ["leave"], "{update}");
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("leave"));

    // A knock may come again after a refusal, and be taken back.
    bob.knock_room(&room, &json!({})).await.expect(200);
    let since = next_batch(&sync(&bob, Some(&next_batch(&update)), 0, None).await);
    bob.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
    let update = sync(&bob, Some(&since), 0, None).await;
    assert_eq!(sections(&update, &room), ["leave"], "{update}");
    let member = alice.get_state(&room, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(member["membership"], "leave");
}

#[tokio::test]
async fn knocking_is_refused_unless_the_join_rules_allow_it_and_the_user_is_outside() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let public = alice.create_room(&json!({"preset": "public_chat"})).await;
    let private = alice.create_room(&json!({"preset": "private_chat"})).await;
    let room = knock_room(&alice, "gate").await;

    bob.knock_room(&public, &json!({})).await.expect_error(403, "M_FORBIDDEN");
    bob.knock_room(&private, &json!({})).await.expect_error(403, "M_FORBIDDEN");
    alice.knock_room(&room, &json!({})).await.expect_error(403, "M_FORBIDDEN");
    let unknown_alias = format!("#nowhere:{}", server_name_of(alice.user_id()));
    bob.knock_room(&unknown_alias, &json!({})).await.expect_error(404, "M_NOT_FOUND");
    let unknown_room = format!("!nosuchroom:{}", server_name_of(alice.user_id()));
    bob.knock_room(&unknown_room, &json!({})).await.expect_error(404, "M_NOT_FOUND");
    let path = format!("/_matrix/client/v3/knock/{}", enc(&room));
    bob.request_raw("POST", &path, "{not json").await.expect_error(400, "M_NOT_JSON");
    bob.post(&path, &json!({"reason": 42})).await.expect_error(400, "M_BAD_JSON");
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await, None, "no knock came through");

    // The body may be empty: every field is optional.
    bob.request_raw("POST", &path, "").await.expect(200);
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("knock"));

    // Invited or banned users cannot knock.
    let carol = server.client().register("carol", PASSWORD).await;
    alice.membership_action(&room, "invite", carol.user_id()).await.expect(200);
    carol.knock_room(&room, &json!({})).await.expect_error(403, "M_FORBIDDEN");
    alice.membership_action(&room, "ban", bob.user_id()).await.expect(200);
    bob.knock_room(&room, &json!({})).await.expect_error(403, "M_FORBIDDEN");

    // Knocking came with room version 7, and this server makes no room older than 10.
    alice
        .post("/_matrix/client/v3/createRoom", &json!({"room_version": "6"}))
        .await
        .expect_error(400, "M_UNSUPPORTED_ROOM_VERSION");
}

/// Sliding sync lists a knocked room with its stripped state (the knock among it), as
/// Synapse does, and sends it again when the knock is accepted.
#[tokio::test]
async fn sliding_sync_lists_a_knocked_room_with_its_stripped_state() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = knock_room(&alice, "slide").await;
    bob.knock_room(&room, &json!({})).await.expect(200);

    let path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let request = json!({
        "conn_id": "knocks",
        "lists": {"all": {"ranges": [[0, 9]], "required_state": [["m.room.name", ""]], "timeline_limit": 5}}
    });
    let first = bob.post(path, &request).await.expect(200);
    assert_eq!(first["lists"]["all"]["count"], 1, "{first}");
    let listed = &first["rooms"][&room];
    let state = listed["invite_state"].as_array().unwrap_or_else(|| panic!("stripped state: {first}"));
    let own = stripped(state, "m.room.member", bob.user_id()).expect("the knock");
    assert_eq!(own["content"]["membership"], "knock");
    assert!(stripped(state, "m.room.create", "").is_some(), "{state:?}");
    assert!(listed.get("timeline").is_none(), "no history for a knock: {listed}");

    alice.membership_action(&room, "invite", bob.user_id()).await.expect(200);
    let pos = first["pos"].as_str().expect("pos");
    let next = bob.post(&format!("{path}?pos={}&timeout=0", enc(pos)), &request).await.expect(200);
    let state = next["rooms"][&room]["invite_state"].as_array().unwrap_or_else(|| panic!("{next}"));
    let own = stripped(state, "m.room.member", bob.user_id()).expect("the invite");
    assert_eq!(own["content"]["membership"], "invite");
}

/// Bob on B knocks on a room on A: through `make_knock` and `send_knock`, shown in Bob's
/// sync from what A sent, and in the room on A; Alice lets him in with an invite.
#[tokio::test]
async fn a_knock_across_servers_is_seen_on_both_and_accepted_by_an_invite() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = knock_room(&alice, "remote").await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;

    let alias = format!("#remote:{}", a.server_name());
    let knocked = bob.knock_room(&alias, &json!({"reason": "from afar"})).await;
    assert_eq!(knocked.status, 200, "POST /knock/{alias} on B: {}", knocked.body);
    assert_eq!(knocked.body["room_id"], room);
    let state = bob_feed
        .until(CROSSING, "the knock", |body| {
            body["rooms"]["knock"].get(room.as_str()).map(|_| knock_state(body, &room).clone())
        })
        .await;
    assert!(stripped(&state, "m.room.create", "").is_some(), "{state:?}");
    assert_eq!(stripped(&state, "m.room.name", "").expect("name")["content"]["name"], "Knock here");
    let own = stripped(&state, "m.room.member", bob.user_id()).expect("the knock");
    assert_eq!(own["content"]["membership"], "knock");
    assert_eq!(own["content"]["reason"], "from afar");
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("knock"));

    alice.membership_action(&room, "invite", bob.user_id()).await.expect(200);
    bob_feed
        .until(CROSSING, "the invite", |body| body["rooms"]["invite"].get(room.as_str()).map(|_| ()))
        .await;
    let view = sync(&bob, None, 0, None).await;
    assert_eq!(sections(&view, &room), ["invite"], "the invite replaced the knock: {view}");
    let join = bob.join_room(&room).await;
    assert_eq!(join.status, 200, "POST /join on B after the invite: {}", join.body);
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("join"));
}

/// A knock from B refused on A (a kick) reaches Bob's sync; a knock Bob takes back (a
/// leave through `make_leave`) reaches A.
#[tokio::test]
async fn a_knock_across_servers_is_rejected_by_a_kick_and_rescinded_by_leaving() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = knock_room(&alice, "strict").await;
    let mut bob_feed = Feed::new(&bob, &b.server_name()).await;

    let knock_path = format!("/_matrix/client/v3/knock/{}?via={}", enc(&room), enc(&a.server_name()));
    let knocked = bob.post(&knock_path, &json!({})).await;
    assert_eq!(knocked.status, 200, "POST {knock_path} on B: {}", knocked.body);
    bob_feed.until(CROSSING, "the knock", |body| body["rooms"]["knock"].get(room.as_str()).map(|_| ())).await;
    alice.membership_action(&room, "kick", bob.user_id()).await.expect(200);
    bob_feed
        .until(CROSSING, "the refusal", |body| body["rooms"]["leave"].get(room.as_str()).map(|_| ()))
        .await;
    let view = sync(&bob, None, 0, None).await;
    assert!(sections(&view, &room).is_empty(), "the refused knock is gone: {view}");

    let knocked = bob.post(&knock_path, &json!({})).await;
    assert_eq!(knocked.status, 200, "knocking again on B: {}", knocked.body);
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("knock"));
    let left = bob.post(&room_path(&room, "leave"), &json!({})).await;
    assert_eq!(left.status, 200, "POST /leave on B for a remote knock: {}", left.body);
    assert_eq!(listed_membership(&alice, &room, bob.user_id()).await.as_deref(), Some("leave"));
    bob_feed
        .until(CROSSING, "the rescinded knock", |body| body["rooms"]["leave"].get(room.as_str()).map(|_| ()))
        .await;
}

/// `make_knock` and `send_knock` check what the spec lists: the user's server is the
/// caller, the room version is one the caller supports, the join rules allow knocking,
/// and what is sent is the caller's user's knock.
#[tokio::test]
async fn make_knock_and_send_knock_refuse_what_the_spec_refuses() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let room = knock_room(&alice, "checked").await;
    let public = alice.create_room(&json!({"preset": "public_chat"})).await;
    let bob = format!("@bob:{}", b.server_name());
    let make_knock = |room: &str, user: &str, ver: &str| {
        format!("/_matrix/federation/v1/make_knock/{}/{}?ver={ver}", enc(room), enc(user))
    };

    let uri = make_knock(&room, alice.user_id(), "12");
    signed_request(&b, &a, "GET", &uri, None).await.expect_error(403, "M_FORBIDDEN");
    let uri = make_knock(&room, &bob, "1");
    let reply = signed_request(&b, &a, "GET", &uri, None).await;
    reply.expect_error(400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(reply.body["room_version"], "12", "{}", reply.body);
    let uri = make_knock(&public, &bob, "12");
    signed_request(&b, &a, "GET", &uri, None).await.expect_error(403, "M_FORBIDDEN");
    let uri = make_knock(&format!("!nosuchroom:{}", a.server_name()), &bob, "12");
    signed_request(&b, &a, "GET", &uri, None).await.expect_error(404, "M_NOT_FOUND");

    let uri = make_knock(&room, &bob, "11&ver=12");
    let template = signed_request(&b, &a, "GET", &uri, None).await;
    assert_eq!(template.status, 200, "GET {uri}: {}", template.body);
    assert_eq!(template.body["room_version"], "12");
    let event = &template.body["event"];
    assert_eq!(event["type"], "m.room.member");
    assert_eq!(event["state_key"], bob.as_str());
    assert_eq!(event["sender"], bob.as_str());
    assert_eq!(event["content"]["membership"], "knock");

    // Not signed by B at all, and not a knock: refused before anything is stored.
    let uri = format!("/_matrix/federation/v1/send_knock/{}/{}", enc(&room), enc("$notaknock"));
    let mut unsigned = event.clone();
    unsigned["origin_server_ts"] = json!(1);
    signed_request(&b, &a, "PUT", &uri, Some(&unsigned)).await.expect_error(400, "M_INVALID_PARAM");
    unsigned["content"]["membership"] = json!("join");
    signed_request(&b, &a, "PUT", &uri, Some(&unsigned)).await.expect_error(400, "M_INVALID_PARAM");
    assert_eq!(listed_membership(&alice, &room, &bob).await, None, "nothing of it reached the room");
}
