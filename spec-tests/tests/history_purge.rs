//! Purging a room's history (issue #25): the Synapse admin API
//! (`POST /_synapse/admin/v1/purge_history/{room_id}` and its status), `myelin room
//! purge-history`, and retention policies (`[retention]` with `m.room.retention`). What is
//! before the point goes from every read (the event, `/messages`, `/search`, relations);
//! state, the newest event and, unless asked, this server's users' events stay; the store
//! verifies clean afterwards.

use std::time::{Duration, Instant};

use spec_tests::{
    admin_api::*,
    rooms::{PASSWORD, room_path},
    *,
};

fn purge_path(room_id: &str) -> String {
    admin_path(&format!("v1/purge_history/{}", enc(room_id)))
}

/// Waits for a purge to finish; returns its status.
async fn finished(root: &Client, purge_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = root.get(&admin_path(&format!("v1/purge_history_status/{purge_id}"))).await.expect(200);
        if status["status"] != "active" {
            return status;
        }
        assert!(Instant::now() < deadline, "purge still running: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn event_status(client: &Client, room_id: &str, event_id: &str) -> u16 {
    client.get(&room_path(room_id, &format!("event/{}", enc(event_id)))).await.status
}

/// Every event id `/messages` lists, newest first.
async fn listed(client: &Client, room_id: &str) -> Vec<String> {
    let page = client.messages(room_id, "dir=b&limit=1000").await.expect(200);
    page["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

/// Sends `n` messages (each with a word to search for) and returns their ids.
async fn send_messages(client: &Client, room_id: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(client.send_text(room_id, &format!("{prefix} number{i} wombat")).await);
    }
    ids
}

fn verify_clean(server: &Server) {
    let verified = cli_ok(&server.cli(&["db", "verify"], None));
    assert!(verified.contains("verifies clean"), "{verified}");
}

#[tokio::test]
async fn an_admin_purge_removes_history_before_the_point_and_keeps_the_state() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"name": "Old times"})).await;
    let old = send_messages(&alice, &room_id, "old", 6).await;
    // A reaction to an old message and an edit of it: relations of purged events go too.
    let reaction = alice
        .send_event(
            &room_id,
            "m.reaction",
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": old[1], "key": "👍"}}),
        )
        .await
        .expect(200)["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let point = alice.send_text(&room_id, "the point").await;
    let newer = send_messages(&alice, &room_id, "new", 2).await;

    let body = json!({"purge_up_to_event_id": point, "delete_local_events": true});
    let started = root.post(&purge_path(&room_id), &body).await.expect(200);
    let status = finished(&root, started["purge_id"].as_str().unwrap()).await;
    assert_eq!(status["status"], "complete", "{status}");

    for id in old.iter().chain([&reaction]) {
        assert_eq!(event_status(&alice, &room_id, id).await, 404, "{id} was not purged");
    }
    for id in [&point].into_iter().chain(&newer) {
        assert_eq!(event_status(&alice, &room_id, id).await, 200, "{id} was purged");
    }
    let listed = listed(&alice, &room_id).await;
    assert!(old.iter().all(|id| !listed.contains(id)), "/messages still lists purged events");
    assert!(listed.contains(&point) && newer.iter().all(|id| listed.contains(id)));
    // The state stays, in /messages too (the create event is the room's first).
    let name = alice.get_state(&room_id, "m.room.name", "").await.expect(200);
    assert_eq!(name["name"], "Old times");
    let create = alice.get(&room_path(&room_id, "state")).await.expect(200);
    let create_id =
        create.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(listed.contains(&create_id));
    // Search finds only what is left.
    let found = alice
        .post(
            "/_matrix/client/v3/search",
            &json!({"search_categories": {"room_events": {"search_term": "wombat"}}}),
        )
        .await
        .expect(200);
    let results = found["search_categories"]["room_events"]["results"].as_array().unwrap().clone();
    let ids: Vec<&str> = results.iter().map(|r| r["result"]["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), newer.len(), "search still finds purged events: {ids:?}");
    // The room goes on.
    alice.send_text(&room_id, "still here").await;
    verify_clean(&server);
}

#[tokio::test]
async fn local_events_stay_unless_asked_and_the_cli_purges_by_age() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    let old = send_messages(&alice, &room_id, "old", 3).await;
    let point = alice.send_text(&room_id, "the point").await;

    // Without delete_local_events, a purge keeps what this server's users sent.
    let started = root.post(&purge_path(&room_id), &json!({"purge_up_to_event_id": point})).await.expect(200);
    assert_eq!(finished(&root, started["purge_id"].as_str().unwrap()).await["status"], "complete");
    for id in &old {
        assert_eq!(event_status(&alice, &room_id, id).await, 200, "a local event was purged");
    }

    // By age, through the CLI: everything older than a second, the newest event excepted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newest = alice.send_text(&room_id, "newest").await;
    let out = cli_ok(
        &server.cli(&["room", "purge-history", &room_id, "--older-than", "1s", "--delete-local"], None),
    );
    assert!(out.contains("removed 4 events"), "{out}");
    for id in old.iter().chain([&point]) {
        assert_eq!(event_status(&alice, &room_id, id).await, 404, "{id} was not purged");
    }
    assert_eq!(event_status(&alice, &room_id, &newest).await, 200);
    // The newest event stays even when it is older than the point.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cli_ok(&server.cli(&["room", "purge-history", &room_id, "--older-than", "1s", "--delete-local"], None));
    assert_eq!(event_status(&alice, &room_id, &newest).await, 200, "the newest event was purged");
    verify_clean(&server);
}

#[tokio::test]
async fn purge_requests_that_cannot_be_done_are_refused() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    let other_room = alice.create_room(&json!({})).await;
    let elsewhere = alice.send_text(&other_room, "in another room").await;

    assert_admin_only(&server, &alice, "POST", &purge_path(&room_id), Some(&json!({"purge_up_to_ts": 1})))
        .await;
    root.post(&purge_path(&room_id), &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    root.post(&purge_path(&room_id), &json!({"purge_up_to_ts": "yesterday"}))
        .await
        .expect_error(400, "M_BAD_JSON");
    root.post(&purge_path("!unknown:localhost"), &json!({"purge_up_to_ts": 1}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&purge_path(&room_id), &json!({"purge_up_to_event_id": elsewhere}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&format!("{}/{}", purge_path(&room_id), enc("$nonsense:localhost")), &json!({}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.get(&admin_path("v1/purge_history_status/nope")).await.expect_error(404, "M_NOT_FOUND");
    assert_eq!(event_status(&alice, &other_room, &elsewhere).await, 200);
}

#[tokio::test]
async fn a_rooms_retention_policy_purges_what_expired() {
    let config = format!(
        "{TEST_CONFIG}\n[retention]\nenabled = true\npurge_interval = \"1s\"\nallowed_lifetime_min = \"1s\"\n"
    );
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let expiring = alice.create_room(&json!({})).await;
    alice.put_state(&expiring, "m.room.retention", "", &json!({"max_lifetime": 1000})).await.expect(200);
    let kept_room = alice.create_room(&json!({})).await;
    let old = send_messages(&alice, &expiring, "old", 3).await;
    let kept = send_messages(&alice, &kept_room, "kept", 3).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let newest = alice.send_text(&expiring, "newest").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &old {
        while event_status(&alice, &expiring, id).await != 404 {
            assert!(Instant::now() < deadline, "{id} outlived its room's retention");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The newest event and the state stay; a room without a policy (and no server default)
    // keeps everything.
    assert_eq!(event_status(&alice, &expiring, &newest).await, 200);
    alice.get_state(&expiring, "m.room.retention", "").await.expect(200);
    for id in &kept {
        assert_eq!(event_status(&alice, &kept_room, id).await, 200, "a room without a policy lost {id}");
    }
}

/// A purge goes through the room a thousand events at a time, letting sends in between;
/// one longer than that still removes everything before the point, and sends made while
/// it runs are kept.
#[tokio::test]
async fn a_purge_longer_than_one_chunk_removes_everything_before_the_point() {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({})).await;
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (alice, room_id) = (alice.clone(), room_id.clone());
        senders.push(tokio::spawn(async move {
            send_messages(&alice, &room_id, &format!("s{sender}"), 300).await
        }));
    }
    let mut old = Vec::new();
    for sender in senders {
        old.extend(sender.await.unwrap());
    }
    let point = alice.send_text(&room_id, "the point").await;
    let during = {
        let (alice, room_id) = (alice.clone(), room_id.clone());
        tokio::spawn(async move { send_messages(&alice, &room_id, "during", 20).await })
    };
    let out = cli_ok(
        &server.cli(&["room", "purge-history", &room_id, "--before-event", &point, "--delete-local"], None),
    );
    assert!(out.contains("removed 1200 events"), "{out}");
    let during = during.await.unwrap();
    let listed = listed(&alice, &room_id).await;
    assert!(old.iter().all(|id| !listed.contains(id)), "events before the point are still listed");
    assert!(during.iter().chain([&point]).all(|id| listed.contains(id)), "events after the point went");
    verify_clean(&server);
}
