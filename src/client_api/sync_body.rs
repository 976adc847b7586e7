//! The `/sync` response body as clients expect it. ruma leaves out every empty section,
//! which the spec allows, but clients written against Synapse rely on each joined room
//! carrying `timeline`, `state`, `ephemeral`, `account_data`, `summary` and
//! `unread_notifications` (with `events` lists) even when empty — matrix-nio's schema
//! check rejects a sync without them. Everything but the joined rooms is serialised by
//! ruma as it is.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::StatusCode;
use ruma::{
    OwnedEventId, OwnedRoomId,
    api::{
        OutgoingResponseExt,
        client::sync::sync_events::{
            UnreadNotificationsCount,
            v3::{JoinedRoom, Response, RoomSummary, State},
        },
    },
    serde::Raw,
};
use serde::Serialize;
use serde_json::value::RawValue as RawJsonValue;

use crate::http::{
    ApiError,
    error::{Response as HttpResponse, json_response},
    router::IntoHttpResponse,
};

/// A `/sync` response, serialised with every joined room's sections present.
pub struct SyncBody(pub Response);

#[derive(Serialize)]
#[serde(bound = "")]
struct EventList<'a, T> {
    events: &'a [Raw<T>],
}

#[derive(Serialize)]
#[serde(bound = "")]
struct TimelineBody<'a, T> {
    events: &'a [Raw<T>],
    limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_batch: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(bound = "")]
struct JoinedRoomBody<'a, S, T, E, A> {
    summary: &'a RoomSummary,
    unread_notifications: &'a UnreadNotificationsCount,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    unread_thread_notifications: &'a BTreeMap<OwnedEventId, UnreadNotificationsCount>,
    timeline: TimelineBody<'a, T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<EventList<'a, S>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_after: Option<EventList<'a, S>>,
    ephemeral: EventList<'a, E>,
    account_data: EventList<'a, A>,
}

fn joined_room_body(
    room: &JoinedRoom,
) -> JoinedRoomBody<
    '_,
    ruma::events::AnySyncStateEvent,
    ruma::events::AnySyncTimelineEvent,
    ruma::events::AnySyncEphemeralRoomEvent,
    ruma::events::AnyRoomAccountDataEvent,
> {
    let (state, state_after) = match &room.state {
        State::After(after) => (None, Some(EventList { events: &after.events })),
        State::Before(before) => (Some(EventList { events: &before.events }), None),
        _ => (None, None),
    };
    JoinedRoomBody {
        summary: &room.summary,
        unread_notifications: &room.unread_notifications,
        unread_thread_notifications: &room.unread_thread_notifications,
        timeline: TimelineBody {
            events: &room.timeline.events,
            limited: room.timeline.limited,
            prev_batch: room.timeline.prev_batch.as_deref(),
        },
        state,
        state_after,
        ephemeral: EventList { events: &room.ephemeral.events },
        account_data: EventList { events: &room.account_data.events },
    }
}

fn serialisation_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "could not serialise a sync response");
    ApiError::internal()
}

impl IntoHttpResponse for SyncBody {
    fn into_http_response(self) -> Result<HttpResponse, ApiError> {
        let mut response = self.0;
        let joined = std::mem::take(&mut response.rooms.join);
        let ruma_response = response.try_into_http_response::<Vec<u8>>().map_err(serialisation_failed)?;
        if joined.is_empty() {
            return Ok(ruma_response.map(|body| http_body_util::Full::new(Bytes::from(body))));
        }
        // Only the top level is parsed: each section stays the raw JSON ruma wrote.
        let mut body: BTreeMap<String, Box<RawJsonValue>> =
            serde_json::from_slice(ruma_response.body()).map_err(serialisation_failed)?;
        let mut rooms: BTreeMap<String, Box<RawJsonValue>> = match body.remove("rooms") {
            Some(rooms) => serde_json::from_str(rooms.get()).map_err(serialisation_failed)?,
            None => BTreeMap::new(),
        };
        let join: BTreeMap<&OwnedRoomId, _> =
            joined.iter().map(|(id, room)| (id, joined_room_body(room))).collect();
        rooms
            .insert("join".to_owned(), serde_json::value::to_raw_value(&join).map_err(serialisation_failed)?);
        body.insert(
            "rooms".to_owned(),
            serde_json::value::to_raw_value(&rooms).map_err(serialisation_failed)?,
        );
        Ok(json_response(StatusCode::OK, &body))
    }
}
