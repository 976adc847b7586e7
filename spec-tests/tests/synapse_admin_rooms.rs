//! Synapse-compatible admin API: rooms (list with search, filters, order and paging;
//! details, members, state, make_room_admin) and event reports (list, show, delete).

use spec_tests::{
    admin_api::*,
    rooms::{PASSWORD, room_path},
    *,
};

fn rooms(rest: &str) -> String {
    admin_path(&format!("v1/rooms{rest}"))
}

fn room(room_id: &str, rest: &str) -> String {
    rooms(&format!("/{}{rest}", enc(room_id)))
}

fn reports(rest: &str) -> String {
    admin_path(&format!("v1/event_reports{rest}"))
}

fn ids(body: &Value, list: &str, field: &str) -> Vec<String> {
    body[list].as_array().unwrap().iter().map(|r| r[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn room_and_report_endpoints_are_for_admins_only() {
    let server = Server::start().await;
    admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    for path in [
        rooms(""),
        room(&room_id, ""),
        room(&room_id, "/members"),
        room(&room_id, "/state"),
        reports(""),
        reports("/1"),
    ] {
        assert_admin_only(&server, &alice, "GET", &path, None).await;
    }
    assert_admin_only(&server, &alice, "DELETE", &reports("/1"), None).await;
    assert_admin_only(&server, &alice, "POST", &room(&room_id, "/make_room_admin"), Some(&json!({}))).await;
    let levels = alice.get_state(&room_id, "m.room.power_levels", "").await.expect(200);
    assert!(levels["users"].get("@alice:localhost").is_none(), "nothing changed: {levels}");
}

#[tokio::test]
async fn make_room_admin_through_the_most_powerful_local_member() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    // A private room: the admin is invited, and may then act as a room admin.
    let private = alice.create_room(&json!({"room_alias_name": "secret"})).await;
    root.post(&room(&private, "/make_room_admin"), &json!({})).await.expect(200);
    let levels = alice.get_state(&private, "m.room.power_levels", "").await.expect(200);
    assert_eq!(levels["users"]["@root:localhost"], 100, "{levels}");
    let member = alice.get_state(&private, "m.room.member", "@root:localhost").await.expect(200);
    assert_eq!(member["membership"], "invite");
    root.join_room(&private).await.expect(200);
    root.put_state(&private, "m.room.name", "", &json!({"name": "taken over"})).await.expect(200);

    // Someone else, named by alias, in a public room: promoted, not invited.
    let public = alice.create_room(&json!({"preset": "public_chat"})).await;
    root.post(&room(&public, "/make_room_admin"), &json!({"user_id": "@bob:localhost"})).await.expect(200);
    assert_eq!(
        alice.get_state(&public, "m.room.power_levels", "").await.expect(200)["users"]["@bob:localhost"],
        100
    );
    alice.get_state(&public, "m.room.member", "@bob:localhost").await.expect_error(404, "M_NOT_FOUND");
    let by_alias = rooms(&format!("/{}/make_room_admin", enc("#secret:localhost")));
    root.post(&by_alias, &json!({"user_id": "@bob:localhost"})).await.expect(200);
    let levels = alice.get_state(&private, "m.room.power_levels", "").await.expect(200);
    assert_eq!(levels["users"]["@bob:localhost"], 100, "{levels}");
    let member = alice.get_state(&private, "m.room.member", "@bob:localhost").await.expect(200);
    assert_eq!(member["membership"], "invite", "a private room: invited");

    // Nobody here left to act for the admin.
    let empty = bob.create_room(&json!({})).await;
    bob.post(&room_path(&empty, "leave"), &json!({})).await.expect(200);
    root.post(&room(&empty, "/make_room_admin"), &json!({})).await.expect_error(400, "M_INVALID_PARAM");

    root.post(&room("!unknown:localhost", "/make_room_admin"), &json!({}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&room("not-a-room", "/make_room_admin"), &json!({})).await.expect_error(400, "M_INVALID_PARAM");
    root.post(&room(&public, "/make_room_admin"), &json!({"user_id": "@nobody:localhost"}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&room(&public, "/make_room_admin"), &json!({"user_id": "@x:elsewhere.example"}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    root.request_raw("POST", &room(&public, "/make_room_admin"), "{").await.expect_error(400, "M_NOT_JSON");
}

#[tokio::test]
async fn list_search_order_and_page_rooms() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let zoo = alice
        .create_room(&json!({"name": "Zoo", "preset": "public_chat", "visibility": "public", "room_alias_name": "animals"}))
        .await;
    bob.join_room(&zoo).await.expect(200);
    let attic = alice.create_room(&json!({"name": "Attic", "creation_content": {"m.federate": false}})).await;
    let middle = bob
        .create_room(&json!({"name": "Middle", "initial_state": [
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}))
        .await;

    let all = root.get(&rooms("")).await.expect(200);
    assert_eq!(ids(&all, "rooms", "room_id"), [attic.clone(), middle.clone(), zoo.clone()], "by name: {all}");
    assert_eq!((all["total_rooms"].clone(), all["offset"].clone()), (json!(3), json!(0)));
    assert!(all.get("next_batch").is_none() && all.get("prev_batch").is_none(), "{all}");
    let zoo_entry = &all["rooms"][2];
    for (field, value) in [
        ("name", json!("Zoo")),
        ("canonical_alias", json!("#animals:localhost")),
        ("joined_members", json!(2)),
        ("joined_local_members", json!(2)),
        ("version", json!("12")),
        ("creator", json!("@alice:localhost")),
        ("encryption", Value::Null),
        ("federatable", json!(true)),
        ("public", json!(true)),
        ("join_rules", json!("public")),
        ("history_visibility", json!("shared")),
        ("room_type", Value::Null),
    ] {
        assert_eq!(zoo_entry[field], value, "{field}: {zoo_entry}");
    }
    assert!(zoo_entry["state_events"].as_u64().unwrap() >= 6, "{zoo_entry}");
    assert_eq!(all["rooms"][0]["federatable"], false);
    assert_eq!(all["rooms"][1]["encryption"], "m.megolm.v1.aes-sha2");

    let page = root.get(&rooms("?limit=2&from=1")).await.expect(200);
    assert_eq!(ids(&page, "rooms", "room_id"), [middle.clone(), zoo.clone()]);
    assert_eq!((page["offset"].clone(), page["prev_batch"].clone()), (json!(1), json!(0)));
    let first = root.get(&rooms("?limit=2")).await.expect(200);
    assert_eq!(first["next_batch"], 2);

    assert_eq!(
        ids(&root.get(&rooms("?order_by=joined_members")).await.expect(200), "rooms", "room_id")[0],
        zoo
    );
    assert_eq!(ids(&root.get(&rooms("?dir=b")).await.expect(200), "rooms", "room_id")[0], zoo);
    assert_eq!(
        ids(&root.get(&rooms("?search_term=atti")).await.expect(200), "rooms", "room_id"),
        [attic.as_str()]
    );
    assert_eq!(
        ids(&root.get(&rooms("?search_term=ANIMAL")).await.expect(200), "rooms", "room_id"),
        [zoo.as_str()]
    );
    assert_eq!(
        ids(
            &root.get(&rooms(&format!("?search_term={}", enc(&middle)))).await.expect(200),
            "rooms",
            "room_id"
        ),
        [middle.as_str()]
    );
    assert_eq!(
        ids(&root.get(&rooms("?public_rooms=true")).await.expect(200), "rooms", "room_id"),
        [zoo.as_str()]
    );
    assert_eq!(root.get(&rooms("?public_rooms=false")).await.expect(200)["total_rooms"], 2);

    // Everyone left: the room is empty.
    alice.post(&room_path(&attic, "leave"), &json!({})).await.expect(200);
    assert_eq!(ids(&root.get(&rooms("?empty_rooms=true")).await.expect(200), "rooms", "room_id"), [attic]);

    for bad in ["?order_by=colour", "?dir=up", "?from=-3", "?limit=x", "?public_rooms=perhaps"] {
        root.get(&rooms(bad)).await.expect_error(400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn room_details_members_and_state() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "Den", "topic": "cosy", "preset": "public_chat"})).await;
    bob.join_room(&room_id).await.expect(200);

    let details = root.get(&room(&room_id, "")).await.expect(200);
    for (field, value) in [
        ("room_id", json!(room_id)),
        ("name", json!("Den")),
        ("topic", json!("cosy")),
        ("joined_members", json!(2)),
        ("tombstoned", json!(false)),
        ("replacement_room", Value::Null),
        ("forgotten", json!(false)),
    ] {
        assert_eq!(details[field], value, "{field}: {details}");
    }
    assert!(details.as_object().unwrap().contains_key("avatar"), "{details}");

    let members = root.get(&room(&room_id, "/members")).await.expect(200);
    let mut names: Vec<&str> =
        members["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    names.sort();
    assert_eq!((names, members["total"].clone()), (vec!["@alice:localhost", "@bob:localhost"], json!(2)));

    // The admin is not in the room, and sees its state anyway.
    let state = root.get(&room(&room_id, "/state")).await.expect(200);
    let kinds: Vec<&str> =
        state["state"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in ["m.room.create", "m.room.power_levels", "m.room.name", "m.room.topic", "m.room.member"] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    let only_members = root.get(&room(&room_id, "/state?type=m.room.member")).await.expect(200);
    assert_eq!(only_members["state"].as_array().unwrap().len(), 2, "{only_members}");
    assert!(only_members["state"][0]["event_id"].is_string());

    for rest in ["", "/members", "/state"] {
        root.get(&room("!unknown:localhost", rest)).await.expect_error(404, "M_NOT_FOUND");
        root.get(&room("not-a-room", rest)).await.expect_error(400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn event_reports_are_listed_shown_and_deleted() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "Den", "preset": "public_chat"})).await;
    bob.join_room(&room_id).await.expect(200);
    let rude = bob.send_text(&room_id, "something rude").await;
    let spam = bob.send_text(&room_id, "spam").await;
    for (event, reason) in [(&rude, "rude"), (&spam, "spam")] {
        let path = room_path(&room_id, &format!("report/{}", enc(event)));
        alice.post(&path, &json!({"reason": reason})).await.expect(200);
    }
    // Reports of rooms are not event reports.
    alice.post(&room_path(&room_id, "report"), &json!({"reason": "whole room"})).await.expect(200);

    let listed = root.get(&reports("")).await.expect(200);
    assert_eq!(
        ids(&listed, "event_reports", "event_id"),
        [spam.clone(), rude.clone()],
        "newest first: {listed}"
    );
    assert_eq!(listed["total"], 2);
    let first = &listed["event_reports"][0];
    for (field, value) in [
        ("room_id", json!(room_id)),
        ("name", json!("Den")),
        ("user_id", json!("@alice:localhost")),
        ("sender", json!("@bob:localhost")),
        ("reason", json!("spam")),
        ("canonical_alias", Value::Null),
    ] {
        assert_eq!(first[field], value, "{field}: {first}");
    }
    assert!(first["received_ts"].as_u64().is_some() && first["id"].as_u64().is_some(), "{first}");

    let oldest = root.get(&reports("?dir=f&limit=1")).await.expect(200);
    assert_eq!(ids(&oldest, "event_reports", "event_id"), [rude.as_str()]);
    assert_eq!(oldest["next_token"], 1);
    let by_sender = root.get(&reports("?event_sender_user_id=@alice:localhost")).await.expect(200);
    assert_eq!(by_sender["total"], 0);
    assert_eq!(root.get(&reports("?user_id=@alice:localhost")).await.expect(200)["total"], 2);
    assert_eq!(root.get(&reports(&format!("?room_id={}", enc(&room_id)))).await.expect(200)["total"], 2);

    let id = first["id"].as_u64().unwrap();
    let shown = root.get(&reports(&format!("/{id}"))).await.expect(200);
    assert_eq!(shown["event_json"]["content"]["body"], "spam", "{shown}");
    assert_eq!(shown["event_json"]["event_id"].as_str().map(|_| ()), None, "the PDU as stored: {shown}");
    assert!(shown["event_json"]["signatures"].is_object(), "{shown}");

    root.delete(&reports(&format!("/{id}")), None).await.expect(200);
    root.get(&reports(&format!("/{id}"))).await.expect_error(404, "M_NOT_FOUND");
    root.delete(&reports(&format!("/{id}")), None).await.expect_error(404, "M_NOT_FOUND");
    assert_eq!(root.get(&reports("")).await.expect(200)["total"], 1);
    root.get(&reports("/twelve")).await.expect_error(400, "M_INVALID_PARAM");
    root.get(&reports("?dir=sideways")).await.expect_error(400, "M_INVALID_PARAM");
}
