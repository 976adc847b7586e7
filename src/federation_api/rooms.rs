//! Rooms over federation: joins, knocks, leaves, invites, and reading events and state.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomVersionId,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids},
        membership::{
            RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event,
            prepare_join_event, prepare_knock_event, prepare_leave_event,
        },
    },
    events::room::member::MembershipState,
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{require_allowed, require_in_room};
use crate::{
    federation::event_id_of,
    http::{
        ApiError,
        router::{Req, Router},
    },
    rooms::SUPPORTED_VERSIONS,
    services::Services,
};

pub fn routes(router: &mut Router) {
    // Up to 50 PDUs of up to 64 KiB each and 100 EDUs: more than a client request needs.
    router.ruma(make_join);
    router.ruma(send_join);
    router.ruma(make_knock);
    router.ruma(send_knock);
    router.ruma(invite);
    router.ruma(make_leave);
    router.ruma(send_leave);
    router.ruma(event);
    router.ruma(state);
    router.ruma(event_auth);
    router.ruma(state_ids);
    router.ruma(missing_events);
    router.ruma(backfill);
    router.ruma(timestamp_to_event);
}

fn raw(value: &JsonValue) -> Result<Box<RawJsonValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(|_| ApiError::internal())
}

/// Refuses a room version that is not among `supported`: the versions the asking server
/// listed (`ver`), or those this server supports.
fn require_version_in(supported: &[RoomVersionId], version: &RoomVersionId) -> Result<(), ApiError> {
    if supported.contains(version) {
        return Ok(());
    }
    Err(ApiError::new(
        http::StatusCode::BAD_REQUEST,
        ruma::api::error::ErrorKind::IncompatibleRoomVersion(
            ruma::api::error::IncompatibleRoomVersionErrorData::new(version.clone()),
        ),
        format!("The room has version {version}, which not both servers support"),
    ))
}

/// `GET /make_join`: a join event template for a user of the calling server.
async fn make_join(
    services: Arc<Services>,
    req: Req<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    if body.user_id.server_name() != req.auth {
        return Err(ApiError::forbidden("A server can only join its own users"));
    }
    require_version_in(&body.ver, &services.rooms.version(&body.room_id)?)?;
    let (version, template) =
        services.rooms.membership_template(&body.room_id, &body.user_id, MembershipState::Join).await?;
    let mut response = prepare_join_event::v1::Response::new(raw(&template)?);
    response.room_version = Some(version);
    Ok(response)
}

/// `PUT /v2/send_join`: the signed join of a user of the calling server; answered with the
/// state before it, its auth chain, and the event as stored (countersigned by us when we
/// vouched for a restricted join).
async fn send_join(
    services: Arc<Services>,
    req: Req<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    let stored = services
        .rooms
        .receive_membership(&req.auth, &body.room_id, &body.event_id, &body.pdu, MembershipState::Join)
        .await?;
    let (state, auth_chain) = services.rooms.state_with_auth_chain(&body.event_id)?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = state.iter().map(raw).collect::<Result<_, _>>()?;
    room_state.auth_chain = auth_chain.iter().map(raw).collect::<Result<_, _>>()?;
    room_state.event = Some(raw(&stored)?);
    room_state.servers_in_room =
        Some(services.rooms.servers_in_room(&body.room_id)?.into_iter().map(|s| s.to_string()).collect());
    Ok(create_join_event::v2::Response::new(room_state))
}

