//! Relations between events (`m.relates_to`): which ones a local user may create, the
//! thread an event belongs to, and walks over the events relating to a parent, directly or
//! through other relations.

use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId, events::TimelineEventType};
use serde_json::Value as JsonValue;

use super::{Error, Events, Result, Rooms};
use crate::storage::Relation;

pub const THREAD: &str = "m.thread";
pub const REPLACE: &str = "m.replace";
pub const REFERENCE: &str = "m.reference";
pub const ANNOTATION: &str = "m.annotation";

/// How many relations deep the thread of an event and recursive `/relations` look: the
/// spec recommends (and, for `recurse`, requires at least) three.
pub const MAX_HOPS: usize = 3;

/// The parent and relation type an event's `m.relates_to` names (a rich reply's
/// `m.in_reply_to` has no `rel_type`, and is not a relation the server tracks).
pub(super) struct RelatesTo {
    pub parent: OwnedEventId,
    pub rel_type: String,
}

pub(super) fn relates_to(content: &JsonValue) -> Option<RelatesTo> {
    let relates_to = &content["m.relates_to"];
    let parent = EventId::parse(relates_to["event_id"].as_str()?).ok()?;
    Some(RelatesTo { parent, rel_type: relates_to["rel_type"].as_str()?.to_owned() })
}

impl Rooms {
    /// Refuses a local user's new event whose relation cannot stand: a parent in another
    /// room, or one the server has never seen nor seen related to; a second reaction with the
    /// same key; a thread started off an event that itself relates to another.
    pub(super) fn check_new_relation(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        kind: &TimelineEventType,
        content: &JsonValue,
    ) -> Result<()> {
        let Some(relation) = relates_to(content) else { return Ok(()) };
        let siblings = self.store.relations(&relation.parent, None, true)?;
        match self.event(&relation.parent)? {
            Some(parent) if parent.pdu.room_id != room_id => {
                return Err(Error::BadRequest(
                    "an event can only relate to an event in its own room".to_owned(),
                ));
            }
            Some(parent)
                if relation.rel_type == THREAD && relates_to(&parent.pdu.content_json()).is_some() =>
            {
                return Err(Error::BadRequest(
                    "a thread cannot start from an event that relates to another".to_owned(),
                ));
            }
            Some(_) => {}
            // The client cannot know of an event the server has never seen, unless others
            // relate to it (its server may have sent the relations but not the event).
            None if siblings.is_empty() => {
                return Err(Error::BadRequest(format!("no event {} to relate to", relation.parent)));
            }
            None => {}
        }
        if relation.rel_type == ANNOTATION {
            let key = &content["m.relates_to"]["key"];
            for sibling in siblings.iter().filter(|s| s.rel_type == ANNOTATION && s.kind == kind.to_string())
            {
                if self.relation_sender(sibling)?.as_deref() != Some(sender) {
                    continue;
                }
                if let Some(event) = self.event(&sibling.event_id)?
                    && event.pdu.content_json()["m.relates_to"]["key"] == *key
                {
                    return Err(Error::DuplicateAnnotation(format!(
                        "{sender} already reacted to {} with this key",
                        relation.parent
                    )));
                }
            }
        }
        Ok(())
    }

    /// Who sent a relating event: recorded with the relation, or (in records written
    /// before it was) read from the event.
    pub(super) fn relation_sender(&self, relation: &Relation) -> Result<Option<OwnedUserId>> {
        if let Some(sender) = &relation.sender {
            return Ok(Some(sender.clone()));
        }
        Ok(self.event(&relation.event_id)?.map(|event| event.pdu.sender.clone()))
    }

    /// The thread an event with this content is in: the root it replies to with `m.thread`,
    /// or, for another relation, the thread of its parent (a reaction to a thread reply is in
    /// the thread), up to [`MAX_HOPS`] relations up. `None`: the main timeline, where thread
    /// roots themselves are.
    pub(super) fn thread_of(&self, content: &JsonValue) -> Result<Option<OwnedEventId>> {
        self.thread_of_relation(relates_to(content).as_ref())
    }

    /// [`Rooms::thread_of`] from the relation an event's content names.
    pub(super) fn thread_of_relation(&self, relation: Option<&RelatesTo>) -> Result<Option<OwnedEventId>> {
        let Some(first) = relation else { return Ok(None) };
        if first.rel_type == THREAD {
            return Ok(Some(first.parent.clone()));
        }
        let mut relation =
            self.event(&first.parent)?.and_then(|parent| relates_to(&parent.pdu.content_json()));
        for _ in 1..MAX_HOPS {
            let Some(current) = relation else { return Ok(None) };
            if current.rel_type == THREAD {
                return Ok(Some(current.parent));
            }
            relation = self.event(&current.parent)?.and_then(|parent| relates_to(&parent.pdu.content_json()));
        }
        Ok(None)
    }

    /// Events relating to `parent` (optionally of one `rel_type` and event type), in
    /// position order from the `from` position, newest first unless `forwards`. With
    /// `recurse`, also events relating to those, up to [`MAX_HOPS`] relations away (the
    /// filters apply to every event returned). Returns the events and how deep it looked.
    pub fn relations(
        &self,
        parent: &EventId,
        filter: RelationFilter<'_>,
        from: Option<u64>,
        forwards: bool,
    ) -> Result<(Events, usize)> {
        let mut found: Vec<Relation> = Vec::new();
        let mut level = vec![parent.to_owned()];
        let depth = if filter.recurse { MAX_HOPS } else { 1 };
        for _ in 0..depth {
            let mut next = Vec::new();
            for parent in &level {
                // Not limited by `from` here: a reply to an event before `from` may be after it.
                for relation in self.store.relations(parent, None, true)? {
                    next.push(relation.event_id.clone());
                    found.push(relation);
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        found.retain(|relation| match from {
            Some(from) if forwards => relation.position > from,
            Some(from) => relation.position < from,
            None => true,
        });
        found.sort_by_key(|relation| relation.position);
        found.dedup_by_key(|relation| relation.position);
        if !forwards {
            found.reverse();
        }
        let mut events = Vec::new();
        for relation in found {
            let wanted = filter.rel_type.is_none_or(|r| r == relation.rel_type)
                && filter.kind.is_none_or(|k| k == relation.kind);
            if wanted && let Some(event) = self.event(&relation.event_id)? {
                events.push(event);
            }
        }
        Ok((events, depth))
    }
}

/// Which relations `/relations` asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelationFilter<'a> {
    pub rel_type: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub recurse: bool,
}
