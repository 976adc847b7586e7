//! Reading a room's timeline: pages of it (`/messages`), the events of a sync's range,
//! and the event nearest a time.

use std::sync::Arc;

use ruma::{OwnedEventId, RoomId};

use super::{Event, Events, Result, Rooms};

impl Rooms {
    /// A page of the room's timeline. `from` is a pagination token (a position boundary);
    /// `None` starts from the newest event backwards or the oldest forwards. Returns the
    /// events and the token for the next page (`None` at either end).
    pub fn paginate(
        &self,
        room_id: &RoomId,
        from: Option<u64>,
        forwards: bool,
        limit: usize,
    ) -> Result<(Events, Option<u64>)> {
        let room = self.room(room_id)?;
        // Token t stands for the gap just after position t.
        let from = from.unwrap_or(if forwards { 0 } else { u64::MAX - 1 });
        let entries = if forwards {
            self.store.timeline(&room, from, true, limit)?
        } else {
            self.store.timeline(&room, from.saturating_add(1), false, limit)?
        };
        let next = match entries.last() {
            Some((position, _)) if entries.len() == limit => {
                Some(if forwards { *position } else { position.saturating_sub(1) })
            }
            _ => None,
        };
        let mut events = Vec::with_capacity(entries.len());
        for (_, id) in entries {
            if let Some(event) = self.event(&id)? {
                events.push(event);
            }
        }
        Ok((events, next))
    }

    /// The room's events with positions in `(after, upto]`, newest first, as they are
    /// stored (for callers that filter as they go).
    pub fn events_before(
        &self,
        room_id: &RoomId,
        upto: u64,
        after: u64,
    ) -> Result<impl Iterator<Item = Result<Arc<Event>>> + '_> {
        let room = self.room(room_id)?;
        let mut cursor = upto.saturating_add(1);
        let mut page: std::vec::IntoIter<(u64, OwnedEventId)> = Vec::new().into_iter();
        let mut done = false;
        // Most callers want a sync's worth (ten or so) and sled's reverse scans are slow per
        // step: start with a small page, then read larger ones.
        let mut page_size = 16;
        // An incremental sync's window usually holds a few events: when it fits in one page,
        // read it forwards, which sled does far more cheaply than backwards.
        if after > 0 {
            let window = self.store.timeline(&room, after, true, page_size)?;
            if window.len() < page_size || window.last().is_some_and(|(position, _)| *position > upto) {
                let newest_first: Vec<_> =
                    window.into_iter().filter(|(position, _)| *position <= upto).rev().collect();
                page = newest_first.into_iter();
                done = true;
            }
        }
        Ok(std::iter::from_fn(move || {
            loop {
                if let Some((position, id)) = page.next() {
                    if position <= after {
                        done = true;
                        return None;
                    }
                    cursor = position;
                    return match self.event(&id) {
                        Ok(Some(event)) => Some(Ok(event)),
                        Ok(None) => continue,
                        Err(e) => Some(Err(e)),
                    };
                }
                if done {
                    return None;
                }
                match self.store.timeline(&room, cursor, false, page_size) {
                    Ok(next) if next.is_empty() => return None,
                    Ok(next) => {
                        page = next.into_iter();
                        page_size = 128;
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e.into()));
                    }
                }
            }
        }))
    }

    /// The pagination token for "after the newest event".
    pub fn latest_position(&self, room_id: &RoomId) -> Result<u64> {
        Ok(self.store.latest_position(&self.room(room_id)?)?)
    }

    /// The event closest to `ts` that `accept` lets through: the last one at or before it
    /// (`forwards == false`) or the first one at or after it. Walks the timeline newest first.
    pub fn event_at_timestamp(
        &self,
        room_id: &RoomId,
        ts: u64,
        forwards: bool,
        mut accept: impl FnMut(&Event) -> Result<bool>,
    ) -> Result<Option<Arc<Event>>> {
        let room = self.room(room_id)?;
        let mut best = None;
        let mut cursor = u64::MAX;
        loop {
            let page = self.store.timeline(&room, cursor, false, 256)?;
            let Some((last, _)) = page.last() else { break };
            cursor = *last;
            for (_, id) in &page {
                let Some(event) = self.event(id)? else { continue };
                let event_ts: u64 = event.pdu.origin_server_ts.get().into();
                if forwards && event_ts < ts {
                    return Ok(best);
                }
                if (forwards || event_ts <= ts) && accept(&event)? {
                    if !forwards {
                        return Ok(Some(event));
                    }
                    best = Some(event);
                }
            }
        }
        Ok(best)
    }
}