/// `GET /make_knock`: a knock event template for a user of the calling server.
async fn make_knock(
    services: Arc<Services>,
    req: Req<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response, ApiError> {
    let body = req.body;
    if body.user_id.server_name() != req.auth {
        return Err(ApiError::forbidden("A server can only knock for its own users"));
    }
    require_allowed(&services, &req.auth, &body.room_id)?;
    require_version_in(&body.ver, &services.rooms.version(&body.room_id)?)?;
    let (version, template) =
        services.rooms.membership_template(&body.room_id, &body.user_id, MembershipState::Knock).await?;
    Ok(prepare_knock_event::v1::Response::new(version, raw(&template)?))
}

/// `PUT /send_knock`: the signed knock of a user of the calling server; answered with the
/// state that describes the room to them.
async fn send_knock(
    services: Arc<Services>,
    req: Req<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    services
        .rooms
        .receive_membership(&req.auth, &body.room_id, &body.event_id, &body.pdu, MembershipState::Knock)
        .await?;
    let knock_room_state = services
        .rooms
        .invite_state(&body.room_id)?
        .iter()
        .map(|event| raw(event).map(RawStrippedState::Pdu))
        .collect::<Result<_, _>>()?;
    Ok(create_knock_event::v1::Response::new(knock_room_state))
}

/// `GET /make_leave`: a leave event template for a user of the calling server (to leave a
/// room, or reject an invite, through us).
async fn make_leave(
    services: Arc<Services>,
    req: Req<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    if body.user_id.server_name() != req.auth {
        return Err(ApiError::forbidden("A server can only make its own users leave"));
    }
    let (version, template) =
        services.rooms.membership_template(&body.room_id, &body.user_id, MembershipState::Leave).await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), raw(&template)?))
}

/// `PUT /v2/send_leave`: the signed leave of a user of the calling server.
async fn send_leave(
    services: Arc<Services>,
    req: Req<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    services
        .rooms
        .receive_membership(&req.auth, &body.room_id, &body.event_id, &body.pdu, MembershipState::Leave)
        .await?;
    Ok(create_leave_event::v2::Response::new())
}

/// `PUT /v2/invite`: another server invites one of our users.
async fn invite(
    services: Arc<Services>,
    req: Req<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response, ApiError> {
    let body = req.body;
    require_allowed(&services, &req.auth, &body.room_id)?;
    require_version_in(SUPPORTED_VERSIONS, &body.room_version)?;
    let signed = services
        .rooms
        .receive_invite(&req.auth, &body.room_id, &body.room_version, &body.event, &body.invite_room_state)
        .await?;
    Ok(create_invite::v2::Response::new(raw(&signed)?))
}

/// `GET /event/{eventId}`: one event, to a server in its room.
async fn event(
    services: Arc<Services>,
    req: Req<get_event::v1::Request>,
) -> Result<get_event::v1::Response, ApiError> {
    let stored =
        services.rooms.stored_pdu(&req.body.event_id)?.ok_or_else(|| ApiError::not_found("No such event"))?;
    require_in_room(&services, &req.auth, &stored.room_id)?;
    Ok(get_event::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        raw(&stored.pdu)?,
    ))
}

