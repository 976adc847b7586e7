//! Where a user can make the server connect: a server name is the user's choice (a room
//! alias, a user id, an `mxc://` URI), so federation requests are held to the outbound
//! policy like push (`outbound.allowed_networks`, docs/configuration.md). A server whose
//! list does not open loopback refuses to contact another server on loopback — by IP
//! literal or by a name that resolves there — while the same request works once the
//! network is opened (every other federation test runs that way).

use spec_tests::*;

/// A server on loopback with a public room `#lobby`, a display name and an upload to ask
/// for, and a server whose outbound list is empty, with a user of its own.
async fn closed_server_and_loopback_peer() -> (Server, Server, Client, Client) {
    let peer = Server::start_federating().await;
    let bob = peer.client().register("bob", "password-bob").await;
    bob.create_room(&json!({ "preset": "public_chat", "room_alias_name": "lobby" })).await;
    bob.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(bob.user_id())),
        &json!({ "displayname": "Bob" }),
    )
    .await
    .expect(200);

    let closed = Server::start_federating_reaching(&[], "", TEST_CONFIG).await;
    let alice = closed.client().register("alice", "password-alice").await;
    (peer, closed, alice, bob)
}

/// A refusal by the outbound policy, with an error that says which setting to change.
#[track_caller]
fn assert_refused_by_policy(reply: &Resp, what: &str) {
    assert_ne!(reply.status, 200, "{what}: {}", reply.body);
    let error = reply.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("outbound.allowed_networks"),
        "{what}: the error names the setting: {}",
        reply.body
    );
}

#[tokio::test]
async fn a_server_contacts_no_loopback_server_unless_its_network_is_opened() {
    let (peer, _closed, alice, bob) = closed_server_and_loopback_peer().await;
    let peer_name = peer.server_name();

    let join = alice.join_room(&format!("#lobby:{peer_name}")).await;
    assert_refused_by_policy(&join, "joining a room by an alias on 127.0.0.1");

    let profile = alice.get(&format!("/_matrix/client/v3/profile/{}", enc(bob.user_id()))).await;
    assert_ne!(profile.status, 200, "a profile on 127.0.0.1 is not fetched: {}", profile.body);

    let download =
        alice.get(&format!("/_matrix/client/v1/media/download/{peer_name}/AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_ne!(download.status, 200, "media on 127.0.0.1 is not fetched: {}", download.body);
    assert!(
        peer.log_tail().lines().all(|line| !line.contains("AAAAAAAAAAAAAAAAAAAAAAAA")),
        "the peer was never asked for the media"
    );

    // The same join from a server whose list opens loopback works: the refusal above was
    // the policy's, not a broken peer.
    let open = Server::start_federating().await;
    let carol = open.client().register("carol", "password-carol").await;
    let join = carol.join_room(&format!("#lobby:{peer_name}")).await;
    assert_eq!(join.status, 200, "{}", join.body);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_like_the_literal() {
    let (peer, _closed, alice, _bob) = closed_server_and_loopback_peer().await;
    // `localhost:PORT` is a valid server name whose address comes from a lookup, which is
    // where the check is made (so a name cannot resolve one way when checked and another
    // when connected).
    let port = peer.server_name().rsplit_once(':').expect("a port").1.to_owned();
    let join = alice.join_room(&format!("#lobby:localhost:{port}")).await;
    assert_refused_by_policy(&join, "joining by an alias on localhost");
    let error = join.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("localhost resolves to"), "the refusal names the lookup: {}", join.body);
}
