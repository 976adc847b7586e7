//! matrix-rust-sdk (the `matrix-sdk` crate that Element X is built on), a client nobody
//! here wrote, against a real Myelin: password login and a lazy-loading sync loop, a
//! conversation between two users (invite, join, messages both ways, edits, reactions,
//! redactions, typing, read receipts, the room named after its hero), images up and down
//! with thumbnails through authenticated media, end-to-end encryption
//! (Olm and Megolm, an encrypted attachment, a device added mid-conversation) decrypted on
//! every side, a second device that reads earlier encrypted history through recovery
//! (secret storage, cross-signing) and the server-side key backup, and a pusher set through
//! the SDK that brings a message to a push gateway.
//!
//! The SDK talks sync v2 (`/sync`) here: Element X itself also needs simplified sliding
//! sync (MSC4186), which Myelin does not serve yet.
//!
//! Each client runs its own sync loop in the background and records every timeline and
//! ephemeral event its event handlers see, so a test waits (bounded) for what the other
//! side did. A failure names the behaviour that broke; the server log and the SDK's
//! warnings follow on panic.

use std::{
    future::IntoFuture,
    sync::{Arc, Mutex},
    time::Duration,
};

use matrix_sdk::{
    Client, Room, RoomDisplayName, RoomState,
    attachment::AttachmentConfig,
    config::{RequestConfig, SyncSettings},
    deserialized_responses::TimelineEvent,
    encryption::{BackupDownloadStrategy, EncryptionSettings},
    media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
    room::MessagesOptions,
    ruma::{
        OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt,
        api::client::{
            filter::FilterDefinition,
            push::{PusherIds, PusherInit, PusherKind},
            receipt::create_receipt::v3::ReceiptType,
            room::create_room::v3::Request as CreateRoom,
            session::get_login_types::v3::LoginType,
            sync::sync_events::v3::Filter,
        },
        events::{
            AnySyncEphemeralRoomEvent, AnySyncTimelineEvent, InitialStateEvent,
            reaction::ReactionEventContent,
            receipt::ReceiptThread,
            relation::Annotation,
            room::{
                EncryptedFile, MediaSource,
                encryption::RoomEncryptionEventContent,
                member::MembershipState,
                message::{ImageMessageEventContent, MessageType, RoomMessageEventContent},
            },
        },
        push::{HttpPusherData, PushFormat},
        serde::Raw,
    },
};
use spec_tests::{Server, Value, enc, json, push_gateway::PushGateway};

/// How long any one expected effect may take to show up on the other side.
const WAIT: Duration = Duration::from_secs(30);

/// One logged-in SDK client with its sync loop and everything its event handlers saw.
struct Device {
    client: Client,
    /// Timeline and ephemeral events as JSON, each with the `room_id` it arrived in.
    seen: Arc<Mutex<Vec<Value>>>,
    /// Errors returned by `sync_once`, reported when a wait times out.
    sync_errors: Arc<Mutex<Vec<String>>>,
    sync_task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.sync_task.abort();
    }
}

/// Registers `user` over plain HTTP (the SDK's part starts at login).
async fn register(server: &Server, user: &str) {
    server.client().register(user, &password(user)).await;
}

fn password(user: &str) -> String {
    format!("password-of-{user}")
}

/// Fails with `what` when `future` does not finish within [`WAIT`].
async fn bounded<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(WAIT, future.into_future()).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Logs `user` in with the SDK (`GET /login`, `POST /login`), lets its encryption set-up
/// run, and starts its sync loop.
async fn login(server: &Server, user: &str) -> Device {
    login_with(server, user, EncryptionSettings::default()).await
}

