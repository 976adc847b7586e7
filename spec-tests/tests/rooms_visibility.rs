//! Who may read a room, on every read endpoint: membership × endpoint × history visibility
//! (spec: "Room History Visibility" and each endpoint's 403; status codes as Synapse's).
//!
//! A joined member reads the room as it is; one who left, was kicked or banned after
//! joining reads it as it was when they left; anyone else reads only a world-readable room
//! (a peek) and is otherwise refused with 403 `M_FORBIDDEN`: the invited, the knocking,
//! and those banned or refused before they ever joined.

use spec_tests::{
    Client, Server, enc, json,
    rooms::{PASSWORD, room_path},
};

/// The history visibilities, in the order of the columns below.
const VISIBILITIES: [&str; 4] = ["world_readable", "shared", "invited", "joined"];

/// How a reader sees the room.
#[derive(Debug, Clone, Copy, PartialEq)]
enum View {
    /// As it is now (a joined member).
    Now,
    /// As it was when they left.
    AsLeft,
    /// As the world sees a world-readable room.
    Peek,
    /// Not at all.
    Refused,
}
use View::*;

/// Eve's history with the room, each acted out by its own user.
#[derive(Debug, Clone, Copy)]
enum Member {
    Never,
    Invited,
    Knocking,
    Joined,
    Left,
    Kicked,
    BannedAfterJoining,
    BannedNeverJoined,
    RejectedInvite,
    LeftAndForgot,
}

/// Each membership's view of the room, per history visibility (the columns of
/// [`VISIBILITIES`]). Only a stay in the room, remembered, opens it beyond a peek.
const MEMBERSHIPS: [(Member, [View; 4]); 10] = [
    (Member::Never, [Peek, Refused, Refused, Refused]),
    (Member::Invited, [Peek, Refused, Refused, Refused]),
    (Member::Knocking, [Peek, Refused, Refused, Refused]),
    (Member::Joined, [Now, Now, Now, Now]),
    (Member::Left, [AsLeft, AsLeft, AsLeft, AsLeft]),
    (Member::Kicked, [AsLeft, AsLeft, AsLeft, AsLeft]),
    (Member::BannedAfterJoining, [AsLeft, AsLeft, AsLeft, AsLeft]),
    (Member::BannedNeverJoined, [Peek, Refused, Refused, Refused]),
    (Member::RejectedInvite, [Peek, Refused, Refused, Refused]),
    (Member::LeftAndForgot, [Peek, Refused, Refused, Refused]),
];

/// What an endpoint answers.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Ok,
    Forbidden,
    /// 200 if the history from before the reader arrived is visible to them (it is
    /// `world_readable` or `shared`), else 404 `M_NOT_FOUND`, hiding the event.
    EarlyEvent,
}

/// The read endpoints, and what each answers each view (columns: Now, AsLeft, Peek,
/// Refused). `{before}` is the first message, sent before any of the readers arrived.
const ENDPOINTS: [(&str, [Expect; 4]); 14] = {
    use Expect::*;
    [
        ("state", [Ok, Ok, Ok, Forbidden]),
        ("state/m.room.name/", [Ok, Ok, Ok, Forbidden]),
        ("state/m.room.topic/", [Ok, Ok, Ok, Forbidden]),
        ("members", [Ok, Ok, Ok, Forbidden]),
        ("joined_members", [Ok, Forbidden, Ok, Forbidden]),
        ("aliases", [Ok, Forbidden, Ok, Forbidden]),
        ("messages?dir=b&limit=100", [Ok, Ok, Ok, Forbidden]),
        ("messages?dir=f&limit=100", [Ok, Ok, Ok, Forbidden]),
        ("event/{before}", [EarlyEvent, EarlyEvent, Ok, Forbidden]),
        ("context/{before}", [EarlyEvent, EarlyEvent, Ok, Forbidden]),
        ("relations/{before}", [EarlyEvent, EarlyEvent, Ok, Forbidden]),
        ("threads", [Ok, Ok, Ok, Forbidden]),
        ("timestamp_to_event?ts={now}&dir=b", [Ok, Ok, Ok, Forbidden]),
        ("timestamp_to_event?ts=0&dir=f", [Ok, Ok, Ok, Forbidden]),
    ]
};

