//! Every event is a real PDU: its content hash and our signature verify with ruma against
//! the key published at `GET /_matrix/key/v2/server`, its id is its reference hash, and
//! concurrent senders in one room produce each event once in one connected DAG. PDUs are
//! read through the operator's `myelin room event` command.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{
    CanonicalJsonObject, RoomVersionId,
    serde::Base64,
    signatures::{PublicKeyMap, Verified, reference_hash, verify_event, verify_json},
};
use spec_tests::{rooms::*, *};

/// The published key list, checked for shape, and its keys as ruma wants them.
async fn published_keys(server: &Server, server_name: &str) -> (Value, PublicKeyMap) {
    let keys = server.client().get("/_matrix/key/v2/server").await.expect(200);
    assert_eq!(keys["server_name"], server_name, "{keys}");
    let verify_keys = keys["verify_keys"].as_object().expect("verify_keys");
    assert!(!verify_keys.is_empty(), "{keys}");
    let set: BTreeMap<String, Base64> = verify_keys
        .iter()
        .map(|(id, key)| {
            (id.clone(), Base64::parse(key["key"].as_str().expect("key")).expect("unpadded base64"))
        })
        .collect();
    (keys, BTreeMap::from([(server_name.to_owned(), set)]))
}

fn canonical(value: &Value) -> CanonicalJsonObject {
    serde_json::from_value(value.clone()).expect("canonical JSON object")
}

/// `myelin room event ID --json` against the running server.
fn stored_pdu(server: &Server, event_id: &str) -> Value {
    let output = server.cli(&["--json", "room", "event", event_id], None);
    assert!(output.status.success(), "room event {event_id}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON reply")
}

/// Every event id in the room, oldest first, as a member sees the timeline.
async fn all_event_ids(client: &Client, room: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(from) => format!("dir=f&limit=1000&from={}", enc(from)),
            None => "dir=f&limit=1000".to_owned(),
        };
        let page = client.messages(room, &query).await.expect(200);
        let chunk = page["chunk"].as_array().unwrap();
        ids.extend(chunk.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()));
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return ids,
        }
    }
}

/// Checks one stored PDU: signature, content hash (unless redacted), event id, room.
fn verify_pdu(reply: &Value, event_id: &str, room: &str, keys: &PublicKeyMap) -> Value {
    assert_eq!(reply["event_id"], event_id);
    assert_eq!(reply["room_id"], room);
    let version: RoomVersionId = reply["room_version"].as_str().expect("room_version").try_into().unwrap();
    let rules = version.rules().expect("a known room version");
    let pdu = &reply["pdu"];
    let object = canonical(pdu);
    let verified = verify_event(keys, &object, &rules).unwrap_or_else(|e| panic!("{event_id}: {e}: {pdu}"));
    let expected = if reply["redacted_because"].is_string() { Verified::Signatures } else { Verified::All };
    assert_eq!(verified, expected, "{event_id}: {reply}");
    let hash = reference_hash(&object, &rules).expect("reference hash");
    assert_eq!(event_id, format!("${hash}"), "the event id is the reference hash");
    assert!(pdu.get("event_id").is_none(), "room versions 3+ carry no event_id: {pdu}");
    if pdu["type"] == "m.room.create" && version == RoomVersionId::V12 {
        assert!(pdu.get("room_id").is_none(), "{pdu}");
        assert_eq!(room[1..], event_id[1..], "a v12 room id is its create event's hash");
    } else {
        assert_eq!(pdu["room_id"], room, "{pdu}");
    }
    pdu.clone()
}

#[tokio::test]
async fn the_server_publishes_its_signing_key_signed_by_itself() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let server_name = server_name_of(alice.user_id()).to_owned();
    let (keys, key_map) = published_keys(&server, &server_name).await;

    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let valid_until = keys["valid_until_ts"].as_u64().expect("valid_until_ts");
    assert!(valid_until > now_ms + 3_600_000, "valid for at least an hour: {keys}");
    verify_json(&key_map, &canonical(&keys)).expect("self-signed");
    let mut tampered = keys.clone();
    tampered["valid_until_ts"] = json!(valid_until + 1);
    assert!(verify_json(&key_map, &canonical(&tampered)).is_err(), "the signature covers the content");

    // The same key the operator sees.
    let output = server.cli(&["--json", "keys", "show"], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let key_id = shown["key_id"].as_str().unwrap();
    assert_eq!(keys["verify_keys"][key_id]["key"], shown["public_key"], "{keys} vs {shown}");
}