async fn login_with(server: &Server, user: &str, encryption: EncryptionSettings) -> Device {
    // The SDK logs what it tolerates (a failed key upload, a backup that did not take) as
    // warnings: the test harness shows them with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "matrix_sdk=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let client = Client::builder()
        .homeserver_url(server.base_url())
        // Fail fast instead of the SDK's patient retries, so a broken endpoint shows.
        .request_config(RequestConfig::new().retry_limit(2).timeout(Duration::from_secs(30)))
        .with_encryption_settings(encryption)
        .build()
        .await
        .expect("build the SDK client (GET /versions)");
    let flows = bounded("GET /login", client.matrix_auth().get_login_types())
        .await
        .unwrap_or_else(|e| panic!("GET /login: {e}"));
    assert!(
        flows.flows.iter().any(|f| matches!(f, LoginType::Password(_))),
        "GET /login offers m.login.password: {:?}",
        flows.flows
    );
    bounded(
        &format!("POST /login as {user}"),
        client.matrix_auth().login_username(user, &password(user)).initial_device_display_name("sdk").send(),
    )
    .await
    .unwrap_or_else(|e| panic!("POST /login as {user}: {e}"));

    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = |seen: &Arc<Mutex<Vec<Value>>>, room: &RoomId, json: &str| {
        let mut event: Value = serde_json::from_str(json).expect("events are JSON");
        event["room_id"] = json!(room);
        seen.lock().unwrap().push(event);
    };
    client.add_event_handler({
        let seen = seen.clone();
        move |event: Raw<AnySyncTimelineEvent>, room: Room| {
            record(&seen, room.room_id(), event.json().get());
            async {}
        }
    });
    client.add_event_handler({
        let seen = seen.clone();
        move |event: Raw<AnySyncEphemeralRoomEvent>, room: Room| {
            record(&seen, room.room_id(), event.json().get());
            async {}
        }
    });

    // Lazy-loaded members, as most sync-v2 clients ask for (the SDK then calls /members).
    let filter = bounded(
        "POST /user/{user}/filter",
        client.get_or_upload_filter("sdk", FilterDefinition::with_lazy_loading()),
    )
    .await
    .unwrap_or_else(|e| panic!("POST /user/{{user}}/filter: {e}"));
    let settings = SyncSettings::default().filter(Filter::FilterId(filter));

    // The first sync before anything else, as apps do: it also sends the device's keys.
    bounded(&format!("first /sync of {user}"), client.sync_once(settings.clone()))
        .await
        .unwrap_or_else(|e| panic!("first GET /sync of {user}: {e}"));
    bounded(
        &format!("encryption set-up of {user}"),
        client.encryption().wait_for_e2ee_initialization_tasks(),
    )
    .await;

    let sync_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sync_task = tokio::spawn({
        let client = client.clone();
        let sync_errors = sync_errors.clone();
        async move {
            let settings = settings.timeout(Duration::from_secs(2));
            loop {
                if let Err(e) = client.sync_once(settings.clone()).await {
                    sync_errors.lock().unwrap().push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Device { client, seen, sync_errors, sync_task }
}

impl Device {
    fn user_id(&self) -> OwnedUserId {
        self.client.user_id().expect("logged in").to_owned()
    }

    /// The same user and device as a raw-HTTP client, to look at what the server stored.
    fn raw(&self, server: &Server) -> spec_tests::Client {
        server.client().with_token(&self.client.access_token().expect("logged in"))
    }

    /// Waits until the event handlers have seen an event in `room` matching `matches`.
    async fn wait_for(&self, what: &str, room: &RoomId, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|e| e["room_id"] == room.as_str() && matches(e))
                .cloned();
            if let Some(event) = found {
                return event;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} never saw {what} in {room}.\nIt saw: {:#?}\nSync errors: {:?}",
                    self.user_id(),
                    self.seen.lock().unwrap(),
                    self.sync_errors.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the SDK knows `room` in `state` (invites and joins arrive by sync).
    async fn wait_for_room(&self, room: &RoomId, state: RoomState) -> Room {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = self.client.get_room(room)
                && found.state() == state
            {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} never saw {room} as {state:?} (sync errors: {:?})",
                    self.user_id(),
                    self.sync_errors.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this client's room shows `user` with `membership` (from what it synced).
    async fn wait_for_member(&self, room: &Room, user: &OwnedUserId, membership: MembershipState) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(member)) = room.get_member_no_sync(user).await
                && *member.membership() == membership
            {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{} never saw {user} as {membership} in {}", self.user_id(), room.room_id());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Creates a room as `creator` (with `invite`d users and `initial_state`) through the SDK.
async fn create_room(creator: &Device, invite: &[&Device], encrypted: bool) -> Room {
    let mut request = CreateRoom::new();
    request.invite = invite.iter().map(|d| d.user_id()).collect();
    if encrypted {
        request.initial_state = vec![
            InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
                .to_raw_any(),
        ];
    }
    bounded("POST /createRoom", creator.client.create_room(request))
        .await
        .unwrap_or_else(|e| panic!("POST /createRoom: {e}"))
}

/// `invitee` sees the invite by sync and joins; `inviter` then sees them joined.
async fn join(invitee: &Device, inviter: &Device, room: &Room) -> Room {
    let invited = invitee.wait_for_room(room.room_id(), RoomState::Invited).await;
    bounded("POST /join", invited.join()).await.unwrap_or_else(|e| panic!("POST /join: {e}"));
    inviter.wait_for_member(room, &invitee.user_id(), MembershipState::Join).await;
    invitee.wait_for_room(room.room_id(), RoomState::Joined).await
}

async fn send_text(device: &Device, room: &Room, body: &str) -> OwnedEventId {
    bounded("PUT /send", room.send(RoomMessageEventContent::text_plain(body)))
        .await
        .unwrap_or_else(|e| panic!("{} sending {body:?}: {e}", device.user_id()))
        .event_id
}

fn is_text(event: &Value, body: &str) -> bool {
    event["type"] == "m.room.message" && event["content"]["body"] == body
}

#[tokio::test]
async fn two_sdk_clients_converse_with_edits_reactions_redactions_typing_and_receipts() {
    let server = Server::start().await;
    register(&server, "alice").await;
    register(&server, "bob").await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    assert_eq!(alice.user_id(), "@alice:localhost");

    let room = create_room(&alice, &[&bob], false).await;
    let bob_room = join(&bob, &alice, &room).await;
    let room_id = room.room_id().to_owned();

    // Text both ways.
    let hello = send_text(&alice, &room, "hello bob").await;
    let seen = bob.wait_for("alice's message", &room_id, |e| is_text(e, "hello bob")).await;
    assert_eq!(seen["sender"], "@alice:localhost");
    assert_eq!(seen["event_id"], hello.as_str());
    send_text(&bob, &bob_room, "hi alice").await;
    alice.wait_for("bob's reply", &room_id, |e| is_text(e, "hi alice")).await;

    // An edit (m.replace) of alice's message.
    let edit = bounded(
        "PUT /send (edit)",
        room.send_raw(
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "* hello bob, edited",
                "m.new_content": {"msgtype": "m.text", "body": "hello bob, edited"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
            }),
        ),
    )
    .await
    .expect("send an edit");
    let seen =
        bob.wait_for("the edit", &room_id, |e| e["content"]["m.relates_to"]["rel_type"] == "m.replace").await;
    assert_eq!(seen["event_id"], edit.event_id.as_str());
    assert_eq!(seen["content"]["m.relates_to"]["event_id"], hello.as_str());
    assert_eq!(seen["content"]["m.new_content"]["body"], "hello bob, edited");

    // A reaction (m.annotation) from bob.
    let reaction = ReactionEventContent::new(Annotation::new(hello.clone(), "👍".to_owned()));
    bounded("PUT /send (reaction)", bob_room.send(reaction)).await.expect("send a reaction");
    let seen = alice.wait_for("bob's reaction", &room_id, |e| e["type"] == "m.reaction").await;
    assert_eq!(seen["sender"], "@bob:localhost");
    assert_eq!(seen["content"]["m.relates_to"]["rel_type"], "m.annotation");
    assert_eq!(seen["content"]["m.relates_to"]["event_id"], hello.as_str());
    assert_eq!(seen["content"]["m.relates_to"]["key"], "👍");

    // Typing: alice types, bob's client sees it in the ephemeral events.
    bounded("PUT /typing", room.typing_notice(true)).await.expect("send a typing notice");
    bob.wait_for("alice typing", &room_id, |e| {
        e["type"] == "m.typing"
            && e["content"]["user_ids"].as_array().is_some_and(|ids| ids.contains(&json!("@alice:localhost")))
    })
    .await;

    // A read receipt: bob reads alice's message, alice's client sees it.
    bounded(
        "POST /receipt",
        bob_room.send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, hello.clone()),
    )
    .await
    .expect("send a read receipt");
    alice
        .wait_for("bob's read receipt", &room_id, |e| {
            e["type"] == "m.receipt" && e["content"][hello.as_str()]["m.read"]["@bob:localhost"].is_object()
        })
        .await;

    // A redaction: alice retracts her message; bob sees the redaction and the content gone.
    let redaction =
        bounded("PUT /redact", room.redact(&hello, Some("oops"), None)).await.expect("redact").event_id;
    let seen = bob.wait_for("the redaction", &room_id, |e| e["type"] == "m.room.redaction").await;
    assert_eq!(seen["event_id"], redaction.as_str());
    let redacts = seen["content"]["redacts"].as_str().or(seen["redacts"].as_str());
    assert_eq!(redacts, Some(hello.as_str()), "{seen}");
    let original =
        bounded("GET /event", bob_room.event(&hello, None)).await.expect("fetch the redacted event");
    let original: Value = serde_json::from_str(original.raw().json().get()).unwrap();
    assert_eq!(original["content"], json!({}), "a redacted event keeps no content: {original}");

    // History through /messages shows the whole conversation in order.
    let messages = bounded("GET /messages", bob_room.messages(MessagesOptions::backward()))
        .await
        .expect("GET /messages");
    let bodies: Vec<String> = messages
        .chunk
        .iter()
        .rev()
        .filter_map(|e| json_of(e)["content"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, ["hi alice", "* hello bob, edited"], "history as bob sees it");

    // A new device of Alice, after more talk than its first sync's timeline holds: the room
    // has no name, so the SDK names it after its hero Bob, whose member event must come with
    // the lazy-loaded state although he said nothing lately.
    for n in 0..12 {
        send_text(&alice, &room, &format!("monologue {n}")).await;
    }
    let alice2 = login(&server, "alice").await;
    let room2 = alice2.wait_for_room(&room_id, RoomState::Joined).await;
    let name = bounded("room display name", room2.display_name()).await.expect("state store");
    assert_eq!(name, RoomDisplayName::Calculated("bob".to_owned()), "the room is named after bob");
}

fn json_of(event: &TimelineEvent) -> Value {
    serde_json::from_str(event.raw().json().get()).expect("events are JSON")
}

/// A `width`×`height` PNG with a gradient, so a thumbnail has something to scale.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode a PNG");
    bytes
}

#[tokio::test]
async fn an_image_uploaded_by_one_sdk_client_downloads_byte_identical_with_a_thumbnail_for_the_other() {
    let server = Server::start().await;
    register(&server, "alice").await;
    register(&server, "bob").await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let room = create_room(&alice, &[&bob], false).await;
    join(&bob, &alice, &room).await;

    let original = png(64, 48);
    let uploaded =
        bounded("POST /upload", alice.client.media().upload(&mime::IMAGE_PNG, original.clone(), None))
            .await
            .expect("upload an image");
    let content = ImageMessageEventContent::plain("cat.png".to_owned(), uploaded.content_uri.clone());
    bounded("PUT /send (image)", room.send(RoomMessageEventContent::new(MessageType::Image(content))))
        .await
        .expect("send the image message");

    let seen =
        bob.wait_for("the image message", room.room_id(), |e| e["content"]["msgtype"] == "m.image").await;
    let url = seen["content"]["url"].as_str().expect("the image message has a url");
    assert_eq!(url, uploaded.content_uri.as_str());
    let source = MediaSource::Plain(url.into());

    let downloaded = bounded(
        "GET /download",
        bob.client.media().get_media_content(
            &MediaRequestParameters { source: source.clone(), format: MediaFormat::File },
            false,
        ),
    )
    .await
    .expect("download the image");
    assert!(
        downloaded == original,
        "download differs from upload ({} vs {} bytes)",
        downloaded.len(),
        original.len()
    );

    let settings = MediaThumbnailSettings::new(UInt::from(32u32), UInt::from(32u32));
    let thumbnail = bounded(
        "GET /thumbnail",
        bob.client.media().get_media_content(
            &MediaRequestParameters { source, format: MediaFormat::Thumbnail(settings) },
            false,
        ),
    )
    .await
    .expect("download a thumbnail");
    let decoded = image::load_from_memory(&thumbnail).expect("the thumbnail decodes as an image");
    let (width, height) = (decoded.width(), decoded.height());
    assert!(width <= 32 && height <= 32, "thumbnail is {width}x{height}, asked for at most 32x32");
    assert!(width == 32 || height == 32, "scaled to fit the box, not shrunk further: {width}x{height}");
}

/// Waits until `device`'s handlers saw a decrypted message with `body` from `sender`.
async fn wait_for_decrypted(device: &Device, room: &RoomId, sender: &Device, body: &str) -> Value {
    let sender = sender.user_id();
    device
        .wait_for(&format!("{body:?} from {sender}, decrypted"), room, |e| {
            is_text(e, body) && e["sender"] == sender.as_str()
        })
        .await
}

/// What the server holds: the event as the raw API returns it (ciphertext for an encrypted
/// room), so a test can prove the plaintext never reached the server.
async fn stored_event(server: &Server, device: &Device, room: &RoomId, event: &OwnedEventId) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room.as_str()), enc(event.as_str()));
    device.raw(server).get(&path).await.expect(200)
}

#[tokio::test]
async fn two_sdk_clients_exchange_end_to_end_encrypted_messages_and_each_decrypts_the_other() {
    let server = Server::start().await;
    register(&server, "alice").await;
    register(&server, "bob").await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;

    let room = create_room(&alice, &[&bob], true).await;
    let room_id: OwnedRoomId = room.room_id().to_owned();
    assert!(
        bounded("encryption state", room.latest_encryption_state())
            .await
            .expect("encryption state")
            .is_encrypted(),
        "the room created with m.room.encryption is encrypted for the SDK"
    );

    // A message while Bob is only invited: the room key goes to his device too (the room's
    // history is `shared`), and he reads it once he has joined.
    alice.wait_for_member(&room, &bob.user_id(), MembershipState::Invite).await;
    send_text(&alice, &room, "before you joined").await;
    let bob_room = join(&bob, &alice, &room).await;
    wait_for_decrypted(&bob, &room_id, &alice, "before you joined").await;

    // Alice → Bob: /keys/query, /keys/claim, /sendToDevice (Olm), then a Megolm event.
    let secret = send_text(&alice, &room, "a secret for bob").await;
    let seen = wait_for_decrypted(&bob, &room_id, &alice, "a secret for bob").await;
    assert_eq!(seen["event_id"], secret.as_str());
    let stored = stored_event(&server, &bob, &room_id, &secret).await;
    assert_eq!(stored["type"], "m.room.encrypted", "the server holds ciphertext: {stored}");
    assert!(!stored.to_string().contains("a secret for bob"), "plaintext reached the server: {stored}");
    assert_eq!(stored["content"]["algorithm"], "m.megolm.v1.aes-sha2");

    // Bob → Alice, with Bob's own outbound session.
    let reply = send_text(&bob, &bob_room, "a secret for alice").await;
    let seen = wait_for_decrypted(&alice, &room_id, &bob, "a secret for alice").await;
    assert_eq!(seen["event_id"], reply.as_str());
    let stored = stored_event(&server, &alice, &room_id, &reply).await;
    assert_eq!(stored["type"], "m.room.encrypted", "{stored}");

    // A second message each way reuses the Megolm sessions.
    send_text(&alice, &room, "second from alice").await;
    wait_for_decrypted(&bob, &room_id, &alice, "second from alice").await;
    send_text(&bob, &bob_room, "second from bob").await;
    wait_for_decrypted(&alice, &room_id, &bob, "second from bob").await;

    // Each side sees the other's device as it was uploaded (/keys/query).
    let bobs_device = bounded(
        "GET bob's devices",
        alice.client.encryption().get_device(&bob.user_id(), bob.client.device_id().unwrap()),
    )
    .await
    .expect("crypto store")
    .expect("alice knows bob's device");
    assert_eq!(bobs_device.display_name(), Some("sdk"));

    // An encrypted attachment: the SDK encrypts the file, uploads ciphertext, and puts the
    // key in the (encrypted) event; Bob downloads and decrypts it byte-identical.
    let picture = png(20, 10);
    bounded(
        "POST /upload (encrypted) and PUT /send",
        room.send_attachment("secret.png", &mime::IMAGE_PNG, picture.clone(), AttachmentConfig::new()),
    )
    .await
    .expect("send an encrypted attachment");
    let seen = bob.wait_for("the encrypted image", &room_id, |e| e["content"]["msgtype"] == "m.image").await;
    let file: EncryptedFile =
        serde_json::from_value(seen["content"]["file"].clone()).expect("an encrypted image carries `file`");
    let downloaded = bounded(
        "GET /download (encrypted)",
        bob.client.media().get_media_content(
            &MediaRequestParameters {
                source: MediaSource::Encrypted(Box::new(file)),
                format: MediaFormat::File,
            },
            false,
        ),
    )
    .await
    .expect("download and decrypt the attachment");
    assert!(downloaded == picture, "decrypted attachment differs from the original");

    // Bob signs in on a second device mid-conversation: Alice's client learns of it through
    // `device_lists.changed`, and her next message reaches both of Bob's devices.
    let bob2 = login(&server, "bob").await;
    bob2.wait_for_room(&room_id, RoomState::Joined).await;
    let bob2_id = bob2.client.device_id().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while alice
        .client
        .encryption()
        .get_device(&bob.user_id(), &bob2_id)
        .await
        .expect("crypto store")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never learnt of bob's new device (sync device_lists.changed, then /keys/query)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_text(&alice, &room, "for both of bob's devices").await;
    wait_for_decrypted(&bob2, &room_id, &alice, "for both of bob's devices").await;
    wait_for_decrypted(&bob, &room_id, &alice, "for both of bob's devices").await;
}

/// Room history as `device` reads it through `/messages`, decrypting what it can.
async fn history(device: &Device, room: &Room) -> Vec<TimelineEvent> {
    bounded("GET /messages", room.messages(MessagesOptions::backward()))
        .await
        .unwrap_or_else(|e| panic!("{} GET /messages: {e}", device.user_id()))
        .chunk
}

fn decrypted_bodies(events: &[TimelineEvent]) -> Vec<String> {
    let mut bodies: Vec<String> = events
        .iter()
        .filter(|e| !e.kind.is_utd())
        .filter_map(|e| json_of(e)["content"]["body"].as_str().map(str::to_owned))
        .collect();
    bodies.reverse();
    bodies
}

#[tokio::test]
async fn a_second_device_reads_earlier_encrypted_messages_through_recovery_and_key_backup() {
    let server = Server::start().await;
    register(&server, "alice").await;
    let settings = || EncryptionSettings {
        auto_enable_cross_signing: true,
        backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
        auto_enable_backups: true,
    };
    let first = login_with(&server, "alice", settings()).await;

    // Recovery: a backup version, secret storage holding the cross-signing and backup keys.
    let recovery_key = bounded(
        "enable recovery (POST /room_keys/version, account data m.secret_storage.*)",
        first.client.encryption().recovery().enable().wait_for_backups_to_upload(),
    )
    .await
    .unwrap_or_else(|e| panic!("enable recovery: {e}"));

    let room = create_room(&first, &[], true).await;
    let room_id = room.room_id().to_owned();
    let bodies = ["first secret", "second secret"];
    for body in bodies {
        send_text(&first, &room, body).await;
    }
    wait_for_decrypted(&first, &room_id, &first, "second secret").await;
    // The room key goes to the backup (PUT /room_keys/keys).
    bounded("room keys backed up", first.client.encryption().backups().wait_for_steady_state())
        .await
        .unwrap_or_else(|e| panic!("PUT /room_keys/keys: {e}"));
    let backup = first.raw(&server).get("/_matrix/client/v3/room_keys/version").await.expect(200);
    assert_eq!(backup["count"], 1, "one Megolm session in the backup: {backup}");

    // A new device of the same user: the history is there but cannot be read yet.
    let second = login_with(&server, "alice", settings()).await;
    assert_ne!(second.client.device_id(), first.client.device_id());
    let second_room = second.wait_for_room(&room_id, RoomState::Joined).await;
    let before = history(&second, &second_room).await;
    assert!(decrypted_bodies(&before).is_empty(), "nothing decrypts before recovery");

    // Recovery with the key: secrets from account data, then room keys from the backup.
    bounded(
        "recover (GET account data, /room_keys/version)",
        second.client.encryption().recovery().recover(&recovery_key),
    )
    .await
    .unwrap_or_else(|e| panic!("recover: {e}"));
    // As in Element X, an undecryptable event makes the SDK fetch its session from the
    // backup (GET /room_keys/keys/{room}/{session}); reading again then decrypts.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let after = decrypted_bodies(&history(&second, &second_room).await);
        if after == bodies {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second device never decrypted the earlier messages from the backup; it reads {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A whole room's keys at once (GET /room_keys/keys/{room}) works too.
    bounded(
        "GET /room_keys/keys/{room}",
        second.client.encryption().backups().download_room_keys_for_room(&room_id),
    )
    .await
    .unwrap_or_else(|e| panic!("download room keys: {e}"));

    // Recovery also cross-signed the new device with the imported keys (/keys/signatures/upload).
    let own = bounded("own device", second.client.encryption().get_own_device())
        .await
        .expect("crypto store")
        .expect("own device");
    assert!(own.is_cross_signed_by_owner(), "the second device is cross-signed after recovery");
}

/// End-to-end encryption across two federating Myelins: device keys and one-time keys are
/// fetched from the other server (`/user/keys/query`, `/user/keys/claim`), the Olm
/// messages that carry the room keys cross as to-device EDUs, and each side decrypts.
#[tokio::test]
async fn sdk_clients_on_two_servers_exchange_end_to_end_encrypted_messages() {
    let a = Server::start_federating().await;
    let b = Server::start_federating().await;
    register(&a, "alice").await;
    register(&b, "bob").await;
    let alice = login(&a, "alice").await;
    let bob = login(&b, "bob").await;

    let room = create_room(&alice, &[&bob], true).await;
    let room_id: OwnedRoomId = room.room_id().to_owned();
    let bob_room = join(&bob, &alice, &room).await;

    let secret = send_text(&alice, &room, "a secret across servers").await;
    let seen = wait_for_decrypted(&bob, &room_id, &alice, "a secret across servers").await;
    assert_eq!(seen["event_id"], secret.as_str());
    let stored = stored_event(&b, &bob, &room_id, &secret).await;
    assert_eq!(stored["type"], "m.room.encrypted", "B holds ciphertext: {stored}");

    send_text(&bob, &bob_room, "and one back").await;
    wait_for_decrypted(&alice, &room_id, &bob, "and one back").await;
}

/// A phone's pusher, set through the SDK as Element X sets it (`event_id_only`, since the
/// app fetches and decrypts the event itself), brings an encrypted message to the push
/// gateway: the server cannot read it, but the phone must still ring.
#[tokio::test]
async fn a_pusher_set_through_the_sdk_brings_an_encrypted_message_to_the_push_gateway() {
    // Test servers may call the test's gateway on loopback only because this opens it.
    let server = Server::start_with_config("[outbound]\nallowed_networks = [\"127.0.0.0/8\"]\n").await;
    let gateway = PushGateway::start().await;
    register(&server, "alice").await;
    register(&server, "bob").await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let room = create_room(&alice, &[&bob], true).await;
    join(&bob, &alice, &room).await;

    let mut data = HttpPusherData::new(gateway.url());
    data.format = Some(PushFormat::EventIdOnly);
    data.data.insert("default_payload".to_owned(), json!({"aps": {"mutable-content": 1}}));
    let pusher = PusherInit {
        ids: PusherIds::new("bob-phone-token".to_owned(), "io.element.elementx".to_owned()),
        kind: PusherKind::Http(data),
        app_display_name: "Element X".to_owned(),
        device_display_name: "Bob's phone".to_owned(),
        profile_tag: None,
        lang: "en".to_owned(),
    };
    bounded("POST /pushers/set", bob.client.pusher().set(pusher.into()))
        .await
        .unwrap_or_else(|e| panic!("POST /pushers/set: {e}"));

    let sent = send_text(&alice, &room, "ring, phone").await;
    let notification = gateway.wait_for_events(1, WAIT).await.remove(0);
    assert_eq!(notification["event_id"], sent.as_str(), "{notification:#}");
    assert_eq!(notification["room_id"], room.room_id().as_str());
    assert_eq!(notification["counts"]["unread"], 1, "{notification:#}");
    let device = &notification["devices"][0];
    assert_eq!(device["app_id"], "io.element.elementx");
    assert_eq!(device["pushkey"], "bob-phone-token");
    assert_eq!(device["data"]["default_payload"], json!({"aps": {"mutable-content": 1}}), "{device}");
}
