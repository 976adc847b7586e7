//! An event as one client sees it: the client format plus the `unsigned` data the server
//! computes per reader — age, transaction id, the redaction, the state content it replaced
//! and the aggregations of the events relating to it.

use ruma::{
    DeviceId, UserId,
    events::{TimelineEventType, room::member::MembershipState},
};
use serde::Serialize;
use serde_json::value::RawValue as RawJsonValue;

use super::{
    Event, Result, Rooms,
    relations::{ANNOTATION, REFERENCE, REPLACE, THREAD},
};
use crate::{pdu::Unsigned, storage::Relation};

/// Events bundled inside another (a thread's latest reply, an edit) carry their own
/// aggregations, but no deeper: relations cannot loop, and a client needs no more.
const MAX_NESTING: u8 = 1;

/// `unsigned["m.relations"]`: the spec's server-side aggregations.
#[derive(Serialize, Default)]
struct BundledRelations {
    #[serde(rename = "m.thread", skip_serializing_if = "Option::is_none")]
    thread: Option<ThreadSummary>,
    #[serde(rename = "m.replace", skip_serializing_if = "Option::is_none")]
    replace: Option<Box<RawJsonValue>>,
    #[serde(rename = "m.reference", skip_serializing_if = "Option::is_none")]
    reference: Option<References>,
}

#[derive(Serialize)]
struct ThreadSummary {
    latest_event: Box<RawJsonValue>,
    count: usize,
    current_user_participated: bool,
}

#[derive(Serialize)]
struct References {
    chunk: Vec<ReferenceEntry>,
}

#[derive(Serialize)]
struct ReferenceEntry {
    event_id: ruma::OwnedEventId,
}

impl Rooms {
    /// An event as a client sees it, with `transaction_id` only for the device that sent it
    /// and the aggregations of its child events.
    pub fn client_event(
        &self,
        event: &Event,
        viewer_device: Option<(&UserId, &DeviceId)>,
    ) -> Result<Box<RawJsonValue>> {
        self.client_event_nested(event, viewer_device, 0)
    }

    fn client_event_nested(
        &self,
        event: &Event,
        viewer_device: Option<(&UserId, &DeviceId)>,
        nesting: u8,
    ) -> Result<Box<RawJsonValue>> {
        let (pdu, stored) = (&event.pdu, &event.stored);
        let now: u64 = ruma::MilliSecondsSinceUnixEpoch::now().get().into();
        let transaction_id = match (&stored.txn, viewer_device) {
            (Some((device, txn_id)), Some((user, viewer)))
                if *user == *pdu.sender && viewer.as_str() == device =>
            {
                Some(txn_id.as_str())
            }
            _ => None,
        };
        let redaction =
            stored.redacted_because.as_deref().map(|because| self.event(because)).transpose()?.flatten();
        let replaced = stored.replaces_state.as_deref().map(|id| self.event(id)).transpose()?.flatten();
        let membership =
            viewer_device.map(|(user, _)| self.membership_at(event, user)).transpose()?.flatten();
        let relations = match nesting <= MAX_NESTING {
            true => self.bundled_relations(event, viewer_device, nesting)?,
            false => None,
        };
        let mut client = pdu.client_event();
        client.unsigned = Some(Unsigned {
            age: now.saturating_sub(pdu.origin_server_ts.get().into()),
            transaction_id,
            redacted_because: redaction.as_ref().map(|redaction| Box::new(redaction.pdu.client_event())),
            prev_content: replaced.as_ref().map(|replaced| &*replaced.pdu.content),
            replaces_state: stored.replaces_state.as_deref(),
            membership,
            relations,
        });
        Ok(client.to_raw_json())
    }

    /// `user`'s membership in the event's room as the event leaves it (v1.11): their
    /// current one if it was set at or before the event (the usual case, read from one index
    /// entry), else what the state at the event says; `leave` before they had any.
    fn membership_at(&self, event: &Event, user: &UserId) -> Result<Option<MembershipState>> {
        let Some(entry) = self.store.membership_entry(&event.pdu.room_id, user)? else {
            return Ok(Some(MembershipState::Leave));
        };
        if entry.position <= event.stored.position || event.stored.position == 0 {
            return Ok(Some(entry.membership));
        }
        if event.pdu.state_key.as_deref() == Some(user.as_str())
            && let Some(own) = event.pdu.membership()
        {
            return Ok(Some(own));
        }
        let state = self.state_before(&event.stored)?;
        let Some(id) = state.get(&("m.room.member".to_owned(), user.to_string())) else {
            return Ok(Some(MembershipState::Leave));
        };
        Ok(Some(self.pdu(id)?.and_then(|pdu| pdu.membership()).unwrap_or(MembershipState::Leave)))
    }

