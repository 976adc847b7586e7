//! Shared by the federation tests: two federating servers with a room in common, a user's
//! `/sync` stream to wait on, and how long effects may take to cross between servers.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod signing;

use std::time::{Duration, Instant};

use spec_tests::{Client, Server, Value, json, rooms::PASSWORD};

use super::sync_support::{joined, next_batch, of_type, sync};

/// How long an event may take to cross from one server to the other.
pub const CROSSING: Duration = Duration::from_secs(30);

/// How long the sender may take to retry after the receiver comes back.
pub const RETRY: Duration = Duration::from_secs(120);

/// How long each `/sync` long-poll of a [`Feed`] waits.
pub const POLL_MS: u64 = 2000;

/// A user's `/sync` stream, continued from one call to the next.
pub struct Feed {
    client: Client,
    /// Which server the client talks to, for failure messages.
    server: String,
    since: String,
}

impl Feed {
    /// Starts after everything the user can already see; `server` names the user's server
    /// in failure messages.
    pub async fn new(client: &Client, server: &str) -> Feed {
        let since = next_batch(&sync(client, None, 0, None).await);
        Feed { client: client.clone(), server: server.to_owned(), since }
    }

    /// Long-polls until `found` returns something for a response. After `limit` the test
    /// fails, naming the user, the server, `what` it waited for and the last response.
    pub async fn until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut found: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let body = sync(&self.client, Some(&self.since), POLL_MS, None).await;
            self.since = next_batch(&body);
            if let Some(result) = found(&body) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{} on {}: /sync did not show {what} within {limit:?}; last response: {body}",
                self.client.user_id(),
                self.server,
            );
        }
    }

    /// Waits until the room's timeline has shown `expected` more `m.room.message` bodies,
    /// and returns the bodies seen, in timeline order.
    pub async fn messages(&mut self, room: &str, expected: usize, limit: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        self.until(limit, &format!("{expected} messages in {room}"), |body| {
            let timeline = &joined(body, room)["timeline"];
            seen.extend(of_type(timeline, "m.room.message").iter().map(|e| text(e).to_owned()));
            (seen.len() >= expected).then_some(())
        })
        .await;
        seen
    }

    /// Waits until `user`'s membership in the room's timeline or state is `membership`.
    pub async fn membership(&mut self, room: &str, user: &str, membership: &str) {
        let what = format!("{user}'s membership {membership} in {room}");
        self.until(CROSSING, &what, |body| {
            let section = joined(body, room);
            let mut members = of_type(&section["timeline"], "m.room.member");
            members.extend(of_type(&section["state"], "m.room.member"));
            members
                .iter()
                .any(|e| e["state_key"] == user && e["content"]["membership"] == membership)
                .then_some(())
        })
        .await;
    }
}

/// The body of an `m.room.message` event.
pub fn text(event: &Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

/// Two federating servers, A and B.
pub async fn two_servers() -> (Server, Server) {
    (Server::start_federating().await, Server::start_federating().await)
}

/// Alice on A and Bob on B, in a private room on A that Bob joined through an invite.
/// Returns once A has seen Bob's join, so A sends the room's events to B from then on.
pub async fn shared_room(a: &Server, b: &Server) -> (Client, Client, String) {
    let alice = a.client().register("alice", PASSWORD).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let mut alice_feed = Feed::new(&alice, &a.server_name()).await;
    let room = alice.create_room(&json!({"preset": "private_chat", "name": "Across"})).await;
    let invite = alice.membership_action(&room, "invite", bob.user_id()).await;
    assert_eq!(invite.status, 200, "POST /rooms/{room}/invite {} on A: {}", bob.user_id(), invite.body);
    let join = bob.join_room(&room).await;
    assert_eq!(join.status, 200, "POST /join/{room} on B: {}", join.body);
    alice_feed.membership(&room, bob.user_id(), "join").await;
    (alice, bob, room)
}
