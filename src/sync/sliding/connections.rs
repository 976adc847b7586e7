//! What each sliding-sync connection has sent, keyed by `pos`, in bounded memory.
//!
//! A connection is (user, device, `conn_id`). Its state says, per room, up to which stream
//! position the client has the room and with which room config it was sent. A response that
//! sends rooms is *pending* until the client syncs from its `pos`, which proves it arrived:
//! then the response's changes join the confirmed state and every other pending response
//! is dropped. A client that cancels a request and sends the same `pos` again (matrix-sdk
//! does whenever it subscribes to a room) is answered from the same confirmed state, so a
//! response it never received does not count as sent.
//!
//! `pos` is `"{position}-{seq}"`: the stream position the response covered, and which
//! version of the connection state it goes with (0: none, for a connection that asks only
//! for extensions, which then survives anything). A `pos` whose state is unknown (evicted,
//! expired, from before a restart, or never issued) is answered `M_UNKNOWN_POS`, after
//! which the client starts the connection again.
//!
//! Bounds: at most [`MAX_PENDING`] pending responses per connection, at most
//! `max_connections` connections (the least recently used goes first), and a connection
//! idle for longer than `idle_expiry` is forgotten.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedDeviceId, OwnedUserId};

/// Responses that may still be confirmed, per connection. matrix-sdk has at most one
/// request in flight per connection, plus the ones it cancelled.
const MAX_PENDING: usize = 4;

/// A `pos` as this server hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// The stream position the response covered.
    pub position: u64,
    /// The version of the connection's state; 0 for none.
    pub seq: u64,
}

impl Pos {
    pub fn parse(pos: &str) -> Option<Self> {
        let (position, seq) = pos.split_once('-')?;
        Some(Self { position: position.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.position, self.seq)
    }
}

/// What the client has of one room on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSent {
    /// The client has the room's events and state up to this position.
    pub upto: u64,
    /// The membership the room was last sent with.
    pub membership_position: u64,
    /// The config it was last sent with: its timeline limit, and a fingerprint of its
    /// required state (a change means the client asked for other state).
    pub timeline_limit: u32,
    pub required_state: u64,
}

/// The rooms of a connection, by the room's short id.
pub type SentRooms = HashMap<u64, RoomSent>;

/// Which connection: user, device and `conn_id`.
pub type ConnectionKey = (OwnedUserId, OwnedDeviceId, String);

struct Connection {
    /// The state the client confirmed, and its version.
    seq: u64,
    rooms: SentRooms,
    /// Responses since then: their `pos` and the rooms each sent.
    pending: VecDeque<(Pos, Vec<(u64, RoomSent)>)>,
    next_seq: u64,
    last_used: Instant,
}

/// A connection's confirmed rooms, read while a response is built.
pub struct SentRoomsView(Arc<Mutex<Connection>>);

impl SentRoomsView {
    /// Runs `read` on the confirmed rooms, if the connection still has the state of `seq`
    /// (a later request may have moved it on meanwhile).
    pub fn read<T>(&self, seq: u64, read: impl FnOnce(&SentRooms) -> T) -> Option<T> {
        let connection = self.0.lock().expect("never poisoned");
        (connection.seq == seq).then(|| read(&connection.rooms))
    }
}

/// Why a request's `pos` cannot be used.
#[derive(Debug)]
pub struct UnknownPos;

pub struct Connections {
    map: Mutex<HashMap<ConnectionKey, Arc<Mutex<Connection>>>>,
    max_connections: usize,
    idle_expiry: Duration,
}

impl Connections {
    pub fn new(max_connections: usize, idle_expiry: Duration) -> Self {
        Self { map: Mutex::default(), max_connections: max_connections.max(1), idle_expiry }
    }

    /// The state to answer a request from. Without a `pos` the connection starts afresh;
    /// with one, it must be the confirmed state or a pending response (which is then
    /// confirmed).
    pub fn begin(&self, key: &ConnectionKey, pos: Option<Pos>) -> Result<(u64, SentRoomsView), UnknownPos> {
        let connection = {
            let mut map = self.map.lock().expect("never poisoned");
            let now = Instant::now();
            if map.get(key).is_some_and(|connection| self.expired(connection, now)) {
                map.remove(key);
            }
            match (pos, map.get(key)) {
                (None, _) | (Some(Pos { seq: 0, .. }), None) => {
                    let fresh = Arc::new(Mutex::new(Connection {
                        seq: 0,
                        rooms: SentRooms::new(),
                        pending: VecDeque::new(),
                        next_seq: 1,
                        last_used: now,
                    }));
                    self.insert(&mut map, key.clone(), fresh.clone());
                    fresh
                }
                (Some(_), None) => return Err(UnknownPos),
                (Some(_), Some(connection)) => connection.clone(),
            }
        };
        let mut state = connection.lock().expect("never poisoned");
        state.last_used = Instant::now();
        if let Some(pos) = pos
            && pos.seq != state.seq
        {
            let index = state.pending.iter().position(|(pending, _)| *pending == pos).ok_or(UnknownPos)?;
            let (_, sent) = state.pending.remove(index).expect("found above");
            state.rooms.extend(sent);
            state.seq = pos.seq;
        }
        state.pending.clear();
        let seq = state.seq;
        drop(state);
        Ok((seq, SentRoomsView(connection)))
    }