    /// The aggregations of the events relating to `event`, if it has any the spec bundles:
    /// its thread, its most recent valid edit, and the events referencing it.
    fn bundled_relations(
        &self,
        event: &Event,
        viewer_device: Option<(&UserId, &DeviceId)>,
        nesting: u8,
    ) -> Result<Option<Box<RawJsonValue>>> {
        let relations = self.store.relations(&event.pdu.event_id, None, true)?;
        if relations.iter().all(|relation| relation.rel_type == ANNOTATION) {
            return Ok(None);
        }
        let viewer = viewer_device.map(|(user, _)| user);
        let mut bundle = BundledRelations::default();
        // The spec leaves ignored users' replies out of the count and the latest reply.
        let ignored = viewer.map(|viewer| self.account_data.ignored_users(viewer)).transpose()?;
        let mut thread: Vec<&Relation> = Vec::new();
        for reply in relations.iter().filter(|r| r.rel_type == THREAD) {
            let hidden = match &ignored {
                Some(ignored) if !ignored.is_empty() => {
                    self.relation_sender(reply)?.is_some_and(|sender| ignored.contains(&sender))
                }
                _ => false,
            };
            if !hidden {
                thread.push(reply);
            }
        }
        if let Some(latest) = self.newest_existing(&thread)? {
            let participated = match viewer {
                Some(viewer) => self.took_part_in_thread(event, &thread, viewer)?,
                None => false,
            };
            bundle.thread = Some(ThreadSummary {
                latest_event: self.client_event_nested(&latest, viewer_device, nesting + 1)?,
                count: thread.len(),
                current_user_participated: participated,
            });
        }
        if let Some(edit) = self.latest_edit(event, &relations)? {
            bundle.replace = Some(self.client_event_nested(&edit, viewer_device, nesting + 1)?);
        }
        let references: Vec<ReferenceEntry> = relations
            .iter()
            .filter(|r| r.rel_type == REFERENCE)
            .map(|r| ReferenceEntry { event_id: r.event_id.clone() })
            .collect();
        if !references.is_empty() {
            bundle.reference = Some(References { chunk: references });
        }
        if bundle.thread.is_none() && bundle.replace.is_none() && bundle.reference.is_none() {
            return Ok(None);
        }
        Ok(Some(serde_json::value::to_raw_value(&bundle).expect("aggregations serialise")))
    }

    /// The newest of `relations` (in position order) whose event this server has.
    fn newest_existing(&self, relations: &[&Relation]) -> Result<Option<std::sync::Arc<Event>>> {
        for relation in relations.iter().rev() {
            if let Some(event) = self.event(&relation.event_id)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The most recent valid replacement of `original` (by `origin_server_ts`, then event
    /// id), by the spec's rules: same sender and type, neither a state event nor an edit
    /// itself, with `m.new_content`; none once the original is redacted.
    fn latest_edit(&self, original: &Event, relations: &[Relation]) -> Result<Option<std::sync::Arc<Event>>> {
        let pdu = &original.pdu;
        if original.stored.redacted_because.is_some()
            || pdu.state_key.is_some()
            || super::relations::relates_to(&pdu.content_json()).is_some_and(|r| r.rel_type == REPLACE)
        {
            return Ok(None);
        }
        let mut latest: Option<std::sync::Arc<Event>> = None;
        for relation in relations.iter().filter(|r| r.rel_type == REPLACE) {
            let Some(edit) = self.event(&relation.event_id)? else { continue };
            let valid = edit.pdu.sender == pdu.sender
                && edit.pdu.kind == pdu.kind
                && edit.pdu.state_key.is_none()
                // An encrypted edit's `m.new_content` is inside the ciphertext.
                && (edit.pdu.kind == TimelineEventType::RoomEncrypted
                    || edit.pdu.content_json().get("m.new_content").is_some_and(|c| c.is_object()));
            let newer = latest.as_ref().is_none_or(|current| {
                (edit.pdu.origin_server_ts, &edit.pdu.event_id)
                    > (current.pdu.origin_server_ts, &current.pdu.event_id)
            });
            if valid && newer {
                latest = Some(edit);
            }
        }
        Ok(latest)
    }
}
