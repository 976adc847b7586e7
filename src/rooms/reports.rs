//! Reports of rooms and events to the server's administrators.

use ruma::{EventId, RoomId, UserId, events::room::member::MembershipState};

use super::{Error, Result, Rooms};
use crate::{now_ms, storage::Report};

impl Rooms {
    /// Reports an event. Only members may (spec), and an event that does not exist or that
    /// the reporter cannot be in the room of is "not found" either way, hiding which.
    pub async fn report_event(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
    ) -> Result<()> {
        let not_found = || Error::NotFound("no such event, or you are not joined to its room".to_owned());
        if self.membership(room_id, reporter).ok().flatten() != Some(MembershipState::Join) {
            return Err(not_found());
        }
        self.event(event_id)?.filter(|event| event.pdu.room_id == room_id).ok_or_else(not_found)?;
        self.file_report(reporter, room_id, Some(event_id), reason).await
    }

    /// Reports a whole room (any user may, of any room this server knows).
    pub async fn report_room(&self, reporter: &UserId, room_id: &RoomId, reason: String) -> Result<()> {
        self.room(room_id)?;
        self.file_report(reporter, room_id, None, Some(reason)).await
    }

    async fn file_report(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: Option<&EventId>,
        reason: Option<String>,
    ) -> Result<()> {
        let report = Report {
            reporter: reporter.to_owned(),
            room_id: room_id.to_owned(),
            event_id: event_id.map(ToOwned::to_owned),
            reason,
            ts: now_ms(),
        };
        self.store.add_report(&report).await?;
        tracing::warn!(%reporter, room = %room_id, event = ?event_id, "content reported");
        Ok(())
    }
}