#[tokio::test]
async fn every_stored_event_verifies_against_the_published_key_in_versions_10_to_12() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let server_name = server_name_of(alice.user_id()).to_owned();
    let (_, keys) = published_keys(&server, &server_name).await;

    for version in ["10", "11", "12"] {
        let room = alice
            .create_room(&json!({
                "room_version": version,
                "preset": "public_chat",
                "name": "Signed",
                "topic": "every byte",
                "room_alias_name": format!("signed{version}"),
                "invite": [bob.user_id()],
            }))
            .await;
        bob.join_room(&room).await.expect(200);
        let hello = alice.send_text(&room, "hello").await;
        bob.send_event(
            &room,
            "m.reaction",
            &json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "👋"}}),
        )
        .await
        .expect(200);
        alice
            .put_state(
                &room,
                "org.example.state",
                "key",
                &json!({"nested": {"list": [1, 2, 3], "unicode": "é✓"}}),
            )
            .await
            .expect(200);
        let doomed = bob.send_text(&room, "to be redacted").await;
        bob.put(
            &room_path(&room, &format!("redact/{}/{}", enc(&doomed), txn_id())),
            &json!({"reason": "oops"}),
        )
        .await
        .expect(200);

        let ids = all_event_ids(&alice, &room).await;
        assert!(ids.len() >= 12, "v{version}: {ids:?}");
        let mut types = HashSet::new();
        for id in &ids {
            let reply = stored_pdu(&server, id);
            let pdu = verify_pdu(&reply, id, &room, &keys);
            types.insert(pdu["type"].as_str().unwrap().to_owned());
            if *id == doomed {
                assert!(reply["redacted_because"].is_string(), "{reply}");
                assert_eq!(pdu["content"], json!({}), "stored redacted: {pdu}");
            }
        }
        for kind in [
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.message",
            "m.reaction",
            "m.room.redaction",
        ] {
            assert!(types.contains(kind), "v{version}: {kind} checked");
        }
    }
}

#[tokio::test]
async fn an_unknown_event_id_is_reported_by_the_cli() {
    let server = Server::start().await;
    let output = server.cli(&["room", "event", "$nosucheventnosucheventnosuchevent123456"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no event"), "{stderr}");
    let output = server.cli(&["room", "event", "not-an-event-id"], None);
    assert!(!output.status.success());
}

#[tokio::test]
async fn fifty_concurrent_senders_store_each_event_once_in_one_connected_dag() {
    const USERS: usize = 10;
    const TASKS_PER_USER: usize = 5;
    const MESSAGES_PER_TASK: usize = 2;
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let server_name = server_name_of(alice.user_id()).to_owned();
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        let user = server.client().register(&format!("sender{i}"), PASSWORD).await;
        user.join_room(&room).await.expect(200);
        users.push(user);
    }

    let mut tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for t in 0..TASKS_PER_USER {
            let user = user.clone();
            let room = room.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for m in 0..MESSAGES_PER_TASK {
                    let body = format!("u{u}-t{t}-m{m}");
                    let event_id = user.send_text(&room, &body).await;
                    sent.push((event_id, body));
                }
                sent
            }));
        }
    }
    let mut sent: HashMap<String, String> = HashMap::new();
    for task in tasks {
        for (event_id, body) in task.await.unwrap() {
            assert!(sent.insert(event_id, body).is_none(), "two sends got one event id");
        }
    }
    assert_eq!(sent.len(), USERS * TASKS_PER_USER * MESSAGES_PER_TASK);

    // Each message is in the timeline exactly once.
    let ids = all_event_ids(&alice, &room).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no event is listed twice");
    let listed: HashSet<&String> = ids.iter().filter(|id| sent.contains_key(*id)).collect();
    assert_eq!(listed.len(), sent.len(), "every acknowledged message is stored");

    // The PDUs form one DAG rooted at the create event, with a single head.
    let (_, keys) = published_keys(&server, &server_name).await;
    let mut pdus: HashMap<String, Value> = HashMap::new();
    for id in &ids {
        let reply = stored_pdu(&server, id);
        pdus.insert(id.clone(), verify_pdu(&reply, id, &room, &keys));
    }
    for (id, body) in &sent {
        assert_eq!(pdus[id]["content"]["body"], *body);
    }
    let prevs = |id: &str| -> Vec<String> {
        pdus[id]["prev_events"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect()
    };
    let roots: Vec<&String> = pdus.keys().filter(|id| prevs(id).is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root");
    assert_eq!(pdus[roots[0]]["type"], "m.room.create");
    let mut referenced = HashSet::new();
    for id in pdus.keys() {
        let depth = pdus[id]["depth"].as_u64().unwrap();
        for prev in prevs(id) {
            let parent = pdus.get(&prev).unwrap_or_else(|| panic!("{id} points at unknown {prev}"));
            assert!(parent["depth"].as_u64().unwrap() < depth, "depth grows along prev_events");
            referenced.insert(prev);
        }
    }
    let heads: Vec<&String> = pdus.keys().filter(|id| !referenced.contains(*id)).collect();
    assert_eq!(heads, [ids.last().unwrap()], "one head: the newest event");
    let mut reached = HashSet::new();
    let mut stack = vec![heads[0].clone()];
    while let Some(id) = stack.pop() {
        if reached.insert(id.clone()) {
            stack.extend(prevs(&id));
        }
    }
    assert_eq!(reached.len(), pdus.len(), "every event is connected to the head");
}
