//! Writing a new event: how it changes its room's stored state (a [`StatePlan`] of the
//! snapshots to write and the current-state entries to set and remove: a delta on the
//! current snapshot for an event on top of the room, full snapshots for one whose state was
//! resolved), then the event and every index it touches, atomically (see `event_writes`).

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedUserId, events::room::member::MembershipState};

use super::{
    PositionGuard, Result, StorageError, Store, composite_key, decode, encode, event_id_from,
    event_writes::{Index, WriteSet},
    memberships::UserRoom,
    rooms::{
        NewEvent, Placement, Relation, RoomRecord, Snapshot, StateKey, StoredEvent, raw_pdu, relation_key,
        room_key, u64_from,
    },
    txn_ids,
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

    /// Writes a new event at the end of its room's timeline, updating state, memberships,
    /// extremities and the transaction id index, atomically. Returns the room as it
    /// is afterwards, the event's record, and its stream position, which readers cannot see
    /// until the caller drops it. The caller holds the room's append lock.
    ///
    /// The write is *not yet durable*: the caller releases the room's lock and then awaits
    /// [`Store::durable`] before acknowledging, so concurrent sends to one room share a flush.
    pub fn stage_event(
        &self,
        room: &RoomRecord,
        event: NewEvent<'_>,
        placement: Placement<'_>,
    ) -> Result<(RoomRecord, StoredEvent, PositionGuard)> {
        let guard = self.begin_position()?;
        let position = guard.position();
        let mut updated = room.clone();
        updated.depth = room.depth.max(event.depth);
        updated.last_position = position;
        // Resolving branches may change the state whatever the event is.
        let resolved = matches!(placement, Placement::Resolved { .. });
        let plan = match placement {
            Placement::Tip => {
                updated.extremities = vec![event.event_id.to_owned()];
                self.tip_state_plan(room, &event, &mut updated)?
            }
            Placement::Resolved { before, after, extremities, memberships } => {
                updated.extremities = extremities;
                let mut plan = self.resolved_state_plan(room, before, after, memberships, &mut updated)?;
                plan.replaces = event.state.and_then(|(kind, state_key)| {
                    before.get(&(kind.to_owned(), state_key.to_owned())).cloned()
                });
                plan
            }
        };
        if event.membership.is_some() || !plan.memberships.is_empty() {
            updated.last_membership_change = position;
        }
        if event.state.is_some() || resolved {
            updated.last_state_change = position;
        }
        if event.bumps {
            updated.last_bump = position;
        }
        let stored = self.write_event(room, &updated, event, plan, position)?;
        Ok((updated, stored, guard))
    }

    /// Writes an event and its state plan, atomically (see `event_writes`); returns the
    /// event's record.
    fn write_event(
        &self,
        room: &RoomRecord,
        updated: &RoomRecord,
        event: NewEvent<'_>,
        plan: StatePlan,
        position: u64,
    ) -> Result<StoredEvent> {
        let stored = StoredEvent {
            event_id: event.event_id.to_owned(),
            pdu: raw_pdu(&event.pdu),
            room_id: room.room_id.clone(),
            position,
            state_before: plan.state_before,
            txn: event.txn.map(|(_, device, txn)| (device.to_string(), txn.to_owned())),
            redacted_because: None,
            replaces_state: plan.replaces,
        };
        let event_bytes = encode(&stored);
        let room_bytes = encode(updated);
        let snapshot_bytes: Vec<([u8; 8], Vec<u8>)> =
            plan.snapshots.iter().map(|(id, s)| (id.to_be_bytes(), encode(s))).collect();
        let memberships_changed: Vec<(OwnedUserId, MembershipState)> = plan
            .memberships
            .into_iter()
            .chain(event.membership.map(|(user, m)| (user.to_owned(), m.clone())))
            .collect();

        // Every index write goes into one write set, the room record last: see `event_writes`.
        let record_key = room_key(room.short, position);
        let mut writes = WriteSet::default();
        writes.insert(Index::EventKeys, event.event_id.as_bytes(), record_key);
        for short in &plan.unset {
            writes.remove(Index::RoomState, room_key(room.short, *short));
        }
        for (short, id) in &plan.set {
            writes.insert(Index::RoomState, room_key(room.short, *short), id.as_bytes());
        }
        for (id, bytes) in snapshot_bytes {
            writes.insert(Index::Snapshots, id, bytes);
        }
        for (user, membership) in &memberships_changed {
            let entry = encode(&UserRoom { membership: membership.clone(), position });
            writes.insert(
                Index::Memberships,
                composite_key(&[room.room_id.as_bytes(), user.as_bytes()]),
                entry.clone(),
            );
            writes.insert(
                Index::UserRooms,
                composite_key(&[user.as_bytes(), room.room_id.as_bytes()]),
                entry,
            );
        }
        if let Some(relation) = event.relation {
            let record = Relation {
                event_id: event.event_id.to_owned(),
                rel_type: relation.rel_type.to_owned(),
                kind: relation.kind.to_owned(),
                position,
                sender: Some(relation.sender.to_owned()),
            };
            writes.insert(Index::Relations, relation_key(relation.parent, position), encode(&record));
        }
        if let Some(root) = event.thread_reply_to {
            self.thread_writes(room, root, position, &mut writes)?;
        }
        if let Some((user, device, txn)) = event.txn {
            writes.insert(Index::TxnIds, txn_ids::key(user, device, txn), txn_ids::value(event.event_id));
        }
        self.search_writes(&event.pdu, room.short, position, &mut writes);
        writes.insert(Index::Rooms, room.room_id.as_bytes(), room_bytes);
        self.write_event_and_indexes(position, &record_key, event_bytes, &writes)?;
        self.room_records.put(updated.clone(), Some((position, event.event_id.to_owned())));
        crate::metrics::metrics().events_persisted.inc();
        Ok(stored)
    }
}
