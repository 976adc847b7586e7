//! Redaction: a redacted event loses its content wherever it is served and says what
//! redacted it; redacting others' events takes power, through `/redact` and through
//! `/send/m.room.redaction` alike.

use spec_tests::{rooms::*, *};

fn event_path(room: &str, event_id: &str) -> String {
    room_path(room, &format!("event/{}", enc(event_id)))
}

async fn redact(client: &Client, room: &str, event_id: &str, body: &Value) -> Resp {
    client.put(&room_path(room, &format!("redact/{}/{}", enc(event_id), txn_id())), body).await
}

/// Asserts that `event` is the redacted form of `event_id`, redacted by `redaction_id`.
#[track_caller]
fn assert_redacted(event: &Value, event_id: &str, redaction_id: &str) {
    assert_eq!(event["event_id"], event_id);
    assert_eq!(event["content"], json!({}), "the content is gone: {event}");
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], redaction_id, "{event}");
    assert_eq!(because["type"], "m.room.redaction", "{event}");
    assert_eq!(because["content"]["reason"], "oops", "{event}");
}

#[tokio::test]
async fn a_redacted_event_loses_its_content_everywhere_it_is_served() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    for version in ["10", "11", "12"] {
        let room = alice.create_room(&json!({"preset": "public_chat", "room_version": version})).await;
        bob.join_room(&room).await.expect(200);
        let secret = alice
            .send_event(
                &room,
                "m.room.message",
                &json!({"msgtype": "m.text", "body": "secret", "extra": {"a": 1}}),
            )
            .await
            .expect(200)["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let later = alice.send_text(&room, "later").await;
        let redaction = redact(&alice, &room, &secret, &json!({"reason": "oops"})).await.expect(200);
        let redaction_id = redaction["event_id"].as_str().expect("event_id").to_owned();

        for viewer in [&alice, &bob] {
            let event = viewer.get(&event_path(&room, &secret)).await.expect(200);
            assert_redacted(&event, &secret, &redaction_id);

            let history = viewer.messages(&room, "dir=b&limit=10").await.expect(200);
            let chunk = history["chunk"].as_array().unwrap();
            let served = chunk.iter().find(|e| e["event_id"] == secret).expect("still in the timeline");
            assert_redacted(served, &secret, &redaction_id);
            let served_redaction =
                chunk.iter().find(|e| e["event_id"] == redaction_id).expect("redaction listed");
            let target = if version == "10" {
                &served_redaction["redacts"]
            } else {
                &served_redaction["content"]["redacts"]
            };
            assert_eq!(target, &json!(secret), "v{version}: {served_redaction}");

            let context =
                viewer.get(&room_path(&room, &format!("context/{}", enc(&secret)))).await.expect(200);
            assert_redacted(&context["event"], &secret, &redaction_id);
            let context =
                viewer.get(&room_path(&room, &format!("context/{}", enc(&later)))).await.expect(200);
            let before = context["events_before"].as_array().unwrap();
            let served = before.iter().find(|e| e["event_id"] == secret).expect("in the context");
            assert_redacted(served, &secret, &redaction_id);
        }
        let untouched = alice.get(&event_path(&room, &later)).await.expect(200);
        assert_eq!(untouched["content"]["body"], "later");
        assert!(untouched["unsigned"].get("redacted_because").is_none());
    }
}

#[tokio::test]
async fn a_member_without_power_cannot_redact_others_events_by_any_endpoint() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    for version in ["10", "12"] {
        let room = alice.create_room(&json!({"preset": "public_chat", "room_version": version})).await;
        bob.join_room(&room).await.expect(200);
        carol.join_room(&room).await.expect(200);
        let carols = carol.send_text(&room, "carol's words").await;

        redact(&bob, &room, &carols, &json!({})).await.expect_error(403, "M_FORBIDDEN");
        bob.send_event(&room, "m.room.redaction", &json!({"redacts": carols}))
            .await
            .expect_error(403, "M_FORBIDDEN");
        let event = alice.get(&event_path(&room, &carols)).await.expect(200);
        assert_eq!(event["content"]["body"], "carol's words", "v{version}: {event}");
        assert!(event["unsigned"].get("redacted_because").is_none(), "v{version}: {event}");

        // Everyone may redact their own events; a moderator may redact anyone's.
        let bobs = bob.send_text(&room, "regrettable").await;
        redact(&bob, &room, &bobs, &json!({})).await.expect(200);
        assert_eq!(alice.get(&event_path(&room, &bobs)).await.expect(200)["content"], json!({}));
        alice.send_event(&room, "m.room.redaction", &json!({"redacts": carols})).await.expect(200);
        assert_eq!(alice.get(&event_path(&room, &carols)).await.expect(200)["content"], json!({}));
    }
}

#[tokio::test]
async fn redacting_through_send_works_in_every_room_version() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    for version in ["10", "11", "12"] {
        let room = alice.create_room(&json!({"room_version": version})).await;
        let target = alice.send_text(&room, "going away").await;
        let redaction = alice
            .send_event(&room, "m.room.redaction", &json!({"redacts": target, "reason": "oops"}))
            .await
            .expect(200)["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let event = alice.get(&event_path(&room, &target)).await.expect(200);
        assert_redacted(&event, &target, &redaction);
        let served = alice.get(&event_path(&room, &redaction)).await.expect(200);
        // Before version 11 `redacts` moves to the top level; from 11 it stays in the content.
        if version == "10" {
            assert_eq!(served["redacts"], target, "{served}");
        } else {
            assert_eq!(served["content"]["redacts"], target, "{served}");
        }
    }
}

#[tokio::test]
async fn redacting_is_idempotent_per_transaction_and_unknown_events_are_not_found() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;
    let target = alice.send_text(&room, "twice").await;

    let path = room_path(&room, &format!("redact/{}/fixed-txn", enc(&target)));
    let first = alice.put(&path, &json!({"reason": "oops"})).await.expect(200);
    let again = alice.put(&path, &json!({"reason": "oops"})).await.expect(200);
    assert_eq!(first["event_id"], again["event_id"]);
    let history = alice.messages(&room, "dir=b&limit=50").await.expect(200);
    let redactions =
        history["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.redaction").count();
    assert_eq!(redactions, 1);

    let unknown = "$nosucheventnosucheventnosuchevent123456";
    redact(&alice, &room, unknown, &json!({})).await.expect_error(404, "M_NOT_FOUND");
}