/// One room with a given history visibility, and a user per membership.
struct Scenario {
    room: String,
    before: String,
}

/// Alice's knock-to-join room named "Before" with topic "Topic", a first message, then
/// each reader's history with it, then (once every departure is done) a new name and a
/// last message.
async fn scenario(alice: &Client, readers: &[(Member, Client)], visibility: &str) -> Scenario {
    let room = alice
        .create_room(&json!({
            "preset": "private_chat",
            "name": "Before",
            "topic": "Topic",
            "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}},
                {"type": "m.room.join_rules", "content": {"join_rule": "knock"}},
            ],
        }))
        .await;
    let before = alice.send_text(&room, "before").await;
    for (member, reader) in readers {
        let user = reader.user_id();
        let invite = || alice.membership_action(&room, "invite", user);
        let join = || async {
            invite().await.expect(200);
            reader.join_room(&room).await.expect(200);
            reader.send_text(&room, "hello").await;
        };
        match member {
            Member::Never => {}
            Member::Invited => {
                invite().await.expect(200);
            }
            Member::Knocking => {
                reader.knock_room(&room, &json!({})).await.expect(200);
            }
            Member::Joined => join().await,
            Member::Left => {
                join().await;
                reader.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
            }
            Member::Kicked => {
                join().await;
                alice.membership_action(&room, "kick", user).await.expect(200);
            }
            Member::BannedAfterJoining => {
                join().await;
                alice.membership_action(&room, "ban", user).await.expect(200);
            }
            Member::BannedNeverJoined => {
                alice.membership_action(&room, "ban", user).await.expect(200);
            }
            Member::RejectedInvite => {
                invite().await.expect(200);
                reader.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
            }
            Member::LeftAndForgot => {
                join().await;
                reader.post(&room_path(&room, "leave"), &json!({})).await.expect(200);
                reader.post(&room_path(&room, "forget"), &json!({})).await.expect(200);
            }
        };
    }
    alice.put_state(&room, "m.room.name", "", &json!({"name": "After"})).await.expect(200);
    alice.send_text(&room, "after").await;
    Scenario { room, before }
}

fn bodies(chunk: &serde_json::Value) -> Vec<&str> {
    chunk.as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect()
}

