//! Simplified sliding sync (MSC4186), what Element X and matrix-sdk-ui speak: a second view
//! of the same stream as `/sync` (the same positions, notifier and room reads), shaped by
//! lists of rooms the client scrolls through and by per-connection state.
//!
//! - [`params`]: a request, checked and in the form the builder reads, with the room
//!   configs (timeline limit, required state) lists and subscriptions ask for.
//! - [`connections`]: what each connection has sent, keyed by `pos`, in bounded memory.
//! - [`lists`]: which rooms a user has, which of them each list holds, in which order.
//! - [`room`]: one room of a response (timeline, required state, heroes, counts, invites).
//! - [`extensions`]: to-device messages, e2ee counts and device lists, account data,
//!   receipts and typing.
//!
//! Building a response only reads; it is recorded against its connection once it is the
//! one returned (see [`connections`]).

pub mod connections;
mod extensions;
mod lists;
pub mod params;
mod room;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use ruma::{
    OwnedRoomId, UInt,
    api::client::sync::sync_events::v5::{Response, response},
    presence::PresenceState,
};

use self::{
    connections::{RoomSent, SentRoomsView, UnknownPos},
    lists::Candidate,
    params::{RoomConfig, SlidingParams},
};
use super::Sync;
use crate::{
    accounts::Session,
    rooms::{Error, Result, Rooms},
};

/// A built response, with what it sent that its connection must remember.
struct Built {
    response: Response,
    /// The stream position it covers.
    position: u64,
    sent: Vec<(u64, RoomSent)>,
    /// Whether it carries anything for the client; an empty one keeps a long-poll waiting.
    has_news: bool,
}

/// What one response is built from.
struct Builder<'a> {
    sync: &'a Sync,
    rooms: &'a Rooms,
    session: &'a Session,
    params: &'a SlidingParams,
    /// The stream position the client's `pos` covered (`None`: a new connection).
    since: Option<u64>,
    /// The connection state this response is built on.
    connection: (&'a SentRoomsView, u64),
}

impl Sync {
    /// Answers a sliding sync request: at once when there is news for the connection (or it
    /// is new, or `timeout` is zero), otherwise when news arrives or `timeout` passes.
    pub async fn sliding_sync(
        &self,
        rooms: &Rooms,
        session: &Session,
        params: SlidingParams,
        timeout: Duration,
    ) -> Result<Response> {
        if params.set_presence != PresenceState::Offline {
            self.presence.set(&session.user_id, params.set_presence.clone(), None)?;
        }
        let key = (session.user_id.clone(), session.device_id.clone(), params.conn_id.clone());
        let (seq, view) = self.connections.begin(&key, params.pos).map_err(unknown_pos)?;
        let visible = self.store.visible_position();
        let since = params.pos.map(|pos| pos.position.min(visible));
        // The to-device extension acknowledges with its own token (clients keep it apart
        // from `pos`, across connections and restarts).
        if let Some(through) = params.extensions.to_device.as_ref().and_then(|to_device| to_device.since) {
            self.e2ee.acknowledge_to_device(&session.user_id, &session.device_id, through.min(visible))?;
        }
        let builder =
            Builder { sync: self, rooms, session, params: &params, since, connection: (&view, seq) };
        // A new connection answers at once.
        let timeout = if since.is_none() { Duration::ZERO } else { timeout };
        let built = self
            .long_poll(
                session,
                timeout,
                || builder.build(),
                |built| built.as_ref().is_ok_and(|b| !b.has_news),
            )
            .await;
        let Built { mut response, position, sent, .. } = built?;
        let pos =
            self.connections.record(&view, seq, position, sent).ok_or_else(|| unknown_pos(UnknownPos))?;
        response.pos = pos.to_string();
        Ok(response)
    }
}

fn unknown_pos(_: UnknownPos) -> Error {
    Error::UnknownPos("this pos is unknown or expired: start the connection again".to_owned())
}

impl Builder<'_> {
    fn build(&self) -> Result<Built> {
        let upto = self.sync.store.visible_position();
        let user = &self.session.user_id;
        let ignored = self.sync.account_data.ignored_users(user)?;
        let candidates = lists::candidates(self.rooms, &self.sync.store, (user, &ignored), self.since, upto)?;
        let by_id: HashMap<&OwnedRoomId, &Candidate> = candidates.iter().map(|c| (&c.room_id, c)).collect();
        let context = lists::FilterContext::new(&self.sync.account_data, user)?;
        let selection = lists::select(&self.params.lists, &candidates, &context, self.rooms)?;
        // A room in several lists or subscriptions gets the most each asks for. Only rooms
        // the user has some membership in can be subscribed to; others are passed over.
        let mut configs: BTreeMap<&OwnedRoomId, RoomConfig> = BTreeMap::new();
        let subscribed = self
            .params
            .room_subscriptions
            .iter()
            .filter_map(|(id, config)| by_id.get_key_value(id).map(|(id, _)| (*id, config)));
        for (room_id, config) in selection.picked.into_iter().chain(subscribed) {
            configs.entry(room_id).or_default().merge(config);
        }

        // The pos is set once the response is recorded against its connection.
        let mut response = Response::new(String::new());
        response.lists = selection
            .counts
            .into_iter()
            .map(|(name, count)| {
                let mut list = response::List::default();
                list.count = UInt::new_saturating(count as u64);
                (name, list)
            })
            .collect();
        let (view, seq) = self.connection;
        let mut sent = BTreeMap::new();
        for (room_id, config) in &configs {
            let candidate = by_id[room_id];
            let had = view
                .read(seq, |rooms| candidate.short.and_then(|short| rooms.get(&short).copied()))
                .ok_or_else(superseded)?;
            if let Some(room) = self.room(candidate, config, had, context.is_dm(room_id), upto)? {
                sent.insert((*room_id).clone(), room);
            }
        }
        let extension_news = self.extensions(&mut response, &by_id, &selection.listed, &sent, upto)?;
        let has_news = !sent.is_empty() || extension_news;
        let mut remember = Vec::with_capacity(sent.len());
        for (room_id, room) in sent {
            if let Some(short) = by_id[&room_id].short {
                remember.push((short, room.remember));
            }
            response.rooms.insert(room_id, room.room);
        }
        Ok(Built { response, position: upto, sent: remember, has_news })
    }
}

fn superseded() -> Error {
    Error::UnknownPos("a later request on this connection superseded this one".to_owned())
}
