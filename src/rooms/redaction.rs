//! Redactions. The auth rules let any user of the same server redact; the spec leaves it to
//! the server to require the power to redact others' events, which [`Rooms::append`] checks
//! for every redaction, whether it comes through `/redact` or `/send/m.room.redaction`.

use ruma::{EventId, OwnedEventId, RoomId, UserId, events::TimelineEventType};
use serde_json::{Value as JsonValue, json};

use super::{Error, EventSpec, Result, Rooms, Txn};
use crate::storage::RoomRecord;

impl Rooms {
    pub async fn redact(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &EventId,
        reason: Option<&str>,
        txn: Txn<'_>,
    ) -> Result<OwnedEventId> {
        self.event(target)?
            .filter(|event| event.pdu.room_id == room_id)
            .ok_or_else(|| Error::NotFound(format!("no event {target} in {room_id}")))?;
        let mut content = json!({"redacts": target});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        self.append(room_id, sender, EventSpec::message(TimelineEventType::RoomRedaction, content), Some(txn))
            .await
    }

    /// Refuses a redaction of another user's event in this room unless the sender has the
    /// power to redact. Targets this server does not have (or in other rooms) are left to
    /// the auth rules: redacting them changes nothing here.
    pub(super) fn check_may_redact(
        &self,
        room: &RoomRecord,
        sender: &UserId,
        content: &JsonValue,
    ) -> Result<()> {
        let Some(target) = content["redacts"].as_str().and_then(|id| EventId::parse(id).ok()) else {
            return Ok(());
        };
        let Some(target) = self.event(&target)? else { return Ok(()) };
        if target.pdu.room_id != room.room_id || target.pdu.sender == sender {
            return Ok(());
        }
        if self.power_levels(&room.room_id)?.user_can_redact_event_of_other(sender) {
            Ok(())
        } else {
            Err(Error::Forbidden("You may only redact your own events in this room".to_owned()))
        }
    }
}
