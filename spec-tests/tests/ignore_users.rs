//! Ignoring users (`m.ignored_user_list`), a module the spec requires of every server:
//! an ignored user's messages and invites do not reach the user who ignores them, nor
//! notify them, in `/sync`, sliding sync and `/messages`; their state events still do.

use spec_tests::{rooms::*, *};

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn ignore(client: &Client, users: &[&str]) {
    let ignored: serde_json::Map<String, Value> =
        users.iter().map(|u| ((*u).to_owned(), json!({}))).collect();
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(client.user_id()));
    client.put(&path, &json!({"ignored_users": ignored})).await.expect(200);
}

fn bodies(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_ignored_users_messages_neither_show_nor_notify_but_their_state_does() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    let since =
        alice.get("/_matrix/client/v3/sync").await.expect(200)["next_batch"].as_str().unwrap().to_owned();

    ignore(&alice, &[bob.user_id()]).await;
    bob.send_text(&room, "you cannot hear me").await;
    alice.send_text(&room, "quiet in here").await;
    let member = json!({"membership": "join", "displayname": "Bobby"});
    bob.put_state(&room, "m.room.member", bob.user_id(), &member).await.expect(200);

    let sync = alice.get(&format!("/_matrix/client/v3/sync?since={}", enc(&since))).await.expect(200);
    let joined = &sync["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["quiet in here"], "{joined}");
    let renamed = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["content"]["displayname"] == "Bobby");
    assert!(renamed, "state events from an ignored user still arrive: {joined}");
    assert_eq!(joined["unread_notifications"]["notification_count"], 0, "Bob's message did not notify Alice");

    let messages = alice.messages(&room, "dir=b&limit=20").await.expect(200);
    assert!(!bodies(&messages["chunk"]).contains(&"you cannot hear me"), "{messages}");
    let bobs_view = bob.messages(&room, "dir=b&limit=20").await.expect(200);
    assert!(bodies(&bobs_view["chunk"]).contains(&"you cannot hear me"), "only Alice ignores Bob");

    let sliding = alice
        .post(SLIDING, &json!({"lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 10}}}))
        .await
        .expect(200);
    let timeline = &sliding["rooms"][&room]["timeline"];
    assert!(!bodies(timeline).contains(&"you cannot hear me"), "{sliding}");

    // Un-ignoring shows what Bob sends from then on.
    ignore(&alice, &[]).await;
    bob.send_text(&room, "back again").await;
    let messages = alice.messages(&room, "dir=b&limit=1").await.expect(200);
    assert_eq!(bodies(&messages["chunk"]), ["back again"]);
}

#[tokio::test]
async fn an_invite_from_an_ignored_user_is_not_shown() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    ignore(&alice, &[bob.user_id()]).await;
    let from_bob = bob.create_room(&json!({"invite": [alice.user_id()]})).await;
    let from_carol = carol.create_room(&json!({"invite": [alice.user_id()]})).await;

    let sync = alice.get("/_matrix/client/v3/sync").await.expect(200);
    let invites = &sync["rooms"]["invite"];
    assert!(invites.get(&from_bob).is_none(), "{invites}");
    assert!(invites.get(&from_carol).is_some(), "{invites}");

    let list = json!({"lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 1}}});
    let sliding = alice.post(SLIDING, &list).await.expect(200);
    assert!(sliding["rooms"].get(&from_bob).is_none(), "{sliding}");
    assert!(sliding["rooms"].get(&from_carol).is_some(), "{sliding}");
}

#[tokio::test]
async fn an_ignore_list_without_its_object_is_refused() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(alice.user_id()));
    alice.put(&path, &json!({"ignored_users": ["@bob:x"]})).await.expect_error(400, "M_BAD_JSON");
    alice.put(&path, &json!({})).await.expect_error(400, "M_BAD_JSON");
}

/// A thread's summary leaves out the replies of users the reader ignores: in its count and
/// as its latest reply.
#[tokio::test]
async fn a_thread_summary_leaves_out_ignored_users_replies() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    carol.join_room(&room).await.expect(200);
    let root = bob.send_text(&room, "root").await;
    for (who, body) in [(&bob, "from bob"), (&carol, "from carol")] {
        let reply = json!({"msgtype": "m.text", "body": body,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
        who.send_event(&room, "m.room.message", &reply).await.expect(200);
    }
    ignore(&alice, &[carol.user_id()]).await;
    let path = room_path(&room, &format!("event/{}", enc(&root)));
    let summary = |event: Value| event["unsigned"]["m.relations"]["m.thread"].clone();
    let for_alice = summary(alice.get(&path).await.expect(200));
    assert_eq!(for_alice["count"], 1, "{for_alice}");
    assert_eq!(for_alice["latest_event"]["content"]["body"], "from bob");
    let for_bob = summary(bob.get(&path).await.expect(200));
    assert_eq!(for_bob["count"], 2, "{for_bob}");
    assert_eq!(for_bob["latest_event"]["content"]["body"], "from carol");
}
