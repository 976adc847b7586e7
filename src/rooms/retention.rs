//! Message retention (MSC1763, as Synapse has it): a room keeps its events for its own
//! `m.room.retention` `max_lifetime`, held to the server's bounds, or for the server's
//! default; a periodic purge removes what is older, through the history purge (state
//! events and each room's newest event stay). Events of every server go, this one's too:
//! the room asked for it.

use ruma::events::StateEventType;

use super::{PurgePoint, Rooms};
use crate::{config::RetentionConfig, error::Result};

/// What one pass of the purge did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetentionPass {
    pub rooms_purged: u64,
    pub events_removed: u64,
}

impl Rooms {
    /// Purges, in every room with a lifetime, the events older than it.
    pub async fn purge_expired(&self, config: &RetentionConfig) -> Result<RetentionPass> {
        let mut pass = RetentionPass::default();
        let kind = StateEventType::from("m.room.retention");
        for room_id in self.store.room_ids()? {
            let own = self
                .state_content(&room_id, &kind, "")?
                .and_then(|content| content.get("max_lifetime").and_then(|v| v.as_u64()));
            let Some(lifetime) = config.lifetime_of(own) else { continue };
            let cutoff =
                crate::now_ms().saturating_sub(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX));
            let purged = self.purge_history(&room_id, &PurgePoint::Timestamp(cutoff), true).await?;
            if purged.events_removed > 0 {
                pass.rooms_purged += 1;
                pass.events_removed += purged.events_removed;
            }
        }
        Ok(pass)
    }
}
