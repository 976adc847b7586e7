//! A PDU read back from storage, in the shape `ruma::state_res` checks and clients receive.

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    events::{TimelineEventType, room::member::MembershipState},
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

/// The fields of a PDU that authorization and clients need. The signed JSON it came from
/// stays in storage untouched.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// Absent only from `m.room.create` in room versions whose room id is the create
    /// event's hash; [`Pdu::room_id`] is filled in for serving to clients regardless.
    pub room_id: OwnedRoomId,
    room_id_in_pdu: bool,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    /// `redacts`, from the top level (room versions before 11) or the content (11 and later).
    pub redacts: Option<OwnedEventId>,
    pub depth: UInt,
}

#[derive(Deserialize)]
struct Wire {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<OwnedEventId>,
    #[serde(default)]
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: UInt,
}

#[derive(Deserialize)]
struct ContentRedacts {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    /// Parses a stored or newly built PDU. `room_id` is the room it belongs to (needed when
    /// the PDU itself does not say).
    pub fn from_json(event_id: OwnedEventId, room_id: &RoomId, pdu: &JsonValue) -> Result<Self, String> {
        let wire = Wire::deserialize(pdu).map_err(|e| format!("malformed PDU {event_id}: {e}"))?;
        Ok(Self::from_wire(event_id, room_id, wire))
    }

    /// [`Pdu::from_json`] from the raw JSON, as stored.
    pub fn from_raw(event_id: OwnedEventId, room_id: &RoomId, pdu: &RawJsonValue) -> Result<Self, String> {
        let wire: Wire =
            serde_json::from_str(pdu.get()).map_err(|e| format!("malformed PDU {event_id}: {e}"))?;
        Ok(Self::from_wire(event_id, room_id, wire))
    }

    fn from_wire(event_id: OwnedEventId, room_id: &RoomId, wire: Wire) -> Self {
        let redacts = wire.redacts.or_else(|| {
            serde_json::from_str::<ContentRedacts>(wire.content.get()).ok().and_then(|c| c.redacts)
        });
        Self {
            event_id,
            room_id_in_pdu: wire.room_id.is_some(),
            room_id: wire.room_id.unwrap_or_else(|| room_id.to_owned()),
            sender: wire.sender,
            origin_server_ts: wire.origin_server_ts,
            kind: wire.kind,
            content: wire.content,
            state_key: wire.state_key,
            prev_events: wire.prev_events,
            auth_events: wire.auth_events,
            redacts,
            depth: wire.depth,
        }
    }

    pub fn content_json(&self) -> JsonValue {
        serde_json::from_str(self.content.get()).unwrap_or(JsonValue::Null)
    }

    /// The `membership` of an `m.room.member` event (`None` for other events, or without a
    /// string there).
    pub fn membership(&self) -> Option<MembershipState> {
        #[derive(Deserialize)]
        struct Member {
            membership: MembershipState,
        }
        if self.kind != TimelineEventType::RoomMember {
            return None;
        }
        serde_json::from_str::<Member>(self.content.get()).ok().map(|member| member.membership)
    }

    /// The event in the client-server API's format, without `unsigned` (which depends on
    /// who asks and when).
    pub fn client_event(&self) -> ClientEvent<'_> {
        ClientEvent {
            kind: &self.kind,
            content: &self.content,
            event_id: &self.event_id,
            sender: &self.sender,
            origin_server_ts: self.origin_server_ts,
            room_id: &self.room_id,
            state_key: self.state_key.as_deref(),
            redacts: self.redacts.as_deref(),
            unsigned: None,
        }
    }
}

/// A PDU in the client-server API's format, serialised straight from the parsed fields and
/// the content's raw JSON: responses carry many events, and building each as a JSON tree
/// first was a large part of a sync's cost.
#[derive(Serialize)]
pub struct ClientEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a TimelineEventType,
    content: &'a RawJsonValue,
    event_id: &'a EventId,
    sender: &'a UserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    room_id: &'a RoomId,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a EventId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigned: Option<Unsigned<'a>>,
}

/// What the server adds to an event for one reader.
#[derive(Serialize)]
pub struct Unsigned<'a> {
    pub age: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted_because: Option<Box<ClientEvent<'a>>>,
    /// For a state event, the content of the one it replaced, and that event's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_content: Option<&'a RawJsonValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces_state: Option<&'a EventId>,
    /// The reader's membership in the room when the event was sent (v1.11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipState>,
    /// The aggregations of the events relating to this one (`m.relations`).
    #[serde(rename = "m.relations", skip_serializing_if = "Option::is_none")]
    pub relations: Option<Box<RawJsonValue>>,
}

impl ClientEvent<'_> {
    pub fn to_raw_json(&self) -> Box<RawJsonValue> {
        serde_json::value::to_raw_value(self).expect("client events serialise")
    }

    pub fn to_raw<T>(&self) -> Raw<T> {
        Raw::from_json(self.to_raw_json())
    }

    /// As a JSON tree, for readers that look inside (push rules).
    pub fn to_json(&self) -> JsonValue {
        serde_json::to_value(self).expect("client events serialise")
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_pdu.then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        // Only accepted events are stored.
        false
    }
}
