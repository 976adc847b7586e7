//! How one new event changes a room's stored state: a [`StatePlan`] of the snapshots to
//! write and the current-state entries to set and remove, for an event on top of the room
//! (a delta on the current snapshot) or one whose state was resolved (full snapshots).

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedUserId, events::room::member::MembershipState};

use super::{
    Result, StorageError, Store, decode, event_id_from,
    rooms::{NewEvent, RoomRecord, Snapshot, StateKey, room_key, u64_from},
};

/// A delta chain longer than this is replaced by a full copy, bounding how many records a
/// state lookup reads.
const FULL_SNAPSHOT_EVERY: u32 = 64;

/// How one event changes the stored state: see [`Placement`](super::Placement).
pub(super) struct StatePlan {
    /// The snapshot of the state before the event.
    pub(super) state_before: Option<u64>,
    /// New snapshots to write.
    pub(super) snapshots: Vec<(u64, Snapshot)>,
    /// Current-state entries to set and to remove.
    pub(super) set: Vec<(u64, OwnedEventId)>,
    pub(super) unset: Vec<u64>,
    pub(super) memberships: Vec<(OwnedUserId, MembershipState)>,
    /// The event that held the new event's state key before it.
    pub(super) replaces: Option<OwnedEventId>,
}

impl Store {
    /// State changes of an event on top of the room's current state.
    pub(super) fn tip_state_plan(
        &self,
        room: &RoomRecord,
        event: &NewEvent<'_>,
        updated: &mut RoomRecord,
    ) -> Result<StatePlan> {
        let mut new_snapshot = None;
        let mut replaces = None;
        let state_short = match event.state {
            Some((kind, state_key)) => {
                let short = self.state_key_short_or_new(kind, state_key)?;
                replaces = self
                    .room_state
                    .get(room_key(room.short, short))?
                    .map(|id| event_id_from(&id))
                    .transpose()?;
                let parent = match room.snapshot {
                    Some(id) => Some((
                        id,
                        decode::<Snapshot>(
                            "snapshot",
                            &self
                                .snapshots
                                .get(id.to_be_bytes())?
                                .ok_or_else(|| StorageError::Corrupt(format!("snapshot {id}")))?,
                        )?
                        .chain_len,
                    )),
                    None => None,
                };
                let snapshot = match parent {
                    Some((parent, chain_len)) if chain_len < FULL_SNAPSHOT_EVERY => Snapshot {
                        parent: Some(parent),
                        changes: vec![(short, event.event_id.to_owned())],
                        chain_len: chain_len + 1,
                    },
                    _ => {
                        let mut full: BTreeMap<u64, OwnedEventId> = self
                            .room_state
                            .scan_prefix(room.short.to_be_bytes())
                            .map(|item| {
                                let (key, value) = item?;
                                Ok((u64_from(&key[8..])?, event_id_from(&value)?))
                            })
                            .collect::<Result<_>>()?;
                        full.insert(short, event.event_id.to_owned());
                        Snapshot { parent: None, changes: full.into_iter().collect(), chain_len: 0 }
                    }
                };
                let id = self.db.generate_id()?;
                updated.snapshot = Some(id);
                new_snapshot = Some((id, snapshot));
                Some(short)
            }
            None => None,
        };
        Ok(StatePlan {
            state_before: room.snapshot,
            snapshots: new_snapshot.into_iter().collect(),
            set: state_short.map(|short| (short, event.event_id.to_owned())).into_iter().collect(),
            unset: vec![],
            memberships: vec![],
            replaces,
        })
    }

    /// State changes given as whole maps: full snapshots of the state before the event and
    /// after it, and the room's current state rewritten to the latter.
    pub(super) fn resolved_state_plan(
        &self,
        room: &RoomRecord,
        before: &BTreeMap<StateKey, OwnedEventId>,
        after: &BTreeMap<StateKey, OwnedEventId>,
        memberships: Vec<(OwnedUserId, MembershipState)>,
        updated: &mut RoomRecord,
    ) -> Result<StatePlan> {
        let full = |state: &BTreeMap<StateKey, OwnedEventId>| -> Result<(u64, Snapshot)> {
            let changes = state
                .iter()
                .map(|((kind, key), id)| Ok((self.state_key_short_or_new(kind, key)?, id.clone())))
                .collect::<Result<BTreeMap<u64, OwnedEventId>>>()?;
            Ok((
                self.db.generate_id()?,
                Snapshot { parent: None, changes: changes.into_iter().collect(), chain_len: 0 },
            ))
        };
        let before = full(before)?;
        let after = full(after)?;
        let current: Vec<u64> = self
            .room_state
            .scan_prefix(room.short.to_be_bytes())
            .keys()
            .map(|key| u64_from(&key?[8..]))
            .collect::<Result<_>>()?;
        let set: Vec<(u64, OwnedEventId)> = after.1.changes.clone();
        let unset = current.into_iter().filter(|short| !set.iter().any(|(s, _)| s == short)).collect();
        updated.snapshot = Some(after.0);
        Ok(StatePlan {
            state_before: Some(before.0),
            snapshots: vec![before, after],
            set,
            unset,
            memberships,
            replaces: None,
        })
    }
}
