//! Redactions requested by clients. The auth rules let any user of the same server
//! redact; the spec leaves it to the server to require the power to redact others' events.

use ruma::{EventId, OwnedEventId, RoomId, UserId, events::TimelineEventType};
use serde_json::json;

use super::{Error, EventSpec, Result, Rooms, Txn};

impl Rooms {
    pub async fn redact(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &EventId,
        reason: Option<&str>,
        txn: Txn<'_>,
    ) -> Result<OwnedEventId> {
        let (pdu, _) = self
            .event(target)?
            .filter(|(pdu, _)| pdu.room_id == room_id)
            .ok_or_else(|| Error::NotFound(format!("no event {target} in {room_id}")))?;
        if pdu.sender != sender && !self.power_levels(room_id)?.user_can_redact_event_of_other(sender) {
            return Err(Error::Forbidden("You may only redact your own events in this room".to_owned()));
        }
        let mut content = json!({"redacts": target});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        self.append(room_id, sender, EventSpec::message(TimelineEventType::RoomRedaction, content), Some(txn))
            .await
    }
}
