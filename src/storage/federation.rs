//! Federation: the durable outbound queue, other servers' signing keys, inbound
//! transaction ids, and local users' invites to and knocks on rooms only other servers have.
//!
//! Trees and keys:
//! - `outbound_queue`: destination, `0xff`, sequence (big-endian) → [`Outgoing`]
//! - `server_keys`: server name → the server's key list as fetched, with its expiry
//! - `inbound_txns`: origin, `0xff`, transaction id → `[]` once processed
//! - `remote_invites`: user, `0xff`, room id → [`RemoteMembership`] (the tree kept its name
//!   when knocks joined the invites; records written before have no `membership` and are
//!   invites)

use ruma::{
    OwnedServerName, RoomId, RoomVersionId, ServerName, UserId, events::room::member::MembershipState,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Result, StorageError, Store, composite_key, decode, encode, positioned, prefix_of};

/// One item waiting to go to another server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outgoing {
    /// A PDU, by event id: the event itself is read from the event store when sent.
    Pdu(ruma::OwnedEventId),
    /// An EDU as it goes on the wire (`edu_type` and `content`).
    Edu(JsonValue),
}

/// Another server's published keys, as last fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedServerKeys {
    /// The signed `/_matrix/key/v2/server` response.
    pub keys: JsonValue,
    /// Until when the keys may be used to verify new requests, in ms since the epoch.
    pub valid_until_ts: u64,
}

/// A local user's invite to, or knock on, a room only other servers have, kept until the
/// user joins, declines (rejects the invite, rescinds the knock) or is turned away.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteMembership {
    /// `invite` or `knock`.
    #[serde(default = "invited")]
    pub membership: MembershipState,
    pub room_version: RoomVersionId,
    /// The membership event: an invite signed by both servers, or the knock we sent.
    pub event: JsonValue,
    /// Stripped state the other server sent to describe the room.
    #[serde(rename = "invite_state")]
    pub stripped_state: Vec<JsonValue>,
    /// The server that sent the invite or took the knock: where to join or leave through.
    pub via: OwnedServerName,
}

fn invited() -> MembershipState {
    MembershipState::Invite
}

impl Store {
    /// Queues items for `destination`; durable with the caller's next [`Store::durable`].
    pub fn enqueue_outgoing(&self, destination: &ServerName, items: &[Outgoing]) -> Result<()> {
        for item in items {
            let seq = self.db.generate_id()?;
            let key = composite_key(&[destination.as_bytes(), &seq.to_be_bytes()]);
            self.outbound_queue.insert(key, encode(item))?;
        }
        Ok(())
    }

    /// The oldest queued items for `destination`, with their sequence numbers.
    pub fn outgoing(&self, destination: &ServerName, limit: usize) -> Result<Vec<(u64, Outgoing)>> {
        self.outbound_queue
            .scan_prefix(prefix_of(destination.as_bytes()))
            .take(limit)
            .map(|item| positioned("outgoing", item))
            .collect()
    }

    /// Drops items that were delivered.
    pub async fn remove_outgoing(&self, destination: &ServerName, seqs: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(composite_key(&[destination.as_bytes(), &seq.to_be_bytes()]));
        }
        self.outbound_queue.apply_batch(batch)?;
        self.durable().await
    }

    /// Every destination with something queued.
    pub fn destinations_with_outgoing(&self) -> Result<Vec<OwnedServerName>> {
        let mut destinations: Vec<OwnedServerName> = Vec::new();
        for key in self.outbound_queue.iter().keys() {
            let key = key?;
            let end = key.iter().position(|b| *b == super::SEP).unwrap_or(key.len());
            let name = std::str::from_utf8(&key[..end])
                .ok()
                .and_then(|s| OwnedServerName::try_from(s).ok())
                .ok_or_else(|| StorageError::Corrupt("queue destination".to_owned()))?;
            if destinations.last() != Some(&name) {
                destinations.push(name);
            }
        }
        Ok(destinations)
    }

    pub fn server_keys(&self, server: &ServerName) -> Result<Option<CachedServerKeys>> {
        self.server_keys.get(server.as_bytes())?.map(|b| decode("server keys", &b)).transpose()
    }

    /// Caches a server's key list. Not awaited durable: keys can always be fetched again.
    pub fn store_server_keys(&self, server: &ServerName, keys: &CachedServerKeys) -> Result<()> {
        self.server_keys.insert(server.as_bytes(), encode(keys))?;
        Ok(())
    }

    /// Whether a transaction from `origin` was already processed.
    pub fn inbound_txn_seen(&self, origin: &ServerName, txn_id: &str) -> Result<bool> {
        Ok(self.inbound_txns.contains_key(composite_key(&[origin.as_bytes(), txn_id.as_bytes()]))?)
    }

    pub async fn mark_inbound_txn(&self, origin: &ServerName, txn_id: &str) -> Result<()> {
        self.inbound_txns.insert(composite_key(&[origin.as_bytes(), txn_id.as_bytes()]), &[])?;
        self.durable().await
    }

    /// Records an invite or a knock in a room only other servers have (replacing any earlier
    /// one) and lists the room under the user's rooms with that membership.
    pub async fn store_remote_membership(
        &self,
        user: &UserId,
        room_id: &RoomId,
        record: &RemoteMembership,
    ) -> Result<u64> {
        let guard = self.begin_position()?;
        let position = guard.position();
        self.remote_invites.insert(composite_key(&[user.as_bytes(), room_id.as_bytes()]), encode(record))?;
        self.set_user_room(user, room_id, record.membership.clone(), position)?;
        self.durable().await?;
        drop(guard);
        Ok(position)
    }

    pub fn remote_membership(&self, user: &UserId, room_id: &RoomId) -> Result<Option<RemoteMembership>> {
        self.remote_invites
            .get(composite_key(&[user.as_bytes(), room_id.as_bytes()]))?
            .map(|b| decode("remote membership", &b))
            .transpose()
    }

    /// Forgets an invite or knock once the user joined the room.
    pub async fn remove_remote_membership(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        self.remote_invites.remove(composite_key(&[user.as_bytes(), room_id.as_bytes()]))?;
        self.durable().await
    }

    /// Ends an invite or knock that only this server keeps: the user's membership becomes
    /// `membership` (`leave`, or `ban`) at a new position, which is returned.
    pub async fn end_remote_membership(
        &self,
        user: &UserId,
        room_id: &RoomId,
        membership: MembershipState,
    ) -> Result<u64> {
        let guard = self.begin_position()?;
        self.remote_invites.remove(composite_key(&[user.as_bytes(), room_id.as_bytes()]))?;
        self.set_user_room(user, room_id, membership, guard.position())?;
        self.durable().await?;
        Ok(guard.position())
    }
}
