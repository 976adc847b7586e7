//! What a push gateway is told about one event, for one pusher: the push gateway API's
//! `notification` object.

use std::{collections::VecDeque, sync::Mutex};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, SecondsSinceUnixEpoch, UInt,
    api::push_gateway::send_event_notification::v1::{
        Device, Notification, NotificationCounts, NotificationPriority, PusherData,
    },
    events::TimelineEventType,
    push::{Action, HighlightTweakValue, HttpPusherData, PushFormat, Tweak},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};
use std::sync::Arc;

use crate::{
    error::Result,
    storage::{PusherKey, PusherState, Store},
};

/// The parts of an event every recipient's notification shares, read once per event.
#[derive(Debug)]
pub struct PushedEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    event_type: TimelineEventType,
    sender: OwnedUserId,
    state_key: Option<String>,
    content: Box<RawJsonValue>,
    /// The sender's display name in the room now (the notification is about to be shown).
    sender_display_name: Option<String>,
    /// The room's `m.room.name`, or else its canonical alias.
    room_name: Option<String>,
}

/// How many events' shared parts are kept: a message to a big room is read once, while
/// every member's pusher delivers it.
const KEPT_EVENTS: usize = 32;

/// The last events pushers delivered, with what their notifications share.
#[derive(Default)]
pub struct PushedEvents(Mutex<VecDeque<Arc<PushedEvent>>>);

impl PushedEvents {
    /// The event's shared parts; `None` if the event is not stored.
    pub fn get(&self, store: &Store, event_id: &OwnedEventId) -> Result<Option<Arc<PushedEvent>>> {
        if let Some(event) = self.0.lock().expect("never poisoned").iter().find(|e| &e.event_id == event_id) {
            return Ok(Some(event.clone()));
        }
        let Some(event) = read(store, event_id)? else { return Ok(None) };
        let event = Arc::new(event);
        let mut kept = self.0.lock().expect("never poisoned");
        if kept.len() == KEPT_EVENTS {
            kept.pop_front();
        }
        kept.push_back(event.clone());
        Ok(Some(event))
    }
}

fn read(store: &Store, event_id: &OwnedEventId) -> Result<Option<PushedEvent>> {
    let Some(stored) = store.event(event_id)? else { return Ok(None) };
    let pdu: JsonValue = serde_json::from_str(stored.pdu.get()).unwrap_or_default();
    let (Some(kind), Some(sender)) = (pdu["type"].as_str(), pdu["sender"].as_str()) else { return Ok(None) };
    let Ok(sender) = OwnedUserId::try_from(sender) else { return Ok(None) };
    let state_content = |kind: &str, key: &str| -> Result<Option<JsonValue>> {
        let Some(room) = store.room(&stored.room_id)? else { return Ok(None) };
        let Some(id) = store.current_state_event(&room, kind, key)? else { return Ok(None) };
        Ok(store
            .event(&id)?
            .and_then(|e| serde_json::from_str::<JsonValue>(e.pdu.get()).ok())
            .map(|e| e["content"].clone()))
    };
    let text = |content: Option<JsonValue>, field: &str| {
        content.and_then(|c| c[field].as_str().map(str::to_owned)).filter(|s| !s.is_empty())
    };
    let sender_display_name = text(state_content("m.room.member", sender.as_str())?, "displayname");
    let room_name = match text(state_content("m.room.name", "")?, "name") {
        Some(name) => Some(name),
        None => text(state_content("m.room.canonical_alias", "")?, "alias"),
    };
    let content = serde_json::value::to_raw_value(&pdu["content"]).unwrap_or_else(|_| empty_object());
    Ok(Some(PushedEvent {
        event_id: stored.event_id,
        room_id: stored.room_id,
        event_type: kind.into(),
        sender,
        state_key: pdu["state_key"].as_str().map(str::to_owned),
        content,
        sender_display_name,
        room_name,
    }))
}

fn empty_object() -> Box<RawJsonValue> {
    RawJsonValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// The gateway's view of one pusher: where to send and what to say about the device.
pub struct Target {
    pub key: PusherKey,
    pub data: HttpPusherData,
}

impl Target {
    fn event_id_only(&self) -> bool {
        self.data.format == Some(PushFormat::EventIdOnly)
    }

    /// The device entry: the pusher's `data` without `url` (the spec asks for the rest as the
    /// client set it), and the tweaks of the rule that matched.
    fn device(&self, state: &PusherState, tweaks: Vec<Tweak>) -> Device {
        let mut device = Device::new(self.key.app_id.clone(), self.key.pushkey.clone());
        device.pushkey_ts = Some(SecondsSinceUnixEpoch(UInt::new_saturating(state.set_at_ms / 1000)));
        device.data = PusherData::from(self.data.clone());
        device.tweaks = tweaks;
        device
    }

    /// The notification about `event` for this pusher, with the push rule's `actions` and the
    /// user's badge count.
    pub fn event_notification(
        &self,
        state: &PusherState,
        event: &PushedEvent,
        actions: &JsonValue,
        badge: u64,
        include_content: bool,
    ) -> Notification {
        let actions: Vec<Action> = serde_json::from_value(actions.clone()).unwrap_or_default();
        let tweaks: Vec<Tweak> = actions
            .into_iter()
            .filter_map(|action| match action {
                Action::SetTweak(tweak) => Some(tweak),
                _ => None,
            })
            .collect();
        // Apps ring for what is high priority: what the rules made loud (a sound or a
        // highlight), and encrypted events, which only the app can read to decide.
        let loud =
            tweaks.iter().any(|t| matches!(t, Tweak::Highlight(HighlightTweakValue::Yes) | Tweak::Sound(_)));
        let high = loud || event.event_type == TimelineEventType::RoomEncrypted;
        // With `event_id_only` the app fetches the event and applies the tweaks itself.
        let tweaks = if self.event_id_only() { Vec::new() } else { tweaks };
        let mut notification = Notification::new(vec![self.device(state, tweaks)]);
        notification.event_id = Some(event.event_id.clone());
        notification.room_id = Some(event.room_id.clone());
        notification.prio = if high { NotificationPriority::High } else { NotificationPriority::Low };
        notification.counts = NotificationCounts::new(UInt::new_saturating(badge), UInt::MIN);
        if self.event_id_only() {
            return notification;
        }
        notification.event_type = Some(event.event_type.clone());
        notification.sender = Some(event.sender.clone());
        notification.sender_display_name = event.sender_display_name.clone();
        notification.room_name = event.room_name.clone();
        notification.user_is_target = event.event_type == TimelineEventType::RoomMember
            && event.state_key.as_deref() == Some(self.key.user_id.as_str());
        if include_content {
            notification.content = Some(event.content.clone());
        }
        notification
    }

    /// A notification that only updates the badge (sent when the user reads elsewhere).
    pub fn badge_notification(&self, state: &PusherState) -> Notification {
        Notification::new(vec![self.device(state, Vec::new())])
    }
}
