//! Federation with Synapse, installed from PyPI: a Myelin user joins a room on Synapse,
//! a Synapse user joins a room on Myelin, a Myelin user invites a Synapse user, and
//! messages go both ways in each. Both servers run on loopback with TLS federation
//! listeners and self-signed certificates (see `spec_tests::synapse`).
//!
//! Users act only through their own server's client API.

mod federation_support;
mod sync_support;

use federation_support::{CROSSING, Feed};
use spec_tests::{synapse::Synapse, *};

const PASSWORD: &str = "correct horse battery staple";

/// Registers a user on Synapse (user-interactive auth: the dummy stage, open registration).
async fn register_on_synapse(synapse: &Synapse, user: &str) -> Client {
    let client = synapse.client();
    let body = json!({"username": user, "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
    let first = client.post("/_matrix/client/v3/register", &body).await;
    let reply = if first.status == 401 {
        let session = first.body["session"].clone();
        let body = json!({"username": user, "password": PASSWORD, "auth": {"type": "m.login.dummy", "session": session}});
        client.post("/_matrix/client/v3/register", &body).await
    } else {
        first
    };
    assert_eq!(reply.status, 200, "POST /register on Synapse: {}", reply.body);
    let mut client = client;
    client.access_token = reply.body["access_token"].as_str().map(str::to_owned);
    client.user_id = reply.body["user_id"].as_str().map(str::to_owned);
    client.device_id = reply.body["device_id"].as_str().map(str::to_owned);
    client
}

/// A public room with an alias, made by `creator`.
async fn public_room_with_alias(creator: &Client, alias_name: &str) -> String {
    let reply = creator
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"preset": "public_chat", "room_alias_name": alias_name, "name": "Interop"}),
        )
        .await;
    assert_eq!(reply.status, 200, "POST /createRoom: {}", reply.body);
    reply.body["room_id"].as_str().expect("room_id").to_owned()
}

/// The two users exchange a message each way; each sees the other's in `/sync`.
async fn talk_both_ways(
    room: &str,
    (mine, my_server): (&Client, &str),
    (theirs, their_server): (&Client, &str),
) {
    let mut my_feed = Feed::new(mine, my_server).await;
    let mut their_feed = Feed::new(theirs, their_server).await;
    mine.send_text(room, "hello from the first server").await;
    let seen = their_feed.messages(room, 1, CROSSING).await;
    assert_eq!(seen, ["hello from the first server"], "{} on {their_server}", theirs.user_id());
    theirs.send_text(room, "hello back").await;
    let seen = my_feed.messages(room, 2, CROSSING).await;
    assert_eq!(seen, ["hello from the first server", "hello back"], "{} on {my_server}", mine.user_id());
}

#[tokio::test]
async fn a_myelin_user_joins_a_synapse_room_by_alias_and_they_talk_both_ways() {
    let synapse = Synapse::start().await;
    let myelin = Server::start_federating().await;
    let sam = register_on_synapse(&synapse, "sam").await;
    let mia = myelin.client().register("mia", PASSWORD).await;

    let room = public_room_with_alias(&sam, "interop").await;
    let alias = format!("#interop:{}", synapse.server_name());
    let mut sam_feed = Feed::new(&sam, &synapse.server_name()).await;
    let join = mia.join_room(&alias).await;
    assert_eq!(join.status, 200, "POST /join/{alias} on Myelin: {}", join.body);
    assert_eq!(join.body["room_id"], room.as_str(), "{}", join.body);
    sam_feed.membership(&room, mia.user_id(), "join").await;

    talk_both_ways(&room, (&sam, &synapse.server_name()), (&mia, &myelin.server_name())).await;
}

#[tokio::test]
async fn a_synapse_user_joins_a_myelin_room_by_alias_and_they_talk_both_ways() {
    let synapse = Synapse::start().await;
    let myelin = Server::start_federating().await;
    let sam = register_on_synapse(&synapse, "sam").await;
    let mia = myelin.client().register("mia", PASSWORD).await;

    let room = public_room_with_alias(&mia, "interop").await;
    let alias = format!("#interop:{}", myelin.server_name());
    let mut mia_feed = Feed::new(&mia, &myelin.server_name()).await;
    let join = sam.join_room(&alias).await;
    assert_eq!(join.status, 200, "POST /join/{alias} on Synapse: {}", join.body);
    assert_eq!(join.body["room_id"], room.as_str(), "{}", join.body);
    mia_feed.membership(&room, sam.user_id(), "join").await;

    talk_both_ways(&room, (&mia, &myelin.server_name()), (&sam, &synapse.server_name())).await;
}

#[tokio::test]
async fn a_myelin_user_invites_a_synapse_user_who_accepts() {
    let synapse = Synapse::start().await;
    let myelin = Server::start_federating().await;
    let sam = register_on_synapse(&synapse, "sam").await;
    let mia = myelin.client().register("mia", PASSWORD).await;

    let room = mia.create_room(&json!({"preset": "private_chat", "name": "Invite only"})).await;
    let mut sam_feed = Feed::new(&sam, &synapse.server_name()).await;
    let invite = mia.membership_action(&room, "invite", sam.user_id()).await;
    assert_eq!(invite.status, 200, "POST /rooms/{room}/invite {} on Myelin: {}", sam.user_id(), invite.body);
    sam_feed
        .until(CROSSING, "the invite", |body| body["rooms"]["invite"].get(room.as_str()).map(|_| ()))
        .await;
    let mut mia_feed = Feed::new(&mia, &myelin.server_name()).await;
    let join = sam.join_room(&room).await;
    assert_eq!(join.status, 200, "POST /join/{room} on Synapse: {}", join.body);
    mia_feed.membership(&room, sam.user_id(), "join").await;

    talk_both_ways(&room, (&mia, &myelin.server_name()), (&sam, &synapse.server_name())).await;
}

/// Uploads `bytes` as `content_type` and returns the `mxc://` URI.
async fn upload(client: &Client, content_type: &str, bytes: &[u8]) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", client.base))
        .bearer_auth(client.access_token.as_deref().unwrap_or_default())
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("POST upload")
        .json()
        .await
        .expect("JSON");
    reply["content_uri"].as_str().unwrap_or_else(|| panic!("POST upload: {reply}")).to_owned()
}

/// Downloads an `mxc://` URI through `client`'s server (authenticated media).
async fn download(client: &Client, mxc: &str) -> (u16, Vec<u8>) {
    let rest = mxc.strip_prefix("mxc://").expect("mxc URI");
    let response = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v1/media/download/{rest}", client.base))
        .bearer_auth(client.access_token.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("GET download");
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn files_uploaded_on_either_server_download_byte_identical_on_the_other() {
    let synapse = Synapse::start().await;
    let myelin = Server::start_federating().await;
    let sam = register_on_synapse(&synapse, "sam").await;
    let mia = myelin.client().register("mia", PASSWORD).await;

    let from_sam: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mxc = upload(&sam, "application/octet-stream", &from_sam).await;
    let (status, bytes) = download(&mia, &mxc).await;
    assert_eq!(status, 200, "GET {mxc} on Myelin: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, from_sam, "Synapse's file on Myelin");

    let from_mia: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 241) as u8).collect();
    let mxc = upload(&mia, "application/octet-stream", &from_mia).await;
    let (status, bytes) = download(&sam, &mxc).await;
    assert_eq!(status, 200, "GET {mxc} on Synapse: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, from_mia, "Myelin's file on Synapse");
}
