// matrix-sdk-ui's timeline futures nest deeper than the compiler's default limit.
#![recursion_limit = "256"]

//! Element X's client stack against a real Myelin: matrix-sdk-ui (the same release as the
//! matrix-sdk the other client tests use) runs its `SyncService` over native sliding sync
//! (MSC4186), found through `/versions` as Element X finds it. The room list fills with
//! the right names, unread counts and order; a message sent by another client appears in
//! an open timeline; an invite shows and is accepted; back-pagination reaches the room's
//! creation; an encrypted room decrypts through the sync's to-device and e2ee extensions;
//! a client that sleeps and comes back, and one whose connection was evicted, miss nothing;
//! a thread, a reaction and an edit show as Element X shows them, and an upgraded room
//! points to its successor.
//!
//! The other side of each conversation is a plain HTTP client (or a second SDK client for
//! encryption). Waits are bounded; a failure says what never showed.

use std::{future::IntoFuture, sync::Arc, time::Duration};

use futures_util::StreamExt;
use matrix_sdk::{
    Client, RoomState,
    config::RequestConfig,
    ruma::{
        OwnedRoomId, RoomId,
        api::client::room::create_room::v3::Request as CreateRoom,
        events::{
            InitialStateEvent,
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        },
    },
    sliding_sync::VersionBuilder,
};
use matrix_sdk_ui::{
    eyeball_im::Vector,
    room_list_service::{RoomListItem, RoomListService, filters},
    sync_service::SyncService,
    timeline::{
        AnyOtherFullStateEventContent, RoomExt, Timeline, TimelineFocus, TimelineItem, TimelineItemContent,
    },
};
use spec_tests::{Server, json, rooms::PASSWORD};

/// How long any one expected effect may take to show up.
const WAIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(WAIT, future.into_future()).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A logged-in SDK client with Element X's sync service running.
struct App {
    client: Client,
    sync: SyncService,
}

impl App {
    /// Logs in the way Element X does: it insists on native sliding sync, found in
    /// `/versions`, and runs the room-list and encryption connections. Offline mode makes
    /// the service restart itself after an error, `M_UNKNOWN_POS` included.
    async fn login(server: &Server, user: &str) -> App {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "matrix_sdk=warn,matrix_sdk_ui=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let client = Client::builder()
            .homeserver_url(server.base_url())
            .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
            .request_config(RequestConfig::new().retry_limit(2))
            .build()
            .await
            .expect("the SDK finds native sliding sync in /versions");
        bounded(&format!("login of {user}"), client.matrix_auth().login_username(user, PASSWORD).send())
            .await
            .expect("login");
        let sync =
            SyncService::builder(client.clone()).with_offline_mode().build().await.expect("SyncService");
        sync.start().await;
        App { client, sync }
    }

    fn rooms(&self) -> Arc<RoomListService> {
        self.sync.room_list_service()
    }

    /// Waits until the non-left rooms of the room list satisfy `done`; returns them in the
    /// list's order.
    async fn wait_for_rooms(
        &self,
        what: &str,
        done: impl Fn(&Vector<RoomListItem>) -> bool,
    ) -> Vector<RoomListItem> {
        let service = self.rooms();
        let list = service.all_rooms().await.expect("all_rooms");
        let (stream, controller) = list.entries_with_dynamic_adapters(200);
        controller.set_filter(Box::new(filters::new_filter_non_left()));
        let mut stream = Box::pin(stream);
        let mut entries = Vector::new();
        bounded(what, async {
            loop {
                if done(&entries) {
                    return;
                }
                let Some(diffs) = stream.next().await else { panic!("the room list stream ended: {what}") };
                for diff in diffs {
                    diff.apply(&mut entries);
                }
            }
        })
        .await;
        entries
    }

    /// Opens a room as the app does when the user taps it: a room subscription, then its
    /// timeline.
    async fn open(&self, room_id: &RoomId) -> Timeline {
        self.rooms().subscribe_to_rooms(&[room_id]).await;
        let room = self.client.get_room(room_id).expect("a room of the list");
        room.timeline().await.expect("timeline")
    }
}

