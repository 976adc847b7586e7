//! An echo bot on matrix-sdk, the smallest useful Matrix bot: it logs in with a password,
//! joins every room it is invited to, and answers `!ping` with `pong`.
//!
//! `main.rs` runs it from the command line; the spec-tests run [`login`] and [`run`]
//! against a real Myelin (`spec-tests/tests/client_echo_bot.rs`).

use matrix_sdk::{
    Client, Room, RoomState,
    config::SyncSettings,
    ruma::{
        MilliSecondsSinceUnixEpoch,
        events::room::{
            member::{MembershipState, StrippedRoomMemberEvent},
            message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent},
        },
    },
};

/// Logs `user` in on the homeserver at `homeserver_url` (e.g. `https://matrix.example.org`).
pub async fn login(
    homeserver_url: &str,
    user: &str,
    password: &str,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::builder().homeserver_url(homeserver_url).build().await?;
    client.matrix_auth().login_username(user, password).initial_device_display_name("echo bot").await?;
    Ok(client)
}

/// Answers until the sync loop fails. Messages sent before the bot started are not answered;
/// invitations that arrived meanwhile are accepted.
pub async fn run(client: Client) -> matrix_sdk::Result<()> {
    // A room joined later brings its history along in the next sync: only messages sent
    // since now are answered.
    let started = MilliSecondsSinceUnixEpoch::now();
    // The first sync catches up without the handlers, so old `!ping`s stay unanswered.
    let caught_up = client.sync_once(SyncSettings::default()).await?;
    for room in client.invited_rooms() {
        join(&room).await;
    }
    client.add_event_handler(on_invite);
    client.add_event_handler(move |event, client, room| on_message(event, client, room, started));
    client.sync(SyncSettings::default().token(caught_up.next_batch)).await
}

async fn on_invite(event: StrippedRoomMemberEvent, client: Client, room: Room) {
    if event.content.membership == MembershipState::Invite && client.user_id() == Some(&*event.state_key) {
        join(&room).await;
    }
}

async fn join(room: &Room) {
    match room.join().await {
        Ok(()) => tracing::info!(room = %room.room_id(), "joined"),
        Err(e) => tracing::warn!(room = %room.room_id(), error = %e, "cannot join"),
    }
}

async fn on_message(
    event: OriginalSyncRoomMessageEvent,
    client: Client,
    room: Room,
    started: MilliSecondsSinceUnixEpoch,
) {
    if room.state() != RoomState::Joined
        || client.user_id() == Some(&*event.sender)
        || event.origin_server_ts < started
    {
        return;
    }
    let MessageType::Text(text) = &event.content.msgtype else { return };
    if text.body.trim() == "!ping"
        && let Err(e) = room.send(RoomMessageEventContent::text_plain("pong")).await
    {
        tracing::warn!(room = %room.room_id(), error = %e, "cannot answer");
    }
}