/// Beyond the status: a departed reader sees the room as it was, nothing after.
fn check_content(endpoint: &str, view: View, body: &serde_json::Value, why: &str) {
    let later = view != AsLeft;
    match endpoint {
        "state/m.room.name/" => {
            assert_eq!(body["name"], if later { "After" } else { "Before" }, "{why}");
        }
        "state/m.room.topic/" => assert_eq!(body["topic"], "Topic", "{why}"),
        "state" => {
            let name = body.as_array().unwrap().iter().find(|e| e["type"] == "m.room.name").unwrap();
            assert_eq!(name["content"]["name"], if later { "After" } else { "Before" }, "{why}");
        }
        e if e.starts_with("messages") => {
            assert_eq!(bodies(&body["chunk"]).contains(&"after"), later, "{why}: {body}");
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_read_endpoint_follows_membership_and_history_visibility() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let mut readers = Vec::new();
    for (i, (member, _)) in MEMBERSHIPS.iter().enumerate() {
        readers.push((*member, server.client().register(&format!("reader{i}"), PASSWORD).await));
    }
    let mut checked = 0;
    for (column, visibility) in VISIBILITIES.iter().enumerate() {
        let Scenario { room, before } = scenario(&alice, &readers, visibility).await;
        let early_history_visible = matches!(*visibility, "world_readable" | "shared");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 60_000;
        for ((member, views), (_, reader)) in MEMBERSHIPS.iter().zip(&readers) {
            let view = views[column];
            for (endpoint, expects) in ENDPOINTS {
                let expect = expects[[Now, AsLeft, Peek, Refused].iter().position(|v| *v == view).unwrap()];
                let path = endpoint.replace("{before}", &enc(&before)).replace("{now}", &now.to_string());
                let path = match path.strip_prefix("timestamp_to_event") {
                    Some(query) => {
                        format!("/_matrix/client/v1/rooms/{}/timestamp_to_event{query}", enc(&room))
                    }
                    None if path.starts_with("relations") || path == "threads" => {
                        format!("/_matrix/client/v1/rooms/{}/{path}", enc(&room))
                    }
                    None => room_path(&room, &path),
                };
                let why = format!("{member:?} ({view:?}) in a {visibility} room: GET {endpoint}");
                let reply = reader.get(&path).await;
                match expect {
                    Expect::Forbidden => reply.expect_error(403, "M_FORBIDDEN"),
                    Expect::EarlyEvent if !early_history_visible => reply.expect_error(404, "M_NOT_FOUND"),
                    Expect::Ok | Expect::EarlyEvent => {
                        assert_eq!(reply.status, 200, "{why}: {}", reply.body);
                        check_content(endpoint, view, &reply.body, &why);
                    }
                }
                checked += 1;
            }
            // Previews follow the join rules (anyone may knock here), not history: only a
            // ban hides the room.
            let summary = reader.get(&format!("/_matrix/client/v1/room_summary/{}", enc(&room))).await;
            match member {
                Member::BannedAfterJoining | Member::BannedNeverJoined => {
                    summary.expect_error(404, "M_NOT_FOUND")
                }
                _ => assert_eq!(summary.status, 200, "{member:?} in a {visibility} room: {}", summary.body),
            }
        }
    }
    assert_eq!(checked, VISIBILITIES.len() * MEMBERSHIPS.len() * ENDPOINTS.len());
}

/// A room this server does not have is refused like one the user may not read, so the
/// answer does not tell whether it exists.
#[tokio::test]
async fn an_unknown_room_is_refused_like_an_unreadable_one() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = format!("!nowhere:{}", spec_tests::rooms::server_name_of(alice.user_id()));
    for endpoint in ["state", "state/m.room.name/", "members", "joined_members", "messages?dir=b"] {
        alice.get(&room_path(&room, endpoint)).await.expect_error(403, "M_FORBIDDEN");
    }
}

/// A user who left reads the room up to their leave: later messages, state and a later
/// stay of someone else stay hidden, and `/messages` forwards stops at the leave.
#[tokio::test]
async fn a_departed_member_reads_up_to_their_departure_on_every_endpoint() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice
        .create_room(&json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}],
        }))
        .await;
    bob.join_room(&room).await.expect(200);
    let seen = alice.send_text(&room, "seen").await;
    alice.membership_action(&room, "ban", bob.user_id()).await.expect(200);
    let unseen = alice.send_text(&room, "unseen").await;
    alice.put_state(&room, "m.room.topic", "", &json!({"topic": "later"})).await.expect(200);

    // Even in a world-readable room: the spec's "no events received after they left".
    bob.get(&room_path(&room, &format!("event/{}", enc(&seen)))).await.expect(200);
    bob.get(&room_path(&room, &format!("event/{}", enc(&unseen)))).await.expect_error(404, "M_NOT_FOUND");
    let forwards = bob.messages(&room, "dir=f&limit=100").await.expect(200);
    assert!(bodies(&forwards["chunk"]).contains(&"seen"), "{forwards}");
    assert!(!bodies(&forwards["chunk"]).contains(&"unseen"), "{forwards}");
    let context = bob.get(&room_path(&room, &format!("context/{}", enc(&seen)))).await.expect(200);
    assert!(!bodies(&context["events_after"]).contains(&"unseen"), "{context}");
    bob.get_state(&room, "m.room.topic", "").await.expect_error(404, "M_NOT_FOUND");
    let own = bob.get_state(&room, "m.room.member", bob.user_id()).await.expect(200);
    assert_eq!(own["membership"], "ban");
}