async fn names(entries: &Vector<RoomListItem>) -> Vec<String> {
    let mut names = Vec::new();
    for item in entries {
        names.push(item.display_name().await.expect("display name").to_string());
    }
    names
}

fn has_text(items: &Vector<Arc<TimelineItem>>, body: &str) -> bool {
    items
        .iter()
        .any(|item| item.as_event().and_then(|e| e.content().as_message()).is_some_and(|m| m.body() == body))
}

/// Waits until a message with `body` is in the timeline; returns that item.
async fn wait_for_text(timeline: &Timeline, body: &str) -> Arc<TimelineItem> {
    wait_for_item(timeline, &format!("{body:?} in the timeline"), |item| {
        item.as_event().and_then(|e| e.content().as_message()).is_some_and(|m| m.body() == body)
    })
    .await
}

/// Waits until an item of the timeline satisfies `found`; returns it.
async fn wait_for_item(
    timeline: &Timeline,
    what: &str,
    found: impl Fn(&TimelineItem) -> bool,
) -> Arc<TimelineItem> {
    let (mut items, stream) = timeline.subscribe().await;
    let mut stream = Box::pin(stream);
    bounded(what, async {
        loop {
            if let Some(found) = items.iter().find(|item| found(item)) {
                return found.clone();
            }
            let Some(diffs) = stream.next().await else { panic!("the timeline stream ended: {what}") };
            for diff in diffs {
                diff.apply(&mut items);
            }
        }
    })
    .await
}

/// The room list shows each room under its name (or its other member's, for a DM), newest
/// first, with the unread messages counted; an opened room shows what another client
/// sends, and pages back to the room's creation.
#[tokio::test]
async fn the_room_list_and_a_live_timeline() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let quiet = alice.create_room(&json!({"name": "Quiet room"})).await;
    let busy = alice.create_room(&json!({"name": "Busy room", "invite": [bob.user_id()]})).await;
    bob.join_room(&busy).await.expect(200);
    for n in 0..30 {
        bob.send_text(&busy, &format!("history {n}")).await;
    }
    let dm = bob.create_room(&json!({"is_direct": true, "invite": [alice.user_id()]})).await;
    alice.join_room(&dm).await.expect(200);
    bob.send_text(&dm, "psst").await;

    let app = App::login(&server, "alice").await;
    let rooms = app.wait_for_rooms("three rooms", |rooms| rooms.len() == 3).await;
    assert_eq!(names(&rooms).await, ["bob", "Busy room", "Quiet room"], "named, newest first");
    let room = |room_id: &str| rooms.iter().find(|r| r.room_id() == room_id).expect("room in the list");
    // The server's count (from push rules), and the app's own from what it has loaded.
    let counts = |room_id: &str| {
        let room = room(room_id);
        (room.unread_notification_counts().notification_count, room.num_unread_messages())
    };
    assert_eq!(counts(&busy), (30, 1), "bob's 30 messages are unread; the list loaded the newest");
    assert_eq!(counts(&dm), (1, 1));
    assert_eq!(counts(&quiet), (0, 0));

    let timeline = app.open(RoomId::parse(&busy).unwrap().as_ref()).await;
    bob.send_text(&busy, "live one").await;
    wait_for_text(&timeline, "live one").await;

    let mut reached_start = false;
    for _ in 0..20 {
        if bounded("back-pagination", timeline.paginate_backwards(20)).await.expect("paginate") {
            reached_start = true;
            break;
        }
    }
    assert!(reached_start, "back-pagination never reached the room's creation");
    let items = timeline.items().await;
    for n in [0, 15, 29] {
        assert!(has_text(&items, &format!("history {n}")), "history {n} missing after paginating");
    }
    app.sync.stop().await;
}