/// `GET /state/{roomId}`: the state before an event, and its auth chain, as PDUs.
async fn state(
    services: Arc<Services>,
    req: Req<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response, ApiError> {
    require_in_room(&services, &req.auth, &req.body.room_id)?;
    let (state, auth_chain) = services.rooms.state_with_auth_chain(&req.body.event_id)?;
    Ok(get_room_state::v1::Response::new(
        auth_chain.iter().map(raw).collect::<Result<_, _>>()?,
        state.iter().map(raw).collect::<Result<_, _>>()?,
    ))
}

/// `GET /event_auth/{roomId}/{eventId}`: an event's auth chain.
async fn event_auth(
    services: Arc<Services>,
    req: Req<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response, ApiError> {
    require_in_room(&services, &req.auth, &req.body.room_id)?;
    let chain = services.rooms.auth_chain_of(&req.body.event_id)?;
    Ok(get_event_authorization::v1::Response::new(chain.iter().map(raw).collect::<Result<_, _>>()?))
}

/// `GET /state_ids/{roomId}`: the state before an event, and its auth chain, by id.
async fn state_ids(
    services: Arc<Services>,
    req: Req<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response, ApiError> {
    require_in_room(&services, &req.auth, &req.body.room_id)?;
    let (state, auth_chain) = services.rooms.state_with_auth_chain(&req.body.event_id)?;
    let ids = |pdus: Vec<JsonValue>, version: &RoomVersionId| -> Vec<OwnedEventId> {
        let Some(rules) = version.rules() else { return vec![] };
        pdus.into_iter()
            .filter_map(|pdu| serde_json::from_value(pdu).ok())
            .filter_map(|object| event_id_of(&object, &rules).ok())
            .collect()
    };
    let version = services.rooms.version(&req.body.room_id)?;
    Ok(get_room_state_ids::v1::Response::new(ids(auth_chain, &version), ids(state, &version)))
}

/// `POST /get_missing_events`: events between the caller's latest and earliest ones,
/// walking `prev_events` back from the latest.
async fn missing_events(
    services: Arc<Services>,
    req: Req<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response, ApiError> {
    let body = req.body;
    require_in_room(&services, &req.auth, &body.room_id)?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX).min(100);
    let stop: BTreeSet<&EventId> = body.earliest_events.iter().map(|e| &**e).collect();
    let events = walk_back(&services, &body.room_id, body.latest_events.clone(), &stop, limit, false)?;
    Ok(get_missing_events::v1::Response::new(events))
}

/// `GET /backfill/{roomId}`: history before (and including) the given events.
async fn backfill(
    services: Arc<Services>,
    req: Req<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response, ApiError> {
    let body = req.body;
    require_in_room(&services, &req.auth, &body.room_id)?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX).min(100);
    let pdus = walk_back(&services, &body.room_id, body.v.clone(), &BTreeSet::new(), limit, true)?;
    Ok(get_backfill::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        pdus,
    ))
}

/// `GET /timestamp_to_event/{roomId}`: the event of the room closest to a time, in one
/// direction, for a server with a member in the room (as for backfill).
async fn timestamp_to_event(
    services: Arc<Services>,
    req: Req<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response, ApiError> {
    let body = req.body;
    require_in_room(&services, &req.auth, &body.room_id)?;
    let forwards = body.dir == ruma::api::Direction::Forward;
    let event = services
        .rooms
        .event_at_timestamp(&body.room_id, body.ts.get().into(), forwards, |_| Ok(true))?
        .ok_or_else(|| ApiError::not_found("no event in that direction from the timestamp"))?;
    Ok(get_event_by_timestamp::v1::Response::new(event.pdu.event_id.clone(), event.pdu.origin_server_ts))
}

/// Up to `limit` events of the room reached from `from` through `prev_events`, never past
/// `stop`; `from` itself is included when `include_from`. Oldest first.
fn walk_back(
    services: &Services,
    room_id: &ruma::RoomId,
    from: Vec<OwnedEventId>,
    stop: &BTreeSet<&EventId>,
    limit: usize,
    include_from: bool,
) -> Result<Vec<Box<RawJsonValue>>, ApiError> {
    let mut seen: BTreeSet<OwnedEventId> = BTreeSet::new();
    let mut found: Vec<(u64, JsonValue)> = Vec::new();
    let mut todo: std::collections::VecDeque<OwnedEventId> = if include_from {
        from.into_iter().collect()
    } else {
        from.iter()
            .filter_map(|id| services.rooms.pdu(id).ok().flatten())
            .flat_map(|pdu| pdu.prev_events)
            .collect()
    };
    while let Some(id) = todo.pop_front() {
        if found.len() >= limit || stop.contains(&*id) || !seen.insert(id.clone()) {
            continue;
        }
        let Some(event) = services.rooms.event(&id)? else { continue };
        if event.pdu.room_id != room_id || event.stored.position == 0 {
            continue;
        }
        todo.extend(event.pdu.prev_events.iter().cloned());
        found.push((event.pdu.depth.into(), event.stored.pdu_json()));
    }
    found.sort_by_key(|(depth, _)| *depth);
    found.iter().map(|(_, pdu)| raw(pdu)).collect()
}
