//! A search result's context: the visible events around it, and the profiles of their
//! senders as the room knew them at the result.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedUserId, api::client::filter::RoomEventFilter};

use super::Search;
use crate::{
    rooms::{Event, Events, Reader, Result},
    sync::filter,
};

/// How much context to add to each result (`event_context`).
#[derive(Debug, Clone, Copy)]
pub struct ContextLimits {
    pub before: usize,
    pub after: usize,
    pub include_profile: bool,
}

/// A sender's display name and avatar, from their member event in the room.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub struct Context {
    /// Newest first, as the spec's `events_before` lists them.
    pub before: Events,
    pub after: Events,
    /// Pagination tokens (for `/messages`) at either end of the context.
    pub start: String,
    pub end: String,
    pub profiles: BTreeMap<OwnedUserId, Profile>,
}

/// Context beyond this many events on either side is not read.
const MAX_CONTEXT: usize = 100;

impl Search {
    pub(super) fn context(
        &self,
        reader: &mut Reader<'_>,
        event: &Arc<Event>,
        limits: &ContextLimits,
        filter: &RoomEventFilter,
    ) -> Result<Context> {
        let position = event.stored.position;
        let (before, start) =
            self.walk(reader, event, position - 1, false, limits.before.min(MAX_CONTEXT), filter)?;
        let (after, end) = self.walk(reader, event, position, true, limits.after.min(MAX_CONTEXT), filter)?;
        let mut profiles = BTreeMap::new();
        if limits.include_profile {
            let state = self.rooms.state_before(&event.stored)?;
            for sender in std::iter::once(event).chain(&before).chain(&after).map(|e| &e.pdu.sender) {
                if profiles.contains_key(sender) {
                    continue;
                }
                let key = ("m.room.member".to_owned(), sender.to_string());
                let Some(member) = state.get(&key).map(|id| self.rooms.pdu(id)).transpose()?.flatten() else {
                    continue;
                };
                let content: serde_json::Value =
                    serde_json::from_str(member.content.get()).unwrap_or_default();
                let field = |name: &str| content.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                profiles.insert(
                    sender.clone(),
                    Profile { displayname: field("displayname"), avatar_url: field("avatar_url") },
                );
            }
        }
        Ok(Context { before, after, start: start.to_string(), end: end.to_string(), profiles })
    }

    /// Up to `limit` visible events that pass the filter, from the token `from` one way;
    /// returns them and the token after the last one read.
    fn walk(
        &self,
        reader: &mut Reader<'_>,
        event: &Event,
        from: u64,
        forwards: bool,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<(Events, u64)> {
        let room_id = &event.pdu.room_id;
        let mut found = Vec::new();
        let mut token = from;
        if limit == 0 {
            return Ok((found, token));
        }
        let stop = reader.last_position();
        let mut cursor = Some(from);
        while let Some(at) = cursor {
            let (page, next) = self.rooms.paginate(room_id, Some(at), forwards, limit)?;
            cursor = next;
            for other in page {
                let position = other.stored.position;
                if forwards && stop.is_some_and(|stop| position > stop) {
                    return Ok((found, token));
                }
                token = if forwards { position } else { position - 1 };
                if filter::matches(filter, &other.pdu) && reader.can_see(&other)? {
                    found.push(other);
                    if found.len() == limit {
                        return Ok((found, token));
                    }
                }
            }
        }
        Ok((found, token))
    }
}
