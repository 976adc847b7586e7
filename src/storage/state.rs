//! Room state as stored: short ids for state keys, each room's current state, and state
//! snapshots (chains of small deltas with a full copy now and then). The trees are listed
//! in `rooms`, whose event writes keep them.

use std::collections::BTreeMap;

use ruma::OwnedEventId;

use super::tree::Transact;

use super::{
    Result, StorageError, Store, abort, composite_key, decode, event_id_from, flatten,
    rooms::{RoomRecord, Snapshot, StateKey, room_key, u64_from},
};

impl Store {
    pub(super) fn state_key_short(&self, kind: &str, state_key: &str) -> Result<Option<u64>> {
        self.state_keys
            .get(composite_key(&[kind.as_bytes(), state_key.as_bytes()]))?
            .map(|b| u64_from(&b))
            .transpose()
    }

    /// The short id of a state key, created on first use.
    pub(super) fn state_key_short_or_new(&self, kind: &str, state_key: &str) -> Result<u64> {
        if let Some(short) = self.state_key_short(kind, state_key)? {
            return Ok(short);
        }
        let key = composite_key(&[kind.as_bytes(), state_key.as_bytes()]);
        let candidate = self.db.generate_id()?;
        // Two rooms may race to create the same key: whoever loses adopts the winner's id.
        flatten((&self.state_keys, &self.state_keys_rev).transaction(|(keys, reverse)| {
            if let Some(existing) = keys.get(&key)? {
                return u64_from(&existing).or_else(abort);
            }
            keys.insert(key.as_slice(), &candidate.to_be_bytes())?;
            reverse.insert(&candidate.to_be_bytes(), key.as_slice())?;
            Ok(candidate)
        }))
    }

    pub(super) fn state_key_of_short(&self, short: u64) -> Result<StateKey> {
        let bytes = self
            .state_keys_rev
            .get(short.to_be_bytes())?
            .ok_or_else(|| StorageError::Corrupt(format!("unknown state key {short}")))?;
        let sep = bytes
            .iter()
            .position(|b| *b == super::SEP)
            .ok_or_else(|| StorageError::Corrupt("state key".to_owned()))?;
        Ok((
            String::from_utf8_lossy(&bytes[..sep]).into_owned(),
            String::from_utf8_lossy(&bytes[sep + 1..]).into_owned(),
        ))
    }

    /// The event id of one entry of a room's current state.
    pub fn current_state_event(
        &self,
        room: &RoomRecord,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        let Some(short) = self.state_key_short(kind, state_key)? else { return Ok(None) };
        self.room_state.get(room_key(room.short, short))?.map(|b| event_id_from(&b)).transpose()
    }

    /// A room's whole current state.
    pub fn current_state(&self, room: &RoomRecord) -> Result<BTreeMap<StateKey, OwnedEventId>> {
        self.room_state
            .scan_prefix(room.short.to_be_bytes())
            .map(|item| {
                let (key, value) = item?;
                Ok((self.state_key_of_short(u64_from(&key[8..])?)?, event_id_from(&value)?))
            })
            .collect()
    }

    /// The state recorded in a snapshot.
    pub fn state_at(&self, snapshot: u64) -> Result<BTreeMap<StateKey, OwnedEventId>> {
        let mut links = Vec::new();
        let mut next = Some(snapshot);
        while let Some(id) = next {
            let bytes = self
                .snapshots
                .get(id.to_be_bytes())?
                .ok_or_else(|| StorageError::Corrupt(format!("snapshot {id}")))?;
            let link: Snapshot = decode("snapshot", &bytes)?;
            next = link.parent;
            links.push(link);
        }
        let mut by_short = BTreeMap::new();
        for link in links.into_iter().rev() {
            by_short.extend(link.changes);
        }
        by_short
            .into_iter()
            .map(|(short, event_id)| Ok((self.state_key_of_short(short)?, event_id)))
            .collect()
    }
}