    fn expired(&self, connection: &Mutex<Connection>, now: Instant) -> bool {
        now.duration_since(connection.lock().expect("never poisoned").last_used) >= self.idle_expiry
    }

    /// Adds a connection; idle ones are swept out here, and the least recently used goes
    /// when there are too many.
    fn insert(
        &self,
        map: &mut HashMap<ConnectionKey, Arc<Mutex<Connection>>>,
        key: ConnectionKey,
        connection: Arc<Mutex<Connection>>,
    ) {
        let now = Instant::now();
        map.retain(|_, connection| !self.expired(connection, now));
        if !map.contains_key(&key) && map.len() >= self.max_connections {
            let oldest = map
                .iter()
                .min_by_key(|(_, connection)| connection.lock().expect("never poisoned").last_used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(key, connection);
    }

    /// Records a response built from the state of `seq` that sent `rooms`, and returns
    /// its `pos`; `None` when the connection moved on meanwhile (the response is stale: the
    /// client has already sent a later request on this connection).
    pub fn record(
        &self,
        view: &SentRoomsView,
        seq: u64,
        position: u64,
        rooms: Vec<(u64, RoomSent)>,
    ) -> Option<Pos> {
        let mut state = view.0.lock().expect("never poisoned");
        if state.seq != seq {
            return None;
        }
        if rooms.is_empty() {
            // Nothing changed what the client has: the confirmed state answers its next
            // request as well as a copy would.
            return Some(Pos { position, seq });
        }
        let pos = Pos { position, seq: state.next_seq };
        state.next_seq += 1;
        if state.pending.len() == MAX_PENDING {
            state.pending.pop_front();
        }
        state.pending.push_back((pos, rooms));
        Some(pos)
    }

    /// How many connections are kept (for metrics and tests).
    pub fn count(&self) -> usize {
        self.map.lock().expect("never poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(conn: &str) -> ConnectionKey {
        (ruma::owned_user_id!("@a:x"), "DEV".into(), conn.to_owned())
    }

    fn sent(upto: u64) -> RoomSent {
        RoomSent { upto, membership_position: 1, timeline_limit: 1, required_state: 7 }
    }

    #[test]
    fn pos_round_trips_and_junk_is_refused() {
        let pos = Pos { position: 12, seq: 3 };
        assert_eq!(Pos::parse(&pos.to_string()), Some(pos));
        for junk in ["", "12", "12-", "-3", "a-b", "12-3-4"] {
            assert_eq!(Pos::parse(junk), None, "{junk:?}");
        }
    }

    /// A response counts as received only once the client syncs from its `pos`; sending
    /// the earlier `pos` again discards it.
    #[test]
    fn a_response_counts_once_its_pos_comes_back() {
        let connections = Connections::new(10, Duration::from_secs(60));
        let (seq, view) = connections.begin(&key("c"), None).unwrap();
        let first = connections.record(&view, seq, 10, vec![(1, sent(10))]).unwrap();

        // Cancelled and sent again from the start: the response is forgotten.
        let (seq, view) = connections.begin(&key("c"), Some(Pos { position: 0, seq: 0 })).unwrap();
        assert_eq!(view.read(seq, |rooms| rooms.len()), Some(0));
        let second = connections.record(&view, seq, 11, vec![(1, sent(11))]).unwrap();
        assert!(
            connections.begin(&key("c"), Some(first)).is_err(),
            "the forgotten response's pos is unknown"
        );

        let (seq, view) = connections.begin(&key("c"), Some(second)).unwrap();
        assert_eq!(view.read(seq, |rooms| rooms.get(&1).copied()), Some(Some(sent(11))));
        // Nothing new to send: the same state, a new position.
        assert_eq!(connections.record(&view, seq, 20, vec![]), Some(Pos { position: 20, seq: second.seq }));
    }

    #[test]
    fn a_stale_response_is_not_recorded() {
        let connections = Connections::new(10, Duration::from_secs(60));
        let (seq, old_view) = connections.begin(&key("c"), None).unwrap();
        let pos = connections.record(&old_view, seq, 10, vec![(1, sent(10))]).unwrap();
        connections.begin(&key("c"), Some(pos)).unwrap();
        assert_eq!(connections.record(&old_view, seq, 12, vec![(2, sent(12))]), None);
    }

    #[test]
    fn the_least_recently_used_connection_goes_first_and_idle_ones_expire() {
        let connections = Connections::new(2, Duration::from_secs(60));
        for conn in ["a", "b", "c"] {
            connections.begin(&key(conn), None).unwrap();
        }
        assert_eq!(connections.count(), 2);
        assert!(connections.begin(&key("a"), Some(Pos { position: 1, seq: 1 })).is_err());

        let expiring = Connections::new(10, Duration::ZERO);
        let (seq, view) = expiring.begin(&key("a"), None).unwrap();
        let pos = expiring.record(&view, seq, 5, vec![(1, sent(5))]).unwrap();
        assert!(expiring.begin(&key("a"), Some(pos)).is_err());
    }
}
