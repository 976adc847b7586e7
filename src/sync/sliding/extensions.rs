//! The extensions of a sliding sync response: to-device messages, the e2ee counts and
//! device-list changes, account data, receipts and typing.
//!
//! Account data, receipts and typing cover the rooms of the lists (in range or not) and the
//! subscriptions, as each extension's `lists` and `rooms` select: a new connection gets all
//! account data and the user's own receipts (what the client needs to tell what is
//! unread), later responses what changed since `pos`, and a room sent in full for the first
//! time its account data and the receipts on its timeline.

use std::collections::{BTreeMap, HashMap};

use ruma::{
    OwnedRoomId,
    api::client::sync::sync_events::v5::{Response, response},
    serde::Raw,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use super::{Builder, lists::Candidate, params::RoomSelection, room::SentRoom};
use crate::rooms::Result;

fn raw<T>(value: JsonValue) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("JSON values serialise"))
}

impl Builder<'_> {
    /// Fills in the extensions the request turned on; says whether they carry news for a
    /// long-poll (one-time key counts alone are not: they go with every response).
    pub(super) fn extensions(
        &self,
        response: &mut Response,
        candidates: &HashMap<&OwnedRoomId, &Candidate>,
        listed: &BTreeMap<&OwnedRoomId, Vec<&str>>,
        sent: &BTreeMap<OwnedRoomId, SentRoom>,
        upto: u64,
    ) -> Result<bool> {
        let mut news = false;
        let extensions = &self.params.extensions;
        if let Some(to_device) = &extensions.to_device {
            let (user, device) = (&self.session.user_id, &self.session.device_id);
            let batch = self.sync.e2ee.to_device_for_sync(user, device, upto, to_device.limit)?;
            let next_batch = batch.left_behind_after.unwrap_or(upto).max(to_device.since.unwrap_or(0));
            let mut part = response::ToDevice::default();
            part.next_batch = next_batch.to_string();
            news |= !batch.events.is_empty();
            part.events = batch.events.into_iter().map(raw).collect();
            response.extensions.to_device = Some(part);
        }
        if extensions.e2ee {
            self.e2ee(&mut response.extensions.e2ee, upto)?;
            news |= !response.extensions.e2ee.device_lists.is_empty();
        }
        // The rooms an extension covers, given its selection.
        let covered = |selection: &RoomSelection| -> Vec<&OwnedRoomId> {
            candidates
                .keys()
                .copied()
                .filter(|room| {
                    let in_lists = listed.get(room).map_or(&[][..], Vec::as_slice);
                    selection.covers(room, in_lists, self.params.room_subscriptions.contains_key(*room))
                })
                .collect()
        };
        if let Some(selection) = &extensions.account_data {
            self.account_data(&mut response.extensions.account_data, &covered(selection), sent, upto)?;
            news |= !response.extensions.account_data.is_empty();
        }
        if let Some(selection) = &extensions.receipts {
            for room in covered(selection) {
                let receipts = match (self.since, sent.get(room)) {
                    (_, Some(sent)) if sent.full => {
                        self.rooms.receipts_for_new_room(room, &self.session.user_id, &sent.timeline, upto)?
                    }
                    (None, _) => self.rooms.receipts_for_new_room(room, &self.session.user_id, &[], upto)?,
                    (Some(since), _) => {
                        self.rooms.receipt_event(room, &self.session.user_id, Some(since), upto)?
                    }
                };
                if let Some(receipts) = receipts {
                    response.extensions.receipts.rooms.insert(room.clone(), raw(receipts));
                }
            }
            news |= !response.extensions.receipts.is_empty();
        }
        if let Some(selection) = &extensions.typing {
            for room in covered(selection) {
                if let Some(typing) = self.rooms.typing_event(room, self.since, upto) {
                    response.extensions.typing.rooms.insert(room.clone(), raw(typing));
                }
            }
            news |= !response.extensions.typing.is_empty();
        }
        Ok(news)
    }

    /// Device-list changes since `pos`, and the device's key counts.
    fn e2ee(&self, part: &mut response::E2EE, upto: u64) -> Result<()> {
        let (user, device) = (&self.session.user_id, &self.session.device_id);
        if let Some(since) = self.since {
            let changes = self.sync.e2ee.device_list_changes(user, since, upto)?;
            part.device_lists.changed = changes.changed.into_iter().collect();
            part.device_lists.left = changes.left.into_iter().collect();
        }
        let counts = self.sync.e2ee.key_counts(user, device)?;
        part.device_one_time_keys_count = counts.one_time;
        part.device_unused_fallback_key_types = Some(counts.unused_fallback);
        Ok(())
    }

    /// Global account data (with the push rules on a new connection), and that of the
    /// covered rooms: all of it for a room sent in full, what changed since `pos` for the
    /// others.
    fn account_data(
        &self,
        part: &mut response::AccountData,
        covered: &[&OwnedRoomId],
        sent: &BTreeMap<OwnedRoomId, SentRoom>,
        upto: u64,
    ) -> Result<()> {
        let user = &self.session.user_id;
        let everything_for =
            |room: &OwnedRoomId| self.since.is_none() || sent.get(room).is_some_and(|sent| sent.full);
        let since = if covered.iter().any(|room| everything_for(room)) { None } else { self.since };
        let mut stored_rules = false;
        for (room, kind, record) in self.sync.account_data.changed(user, since, upto)? {
            let new = self.since.is_none_or(|since| record.position > since);
            stored_rules |= room.is_none() && kind == "m.push_rules";
            let event = json!({"type": kind, "content": record.content});
            match room {
                None if new => part.global.push(raw(event)),
                Some(room) if covered.contains(&&room) && (new || everything_for(&room)) => {
                    part.rooms.entry(room).or_default().push(raw(event));
                }
                _ => {}
            }
        }
        // Clients read their push rules from here; before any change they are the defaults.
        if self.since.is_none() && !stored_rules {
            let content = self.sync.push.rules_content(user)?;
            let event = format!(r#"{{"type":"m.push_rules","content":{}}}"#, content.get());
            part.global.push(Raw::from_json(
                RawJsonValue::from_string(event).expect("an object around valid JSON is valid JSON"),
            ));
        }
        Ok(())
    }
}
