//! Room previews, `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (v1.15): to
//! members, to anyone for rooms anyone may look into, and across servers through `via`.

use spec_tests::{rooms::*, *};

fn summary_path(room: &str) -> String {
    format!("/_matrix/client/v1/room_summary/{}", enc(room))
}

#[tokio::test]
async fn a_room_is_summarised_to_those_who_may_see_it() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let public = alice
        .create_room(&json!({"preset": "public_chat", "name": "Open", "topic": "All welcome", "room_alias_name": "open"}))
        .await;
    let alias = format!("#open:{}", server_name_of(alice.user_id()));

    // Anyone, even without an access token, by id or alias.
    let anonymous = server.client().get(&summary_path(&alias)).await.expect(200);
    assert_eq!(anonymous["room_id"], public.as_str(), "{anonymous}");
    assert_eq!(anonymous["name"], "Open");
    assert_eq!(anonymous["topic"], "All welcome");
    assert_eq!(anonymous["join_rule"].as_str().unwrap_or("public"), "public");
    assert_eq!(anonymous["num_joined_members"], 1);
    assert!(anonymous["room_version"].is_string());
    assert!(anonymous.get("membership").is_none(), "no membership for an anonymous caller");
    let by_member = alice.get(&summary_path(&public)).await.expect(200);
    assert_eq!(by_member["membership"], "join");

    // A private room: its members and invitees only.
    let private = alice.create_room(&json!({"preset": "private_chat", "name": "Closed"})).await;
    server.client().get(&summary_path(&private)).await.expect_error(404, "M_NOT_FOUND");
    bob.get(&summary_path(&private)).await.expect_error(404, "M_NOT_FOUND");
    alice.membership_action(&private, "invite", bob.user_id()).await.expect(200);
    let invited = bob.get(&summary_path(&private)).await.expect(200);
    assert_eq!(invited["membership"], "invite", "{invited}");
    assert_eq!(invited["name"], "Closed");

    let nowhere = format!("#nowhere:{}", server_name_of(alice.user_id()));
    alice.get(&summary_path(&nowhere)).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&summary_path("!unknown:example.org")).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&summary_path("not-a-room")).await.expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_room_only_another_server_has_is_summarised_through_via() {
    let (a, b) = (Server::start_federating().await, Server::start_federating().await);
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat", "name": "Over there"})).await;
    let path = format!("{}?via={}", summary_path(&room), enc(&a.server_name()));
    let summary = bob.get(&path).await.expect(200);
    assert_eq!(summary["room_id"], room.as_str(), "{summary}");
    assert_eq!(summary["name"], "Over there");
    assert_eq!(summary["membership"].as_str().unwrap_or("leave"), "leave", "{summary}");
    // A room no server asked knows of.
    let unknown = format!("{}?via={}", summary_path("!nothing-here"), enc(&a.server_name()));
    bob.get(&unknown).await.expect_error(404, "M_NOT_FOUND");
}
