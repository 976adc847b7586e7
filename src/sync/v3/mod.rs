//! Building one `/sync` (v3) response for a user, from `since` up to the visible position.
//! Building only reads: acknowledging to-device messages happens before, in
//! [`super::Sync::sync`].

mod rooms;

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId,
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::v3::{GlobalAccountData, Response},
    },
    events::{AnyGlobalAccountDataEvent, AnyRoomAccountDataEvent},
    presence::PresenceState,
    serde::Raw,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use super::{SyncToken, filter};
use crate::{
    account_data::AccountData,
    accounts::Session,
    e2ee::{E2ee, TO_DEVICE_PER_SYNC},
    presence::Presence,
    push::Push,
    rooms::{Result, Rooms},
    storage::Store,
};

/// What the client asked for.
pub struct SyncParams {
    pub since: Option<SyncToken>,
    /// Presence to set for the user while they sync (`offline` leaves it alone).
    pub set_presence: PresenceState,
    pub full_state: bool,
    /// Boxed: a long-poll keeps its parameters for its whole wait, and a filter is 1 KiB inline.
    pub filter: Box<FilterDefinition>,
}

fn raw<T>(value: JsonValue) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("JSON values serialise"))
}

pub struct Builder<'a> {
    pub store: &'a Store,
    pub rooms: &'a Rooms,
    pub account_data: &'a AccountData,
    pub push: &'a Push,
    pub e2ee: &'a E2ee,
    pub presence: &'a Presence,
    pub session: &'a Session,
    pub params: &'a SyncParams,
}

/// Account data changed in the sync's range, as the filter lets through.
struct AccountDataChanges {
    global: Vec<Raw<AnyGlobalAccountDataEvent>>,
    by_room: BTreeMap<OwnedRoomId, Vec<Raw<AnyRoomAccountDataEvent>>>,
}

impl Builder<'_> {
    pub fn build(&self) -> Result<Response> {
        let upto = self.store.visible_position();
        let since = self.params.since.map(|s| s.position.min(upto));
        let mut account_data = self.account_data_changes(since, upto)?;
        let mut response = Response::new(String::new());
        response.rooms = self.rooms(since, upto, &mut account_data.by_room)?;
        response.account_data = GlobalAccountData::new();
        response.account_data.events = account_data.global;
        response.presence.events =
            self.presence.events_for(&self.session.user_id, since, upto)?.into_iter().map(raw).collect();
        let left_behind_after = self.e2ee_sections(&mut response, since, upto)?;
        response.next_batch = SyncToken { position: upto, to_device: left_behind_after }.to_string();
        Ok(response)
    }

    /// Global and per-room account data changed in `(since, upto]`, as the filter lets
    /// through; an initial sync also gets the push rules before they were ever changed.
    fn account_data_changes(&self, since: Option<u64>, upto: u64) -> Result<AccountDataChanges> {
        let user = &self.session.user_id;
        let room_filter = &self.params.filter.room.account_data;
        let global_filter = &self.params.filter.account_data;
        let mut changes = AccountDataChanges { global: Vec::new(), by_room: BTreeMap::new() };
        for (room, kind, record) in self.account_data.changed(user, since, upto)? {
            let event = json!({"type": kind, "content": record.content});
            match room {
                Some(room)
                    if filter::allows_room(room_filter, &room) && filter::allows_type(room_filter, &kind) =>
                {
                    changes.by_room.entry(room).or_default().push(raw(event));
                }
                None if filter::global_allows_type(global_filter, &kind) => changes.global.push(raw(event)),
                _ => {}
            }
        }
        // Clients read their push rules from here; before any change they are the defaults.
        if since.is_none()
            && filter::global_allows_type(global_filter, "m.push_rules")
            && self.store.account_data(user, None, "m.push_rules")?.is_none()
        {
            let content = self.push.rules_content(user)?;
            let event = format!(r#"{{"type":"m.push_rules","content":{}}}"#, content.get());
            changes.global.push(Raw::from_json(
                RawJsonValue::from_string(event).expect("an object around valid JSON is valid JSON"),
            ));
        }
        Ok(changes)
    }

    /// To-device messages, device-list changes and key counts; returns the position of the
    /// last to-device message when more wait behind it.
    fn e2ee_sections(&self, response: &mut Response, since: Option<u64>, upto: u64) -> Result<Option<u64>> {
        let (user, device) = (&self.session.user_id, &self.session.device_id);
        let to_device = self.e2ee.to_device_for_sync(user, device, upto, TO_DEVICE_PER_SYNC)?;
        response.to_device.events = to_device.events.into_iter().map(raw).collect();
        if let Some(since) = since {
            let changes = self.e2ee.device_list_changes(user, since, upto)?;
            response.device_lists.changed = changes.changed.into_iter().collect();
            response.device_lists.left = changes.left.into_iter().collect();
        }
        let counts = self.e2ee.key_counts(user, device)?;
        response.device_one_time_keys_count = counts.one_time;
        response.device_unused_fallback_key_types = Some(counts.unused_fallback);
        Ok(to_device.left_behind_after)
    }
}

/// Whether a response carries nothing for the client, so a long-poll should keep waiting.
pub fn is_empty(response: &Response) -> bool {
    response.rooms.is_empty()
        && response.account_data.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
        && response.presence.is_empty()
}
