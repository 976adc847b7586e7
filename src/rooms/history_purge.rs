//! Purging a room's history before a point, for administrators (Synapse's purge history
//! API, `myelin room purge-history`) and for retention policies (`retention`).
//!
//! What goes: timeline events stored before the point that are not state events (the
//! room's state, and so who may do what in it, stays whole), not among the room's forward
//! extremities (the next event names them), and, unless asked, not sent by this server's
//! users. The room's newest event always stays. Clients then see the history start later;
//! `/messages` simply reaches the start sooner.
//!
//! Admin purges run in the background; their status is kept in memory for a day, as
//! Synapse keeps it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{OwnedEventId, RoomId, UserId};

use super::Rooms;
use crate::error::{Error, Result};

const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// Events looked at per turn of the room's append lock.
const PURGE_CHUNK: usize = 1000;

/// Where the purge stops: events before this are removed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgePoint {
    /// Before this event (which stays).
    Event(OwnedEventId),
    /// Before this time (ms since the epoch), by the events' `origin_server_ts`.
    Timestamp(u64),
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct HistoryPurge {
    pub events_removed: u64,
    /// Events before the point that stayed: state, extremities, local ones.
    pub events_kept: u64,
}

/// A background purge's progress, as Synapse's status endpoint names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStatus {
    Active,
    Complete,
    Failed(String),
}

/// The admin purges of the last day.
#[derive(Default)]
pub struct Purges(Mutex<HashMap<String, (PurgeStatus, Instant)>>);

impl Rooms {
    /// Removes the room's history before `point` (see the module docs).
    pub async fn purge_history(
        &self,
        room_id: &RoomId,
        point: &PurgePoint,
        delete_local_events: bool,
    ) -> Result<HistoryPurge> {
        let room = self.room(room_id)?;
        let before = match point {
            PurgePoint::Event(event_id) => self.purge_point_position(room_id, event_id)?,
            PurgePoint::Timestamp(ts) => self.store.first_position_since(room_id, *ts)?,
        };
        let before = before.min(room.last_position);
        let extremities = room.extremities;
        let server_name = self.server_name.clone();
        let remove = move |event_id: &OwnedEventId, pdu: &serde_json::Value| {
            let local = pdu
                .get("sender")
                .and_then(|s| s.as_str())
                .and_then(|s| <&UserId>::try_from(s).ok())
                .is_some_and(|sender| sender.server_name() == server_name);
            pdu.get("state_key").is_none()
                && !extremities.contains(event_id)
                && (delete_local_events || !local)
        };
        // Appends read the room's newest events, which a purge's end forgets: none may run
        // while a chunk is removed, and sends get a turn between chunks. Events appended
        // meanwhile are past `before`, and any extremity they replace is only kept.
        let mut purged = HistoryPurge::default();
        let mut from = 0;
        loop {
            let lock = self.append_lock(room_id);
            let held = lock.lock().await;
            let (chunk, removed, resume_at) =
                self.store.purge_history(room_id, (from, before), PURGE_CHUNK, &remove).await?;
            drop(held);
            self.events.forget(&removed);
            purged.events_removed += chunk.events;
            purged.events_kept += chunk.kept;
            match resume_at {
                Some(next) => from = next,
                None => break,
            }
        }
        tracing::info!(%room_id, removed = purged.events_removed, kept = purged.events_kept, "room history purged");
        Ok(purged)
    }

    /// The position of a purge point given as an event: one in the room's timeline.
    pub fn purge_point_position(&self, room_id: &RoomId, event_id: &OwnedEventId) -> Result<u64> {
        self.store
            .event(event_id)?
            .filter(|e| e.room_id == room_id && e.position != 0)
            .map(|e| e.position)
            .ok_or_else(|| Error::NotFound(format!("{event_id} is not in the timeline of {room_id}")))
    }

    /// Starts [`Rooms::purge_history`] in the background; returns its id for
    /// [`Rooms::purge_status`].
    pub fn start_history_purge(
        &self,
        room_id: &RoomId,
        point: PurgePoint,
        delete_local_events: bool,
    ) -> Result<String> {
        self.room(room_id)?;
        let me = self.me.upgrade().ok_or_else(|| Error::Internal("the server is stopping".to_owned()))?;
        let purge_id: String =
            rand::thread_rng().sample_iter(&Alphanumeric).take(16).map(char::from).collect();
        self.purges
            .0
            .lock()
            .expect("never poisoned")
            .insert(purge_id.clone(), (PurgeStatus::Active, Instant::now()));
        let (room_id, id) = (room_id.to_owned(), purge_id.clone());
        tokio::spawn(async move {
            let status = match me.purge_history(&room_id, &point, delete_local_events).await {
                Ok(_) => PurgeStatus::Complete,
                Err(e) => {
                    tracing::warn!(%room_id, error = %e, "room history purge failed");
                    PurgeStatus::Failed(e.to_string())
                }
            };
            me.purges.0.lock().expect("never poisoned").insert(id, (status, Instant::now()));
        });
        Ok(purge_id)
    }

    /// The status of a purge started in the last day.
    pub fn purge_status(&self, purge_id: &str) -> Option<PurgeStatus> {
        let mut all = self.purges.0.lock().expect("never poisoned");
        all.retain(|_, (status, at)| *status == PurgeStatus::Active || at.elapsed() < KEPT_FOR);
        all.get(purge_id).map(|(status, _)| status.clone())
    }
}