/// An invite shows as one, with who sent it; accepting it joins the room in the list.
#[tokio::test]
async fn an_invite_shows_and_is_accepted() {
    let server = Server::start().await;
    server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let app = App::login(&server, "alice").await;
    app.wait_for_rooms("the empty list loaded", |_| true).await;

    let room_id = bob.create_room(&json!({"name": "Invitation", "invite": ["@alice:localhost"]})).await;
    let room_id: OwnedRoomId = room_id.try_into().unwrap();
    let room = bounded("the invite shows", async {
        loop {
            if let Some(room) = app.client.get_room(&room_id).filter(|r| r.state() == RoomState::Invited) {
                return room;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let invite = room.invite_details().await.expect("invite details");
    assert_eq!(invite.inviter.expect("the inviter").user_id(), bob.user_id());
    room.join().await.expect("accept the invite");
    bounded("the joined room synced", async {
        while !(room.state() == RoomState::Joined && room.joined_members_count() == 2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let rooms = app.wait_for_rooms("the joined room in the list", |rooms| rooms.len() == 1).await;
    assert_eq!(names(&rooms).await, ["Invitation"]);
    app.sync.stop().await;
}

/// Messages in an encrypted room decrypt on the other side: keys travel as to-device
/// messages through the encryption connection's extensions.
#[tokio::test]
async fn an_encrypted_room_decrypts() {
    let server = Server::start().await;
    server.client().register("alice", PASSWORD).await;
    server.client().register("bob", PASSWORD).await;
    let alice = App::login(&server, "alice").await;
    let bob = App::login(&server, "bob").await;
    alice.wait_for_rooms("alice's list loaded", |_| true).await;
    bob.wait_for_rooms("bob's list loaded", |_| true).await;

    let mut request = CreateRoom::new();
    request.invite = vec![bob.client.user_id().unwrap().to_owned()];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
            .to_raw_any(),
    ];
    let room =
        bounded("create an encrypted room", alice.client.create_room(request)).await.expect("createRoom");
    let room_id = room.room_id().to_owned();
    let invited = bounded("bob sees the invite", async {
        loop {
            if let Some(room) = bob.client.get_room(&room_id).filter(|r| r.state() == RoomState::Invited) {
                return room;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    invited.join().await.expect("bob joins");
    bounded("alice sees bob joined", async {
        while room.joined_members_count() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let timeline = alice.open(&room_id).await;
    timeline.send(RoomMessageEventContent::text_plain("a secret").into()).await.expect("send");
    let bobs = bob.open(&room_id).await;
    let item = wait_for_text(&bobs, "a secret").await;
    let event = item.as_event().expect("an event");
    assert!(event.encryption_info().is_some(), "the message was encrypted, and bob decrypted it");
    alice.sync.stop().await;
    bob.sync.stop().await;
}

/// A client that sleeps for a minute (its app in the background) resumes from its old
/// position and gets every message it missed, with the newest at the end.
#[tokio::test]
async fn a_client_that_sleeps_a_minute_misses_nothing() {
    let server = Server::start().await;
    server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = bob.create_room(&json!({"name": "Chatter", "invite": ["@alice:localhost"]})).await;
    server.client().login("alice", PASSWORD).await.join_room(&room_id).await.expect(200);
    let app = App::login(&server, "alice").await;
    app.wait_for_rooms("the room", |rooms| rooms.len() == 1).await;
    let timeline = app.open(RoomId::parse(&room_id).unwrap().as_ref()).await;
    bob.send_text(&room_id, "before sleeping").await;
    wait_for_text(&timeline, "before sleeping").await;

    app.sync.stop().await;
    for n in 0..40 {
        bob.send_text(&room_id, &format!("while asleep {n}")).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    app.sync.start().await;
    wait_for_text(&timeline, "while asleep 39").await;
    // The server says the timeline was limited; the app pages back over the gap.
    for _ in 0..10 {
        let items = timeline.items().await;
        if (0..40).all(|n| has_text(&items, &format!("while asleep {n}")))
            && has_text(&items, "before sleeping")
        {
            break;
        }
        bounded("fill the gap", timeline.paginate_backwards(20)).await.expect("paginate");
    }
    let items = timeline.items().await;
    for n in 0..40 {
        assert!(has_text(&items, &format!("while asleep {n}")), "message {n} lost while asleep");
    }
    assert!(has_text(&items, "before sleeping"));
    app.sync.stop().await;
}

/// A connection the server forgot (here: evicted by others, `max_connections = 2`) gets
/// `M_UNKNOWN_POS`; the app starts it again by itself and misses no message.
#[tokio::test]
async fn an_evicted_connection_recovers_without_losing_messages() {
    let config = format!("{}\n[sliding_sync]\nmax_connections = 2\n", spec_tests::TEST_CONFIG);
    let server = Server::start_with_config(&config).await;
    server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = bob.create_room(&json!({"name": "Evicted", "invite": ["@alice:localhost"]})).await;
    let alice_http = server.client().login("alice", PASSWORD).await;
    alice_http.join_room(&room_id).await.expect(200);
    let app = App::login(&server, "alice").await;
    app.wait_for_rooms("the room", |rooms| rooms.len() == 1).await;
    let timeline = app.open(RoomId::parse(&room_id).unwrap().as_ref()).await;

    // Two other connections push the app's out.
    for conn in ["other-1", "other-2"] {
        alice_http
            .post(
                "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
                &json!({"conn_id": conn, "lists": {"l": {"ranges": [[0, 1]], "timeline_limit": 1}}}),
            )
            .await
            .expect(200);
    }
    for n in 0..5 {
        bob.send_text(&room_id, &format!("after eviction {n}")).await;
    }
    wait_for_text(&timeline, "after eviction 4").await;
    // The connection started again without the room's subscription (the SDK drops them on
    // `M_UNKNOWN_POS`), so the list's one-event timeline may leave a gap: paging fills it.
    for _ in 0..10 {
        let items = timeline.items().await;
        if (0..5).all(|n| has_text(&items, &format!("after eviction {n}"))) {
            break;
        }
        bounded("fill the gap", timeline.paginate_backwards(20)).await.expect("paginate");
    }
    let items = timeline.items().await;
    for n in 0..5 {
        assert!(has_text(&items, &format!("after eviction {n}")), "message {n} lost in the eviction");
    }
    // Still receiving after the restart of the connection.
    alice_http.send_text(&room_id, "from the other device").await;
    wait_for_text(&timeline, "from the other device").await;
    app.sync.stop().await;
}

fn thread_reply(root: &str, body: &str) -> serde_json::Value {
    json!({"msgtype": "m.text", "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true}})
}

/// What another client did shows as Element X shows it: a thread root with its reply
/// count and latest reply (the server's bundled summary), the thread opened on its own, an
/// edited message with its new text, and a reaction sent from the app reaching the server.
#[tokio::test]
async fn a_thread_an_edit_and_a_reaction() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "Threads", "preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    let root = bob.send_text(&room, "Thread root").await;
    for body in ["first reply", "second reply"] {
        bob.send_event(&room, "m.room.message", &thread_reply(&root, body)).await.expect(200);
    }
    let typo = bob.send_text(&room, "helo wrld").await;
    let edit = json!({"msgtype": "m.text", "body": "* hello world",
        "m.new_content": {"msgtype": "m.text", "body": "hello world"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": typo}});
    bob.send_event(&room, "m.room.message", &edit).await.expect(200);

    let app = App::login(&server, "alice").await;
    app.wait_for_rooms("the room", |rooms| rooms.len() == 1).await;
    let room_id = RoomId::parse(&room).unwrap();
    let timeline = app.open(&room_id).await;

    let root_item = wait_for_item(&timeline, "the thread root with its summary", |item| {
        item.as_event().is_some_and(|e| e.event_id().is_some_and(|id| id == root.as_str()))
            && item.as_event().and_then(|e| e.content().thread_summary()).is_some_and(|s| s.num_replies == 2)
    })
    .await;
    let edited = wait_for_text(&timeline, "hello world").await;
    let message = edited.as_event().and_then(|e| e.content().as_message()).expect("a message");
    assert!(message.is_edited(), "the edit is shown as one");

    // The thread, opened on its own, holds both replies.
    let matrix_room = app.client.get_room(&room_id).expect("the room");
    let thread = bounded(
        "a thread timeline",
        matrix_room
            .timeline_builder()
            .with_focus(TimelineFocus::Thread { root_event_id: root.as_str().try_into().unwrap() })
            .build(),
    )
    .await
    .expect("thread timeline");
    bounded("thread pagination", thread.paginate_backwards(20)).await.expect("paginate the thread");
    wait_for_text(&thread, "first reply").await;
    wait_for_text(&thread, "second reply").await;

    // A reaction from the app reaches the server, and shows on the root.
    let root_id = root_item.as_event().expect("event").identifier();
    bounded("toggle_reaction", timeline.toggle_reaction(&root_id, "👍")).await.expect("react");
    wait_for_item(&timeline, "the reaction on the root", |item| {
        item.as_event().is_some_and(|e| {
            e.event_id().is_some_and(|id| id == root.as_str())
                && e.content().reactions().is_some_and(|r| r.get("👍").is_some_and(|by| !by.is_empty()))
        })
    })
    .await;
    let relations = format!(
        "/_matrix/client/v1/rooms/{}/relations/{}/m.annotation",
        spec_tests::enc(&room),
        spec_tests::enc(&root)
    );
    let mut found = false;
    for _ in 0..50 {
        let chunk = bob.get(&relations).await.expect(200)["chunk"].clone();
        if chunk.as_array().is_some_and(|c| c.iter().any(|e| e["content"]["m.relates_to"]["key"] == "👍")) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the reaction never reached the server");
    app.sync.stop().await;
}

/// A room upgraded by another of the user's devices: the old room's timeline shows the
/// tombstone, the SDK knows the successor, and the new room knows its predecessor.
#[tokio::test]
async fn an_upgraded_room_points_to_its_successor() {
    let server = Server::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"name": "Old home", "room_version": "11"})).await;
    alice.send_text(&room, "before the move").await;

    let app = App::login(&server, "alice").await;
    app.wait_for_rooms("the old room", |rooms| rooms.len() == 1).await;
    let old_id = RoomId::parse(&room).unwrap();
    let timeline = app.open(&old_id).await;
    wait_for_text(&timeline, "before the move").await;

    let upgrade = format!("/_matrix/client/v3/rooms/{}/upgrade", spec_tests::enc(&room));
    let reply = alice.post(&upgrade, &json!({"new_version": "12"})).await.expect(200);
    let new_room = reply["replacement_room"].as_str().expect("replacement_room").to_owned();

    wait_for_item(&timeline, "the tombstone in the old room", |item| {
        matches!(
            item.as_event().map(|e| e.content()),
            Some(TimelineItemContent::OtherState(state))
                if matches!(state.content(), AnyOtherFullStateEventContent::RoomTombstone(_))
        )
    })
    .await;
    let old = app.client.get_room(&old_id).expect("the old room");
    let successor = bounded("the successor", async {
        loop {
            if let Some(successor) = old.successor_room() {
                return successor;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(successor.room_id.as_str(), new_room);

    app.wait_for_rooms("the new room too", |rooms| rooms.iter().any(|r| r.room_id().as_str() == new_room))
        .await;
    let new_id = OwnedRoomId::try_from(new_room.as_str()).unwrap();
    let new = app.client.get_room(&new_id).expect("the new room");
    let predecessor = bounded("the predecessor", async {
        loop {
            if let Some(predecessor) = new.predecessor_room() {
                return predecessor;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(predecessor.room_id.as_str(), room);
    assert_eq!(new.state(), RoomState::Joined);
    app.sync.stop().await;
}
