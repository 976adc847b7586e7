//! The moderation commands of the `myelin` CLI, through both doors (the admin socket of a
//! running server, the store of a stopped one): `user shadow-ban`, `room delete`,
//! `room block`/`unblock`. They run the same functions as the admin API.

use spec_tests::{
    admin_api::*,
    rooms::{PASSWORD, room_path},
    *,
};

#[tokio::test]
async fn shadow_ban_from_the_cli() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = bob.create_room(&json!({"preset": "public_chat"})).await;
    alice.join_room(&room).await.expect(200);

    let out = cli_ok(&server.cli(&["user", "shadow-ban", "alice"], None));
    assert!(out.contains("shadow-banned @alice:localhost"), "{out}");
    alice.send_text(&room, "spam from the shadows").await;
    let history = bob.messages(&room, "dir=b&limit=20").await.expect(200);
    assert!(!history.to_string().contains("spam from the shadows"), "{history}");

    cli_ok(&server.cli(&["user", "shadow-ban", "alice", "--undo"], None));
    alice.send_text(&room, "heard again").await;
    assert!(bob.messages(&room, "dir=b&limit=20").await.expect(200).to_string().contains("heard again"));
    let out = server.cli(&["user", "shadow-ban", "nobody"], None);
    assert!(!out.status.success(), "an unknown user cannot be shadow-banned");
}

#[tokio::test]
async fn room_delete_and_block_from_the_cli() {
    let mut server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    let event = alice.send_text(&room, "soon gone").await;

    let out = cli_ok(&server.cli(&["room", "delete", &room, "--block"], None));
    assert!(out.contains("@alice:localhost") && out.contains("@bob:localhost"), "{out}");
    assert!(out.contains("purged"), "{out}");
    root.get(&admin_path(&format!("v1/rooms/{}", enc(&room)))).await.expect_error(404, "M_NOT_FOUND");
    // A room this server no longer has is one nobody may read (403, as Synapse answers).
    alice.get(&room_path(&room, &format!("event/{}", enc(&event)))).await.expect_error(403, "M_FORBIDDEN");
    let block = root.get(&admin_path(&format!("v1/rooms/{}/block", enc(&room)))).await.expect(200);
    assert_eq!(block, json!({"block": true}), "blocked by the CLI, so by no user");

    // Offline: block a room while the server is stopped; it is refused once it runs again.
    let other = alice.create_room(&json!({"preset": "public_chat"})).await;
    assert!(server.stop().await.success());
    let out = cli_ok(&server.cli(&["room", "block", &other], None));
    assert!(out.contains("blocked"), "{out}");
    server.restart().await;
    bob.join_room(&other).await.expect_error(403, "M_FORBIDDEN");
    cli_ok(&server.cli(&["room", "unblock", &other], None));
    bob.join_room(&other).await.expect(200);

    // Without purge the room stays, empty.
    let out = cli_ok(&server.cli(&["room", "delete", &other, "--no-purge", "--json"], None));
    let reply: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(reply["purged"], false, "{reply}");
    assert_eq!(
        root.get(&admin_path(&format!("v1/rooms/{}", enc(&other)))).await.expect(200)["joined_members"],
        0
    );
    let out = server.cli(&["room", "delete", "!unknown:localhost"], None);
    assert!(!out.status.success(), "an unknown room cannot be deleted");
}
