//! Reading a room's state: current state and the state before or after an event.

use std::sync::Arc;

use ruma::{EventId, OwnedEventId, RoomId, events::StateEventType};
use serde_json::Value as JsonValue;

use super::{Error, Pdu, Result, Rooms, StoredPdu};
use crate::storage::{RoomRecord, StateMap, StoredEvent};

impl Rooms {
    /// A stored event exactly as stored (signed, or redacted), with its room and version.
    pub fn stored_pdu(&self, event_id: &EventId) -> Result<Option<StoredPdu>> {
        let Some(stored) = self.store.event(event_id)? else { return Ok(None) };
        let room = self.room(&stored.room_id)?;
        Ok(Some(StoredPdu {
            pdu: stored.pdu_json(),
            room_id: stored.room_id,
            room_version: room.version,
            redacted_because: stored.redacted_because,
        }))
    }

    /// A stored event as a [`Pdu`].
    pub fn pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        Ok(self.event(event_id)?.map(|event| event.pdu.clone()))
    }

    pub(super) fn current_state_pdu(
        &self,
        room: &RoomRecord,
        kind: &StateEventType,
        state_key: &str,
    ) -> Option<Pdu> {
        let id = self.store.current_state_event(room, &kind.to_string(), state_key).ok()??;
        self.pdu(&id).ok()?
    }

    /// The id of one current state event, if set.
    pub fn current_state_event_id(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        let room = self.room(room_id)?;
        Ok(self.store.current_state_event(&room, kind, state_key)?)
    }

    /// The content of one current state event, if set.
    pub fn state_content(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<JsonValue>> {
        let room = self.room(room_id)?;
        Ok(self.current_state_pdu(&room, kind, state_key).map(|pdu| pdu.content_json()))
    }

    /// The room's current state events.
    pub fn current_state(&self, room_id: &RoomId) -> Result<Vec<Pdu>> {
        let room = self.room(room_id)?;
        self.pdus(self.store.current_state(&room)?.into_values())
    }

    /// The state before an event.
    pub fn state_before(&self, stored: &StoredEvent) -> Result<Arc<StateMap>> {
        let Some(snapshot) = stored.state_before else { return Ok(Arc::default()) };
        if let Some(state) = self.state_snapshots.get(snapshot) {
            return Ok(state);
        }
        let state = Arc::new(self.store.state_at(snapshot)?);
        self.state_snapshots.insert(snapshot, state.clone());
        Ok(state)
    }

    pub fn pdus(&self, ids: impl IntoIterator<Item = OwnedEventId>) -> Result<Vec<Pdu>> {
        ids.into_iter()
            .map(|id| self.pdu(&id)?.ok_or_else(|| Error::Internal(format!("state event {id} missing"))))
            .collect()
    }

    /// The room's state after every event at or before `position` (empty before the room
    /// existed).
    pub fn state_at_position(&self, room_id: &RoomId, position: u64) -> Result<StateMap> {
        let room = self.room(room_id)?;
        let Some((_, last)) = self.store.timeline(&room, position.saturating_add(1), false, 1)?.pop() else {
            return Ok(StateMap::new());
        };
        self.state_after(&last)
    }

    /// The room's state after an event: the state before it plus the event itself.
    pub(super) fn state_after(&self, event_id: &EventId) -> Result<StateMap> {
        let event =
            self.event(event_id)?.ok_or_else(|| Error::Internal(format!("event {event_id} missing")))?;
        let mut state = Arc::unwrap_or_clone(self.state_before(&event.stored)?);
        if let Some(state_key) = &event.pdu.state_key {
            state.insert((event.pdu.kind.to_string(), state_key.clone()), event.pdu.event_id.clone());
        }
        Ok(state)
    }
}
