//! Server ACLs (`m.room.server_acl`) on inbound federation, between two Myelins on
//! loopback: once A's room denies B, A refuses B's PDUs (the transaction still succeeds,
//! with an error for each), ignores B's typing and receipts for the room (spec v1.13), and
//! answers 403 `M_FORBIDDEN` to B's requests about the room (`make_join`, `state_ids`,
//! `backfill`, `timestamp_to_event`, ...). Requests are signed with B's own key, so A's
//! answers are to B itself.
//!
//! Both servers are named `127.0.0.1:PORT`, and ACLs ignore ports, so denying B denies
//! the host both share; A never judges itself, so only B is affected on A.

mod federation_support;
mod sync_support;

use federation_support::{
    CROSSING, Feed, shared_room,
    signing::{signing_key_of, x_matrix},
    two_servers,
};
use ruma::{
    CanonicalJsonObject,
    signatures::{hash_and_sign_event, reference_hash},
};
use spec_tests::*;
use sync_support::{joined, of_type, sync};

/// Who is typing in the room, as the room's ephemeral events in `body` say.
fn typers(body: &Value, room: &str) -> Vec<String> {
    of_type(&joined(body, room)["ephemeral"], "m.typing")
        .pop()
        .and_then(|event| event["content"]["user_ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_server_the_room_acl_denies_can_no_longer_take_part() {
    let (a, b) = two_servers().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let b_key = signing_key_of(&b);
    let federation = a.federation_client();
    let signed = |method: &str, uri: &str, body: Option<&Value>| {
        x_matrix(&b_key, &b.server_name(), &a.server_name(), method, uri, body)
    };
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut transactions = 0;
    let mut send_as_b = |pdus: Vec<Value>, edus: Vec<Value>| {
        transactions += 1;
        let uri = format!("/_matrix/federation/v1/send/acl-{now_ms}-{transactions}");
        let body = json!({"origin": b.server_name(), "origin_server_ts": now_ms, "pdus": pdus, "edus": edus});
        let header = signed("PUT", &uri, Some(&body));
        let federation = federation.clone();
        async move {
            let reply =
                federation.request_with("PUT", &uri, &[("authorization", &header)], Some(&body)).await;
            assert_eq!(reply.status, 200, "PUT {uri} as B: {}", reply.body);
            reply.body
        }
    };
    let typing = |typing: bool| json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob.user_id(), "typing": typing}});

    // Before the ACL, B's events, typing and reads of the room are fine (and the template
    // for an event of Bob's sent later).
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let template_id = bob.send_text(&room, "before the ACL").await;
    alice_feed.messages(&room, 1, CROSSING).await;
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&template_id));
    let reply =
        federation.request_with("GET", &uri, &[("authorization", &signed("GET", &uri, None))], None).await;
    assert_eq!(reply.status, 200, "GET {uri} as B: {}", reply.body);
    let template = reply.body["pdus"][0].clone();
    send_as_b(vec![], vec![typing(true)]).await;
    alice_feed
        .until(CROSSING, "Bob typing", |body| {
            typers(body, &room).contains(&bob.user_id().to_owned()).then_some(())
        })
        .await;
    send_as_b(vec![], vec![typing(false)]).await;
    alice_feed
        .until(CROSSING, "Bob no longer typing", |body| typers(body, &room).is_empty().then_some(()))
        .await;
    let state_ids = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(&room), enc(&template_id));
    let reply = federation
        .request_with("GET", &state_ids, &[("authorization", &signed("GET", &state_ids, None))], None)
        .await;
    assert_eq!(reply.status, 200, "GET {state_ids} as B before the ACL: {}", reply.body);

    let b_host = b.server_name().split(':').next().unwrap().to_owned();
    let acl = json!({"allow": ["*"], "deny": [b_host]});
    alice.put_state(&room, "m.room.server_acl", "", &acl).await.expect(200);
    let marker = alice.send_text(&room, "after the ACL").await;

    // An event of Bob's, properly signed by B: refused for the ACL alone.
    let rules = ruma::RoomVersionId::V12.rules().expect("v12 rules");
    let pdu = json!({
        "room_id": room,
        "sender": bob.user_id(),
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "denied by the ACL"},
        "prev_events": [template_id],
        "auth_events": template["auth_events"],
        "depth": template["depth"].as_u64().expect("depth") + 1,
        "origin_server_ts": now_ms,
    });
    let mut object: CanonicalJsonObject = serde_json::from_value(pdu).expect("canonical JSON");
    hash_and_sign_event(&b.server_name(), &b_key, &mut object, &rules.redaction).expect("sign");
    let event_id = format!("${}", reference_hash(&object, &rules).expect("hash"));
    let receipt = json!({"edu_type": "m.receipt", "content": {room.clone(): {"m.read": {bob.user_id(): {
        "event_ids": [marker], "data": {"ts": now_ms},
    }}}}});
    let reply = send_as_b(vec![serde_json::to_value(&object).unwrap()], vec![typing(true), receipt]).await;
    let error = reply["pdus"][&event_id]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error for {event_id}: {reply}"));
    assert!(error.contains("ACL"), "{reply}");

    // The EDUs were applied (or not) before the answer: nothing of them shows.
    let initial = sync(&alice, None, 0, None).await;
    assert!(
        typers(&initial, &room).is_empty(),
        "B's typing was ignored: {}",
        joined(&initial, &room)["ephemeral"]
    );
    let receipts = of_type(&joined(&initial, &room)["ephemeral"], "m.receipt");
    assert!(
        receipts.iter().all(|r| r["content"][&marker]["m.read"][bob.user_id()].is_null()),
        "B's receipt was ignored: {receipts:?}"
    );
    let history = alice.messages(&room, "dir=b&limit=50").await.expect(200).to_string();
    assert!(!history.contains("denied by the ACL"), "{history}");

    // Every request about the room is refused.
    let carol = format!("@carol:{}", b.server_name());
    let refused = [
        ("GET", format!("/_matrix/federation/v1/make_join/{}/{}?ver=12", enc(&room), enc(&carol))),
        ("GET", format!("/_matrix/federation/v1/make_leave/{}/{}", enc(&room), enc(bob.user_id()))),
        ("GET", state_ids),
        ("GET", format!("/_matrix/federation/v1/state/{}?event_id={}", enc(&room), enc(&template_id))),
        ("GET", format!("/_matrix/federation/v1/backfill/{}?v={}&limit=10", enc(&room), enc(&template_id))),
        ("GET", format!("/_matrix/federation/v1/event_auth/{}/{}", enc(&room), enc(&template_id))),
        ("GET", format!("/_matrix/federation/v1/event/{}", enc(&template_id))),
        ("GET", format!("/_matrix/federation/v1/timestamp_to_event/{}?ts={now_ms}&dir=b", enc(&room))),
    ];
    for (method, uri) in refused {
        let reply = federation
            .request_with(method, &uri, &[("authorization", &signed(method, &uri, None))], None)
            .await;
        assert_eq!((reply.status, reply.errcode()), (403, "M_FORBIDDEN"), "{method} {uri}: {}", reply.body);
    }
    let missing = format!("/_matrix/federation/v1/get_missing_events/{}", enc(&room));
    let body = json!({"earliest_events": [], "latest_events": [marker], "limit": 10});
    let header = signed("POST", &missing, Some(&body));
    let reply = federation.request_with("POST", &missing, &[("authorization", &header)], Some(&body)).await;
    assert_eq!((reply.status, reply.errcode()), (403, "M_FORBIDDEN"), "POST {missing}: {}", reply.body);
    for path in ["send_join", "send_leave"] {
        let uri = format!("/_matrix/federation/v2/{path}/{}/{}", enc(&room), enc(&event_id));
        let body = serde_json::to_value(&object).unwrap();
        let header = signed("PUT", &uri, Some(&body));
        let reply = federation.request_with("PUT", &uri, &[("authorization", &header)], Some(&body)).await;
        assert_eq!((reply.status, reply.errcode()), (403, "M_FORBIDDEN"), "PUT {uri}: {}", reply.body);
    }
}
