//! Shadow bans: an administrator's way to quiet a spammer without telling them. A
//! shadow-banned user's messages, state events and invites are answered as if they had
//! worked, and reach nobody.

use rand::{Rng, distributions::Alphanumeric};
use ruma::{EventId, OwnedEventId, RoomId, UserId};

use super::{EventSpec, Rooms, Txn};
use crate::error::Result;

impl Rooms {
    /// A local user's event from a client: [`Rooms::append`], unless the sender is
    /// shadow-banned; then the event is dropped and a made-up id answers for it.
    pub async fn send(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        spec: EventSpec,
        txn: Option<Txn<'_>>,
    ) -> Result<OwnedEventId> {
        if self.swallows(sender)? {
            // A room that does not exist is still an error, as it would be for anyone.
            self.room(room_id)?;
            return Ok(made_up_event_id());
        }
        self.append(room_id, sender, spec, txn).await
    }

    /// Whether what `sender` sends is to be dropped.
    pub(super) fn swallows(&self, sender: &UserId) -> Result<bool> {
        let banned = self.accounts.is_shadow_banned(sender)?;
        if banned {
            tracing::info!(%sender, "dropped what a shadow-banned user sent");
        }
        Ok(banned)
    }
}

/// An id shaped like a real one (`$` and 43 URL-safe characters, as a reference hash),
/// so that nothing tells the sender their event went nowhere.
fn made_up_event_id() -> OwnedEventId {
    let hash: String = rand::thread_rng().sample_iter(&Alphanumeric).take(43).map(char::from).collect();
    EventId::parse(format!("${hash}")).expect("a $ and alphanumerics make an event id")
}
