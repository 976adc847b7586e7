//! Reading a room's history: single events, `/messages`, `/context`, `/relations`,
//! `/threads` and `timestamp_to_event`, all subject to history visibility.

use std::sync::Arc;

use ruma::{
    EventId, RoomId, UInt, UserId,
    api::{
        Direction,
        client::{
            context::get_context,
            filter::RoomEventFilter,
            message::get_message_events,
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            room::{get_event_by_timestamp, get_room_event},
            threads::get_threads::{self, v1::IncludeThreads},
        },
    },
    events::TimelineEventType,
    serde::Raw,
};

use crate::{
    account_data::hidden_by_ignoring,
    accounts::Session,
    http::{
        ApiError,
        router::{Req, Router},
    },
    rooms::{Event, Events, Reader, RelationFilter},
    services::Services,
    sync::{SyncToken, filter},
};

pub fn routes(router: &mut Router) {
    router.ruma(event);
    router.ruma(messages);
    router.ruma(context);
    router.ruma(relations_all);
    router.ruma(relations_by_type);
    router.ruma(relations_by_type_and_kind);
    router.ruma(timestamp_to_event);
    router.ruma(threads);
}

fn client_event<T>(services: &Services, session: &Session, event: &Event) -> Result<Raw<T>, ApiError> {
    Ok(Raw::from_json(services.rooms.client_event(event, Some((&session.user_id, &session.device_id)))?))
}

fn client_events<T>(
    services: &Services,
    session: &Session,
    events: &[Arc<Event>],
) -> Result<Vec<Raw<T>>, ApiError> {
    events.iter().map(|event| client_event(services, session, event)).collect()
}

/// A pagination token: a position, as `/messages` hands out, or a sync token (the spec lets
/// clients page from a sync's `next_batch`).
fn parse_token(token: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    token
        .map(|t| {
            SyncToken::parse(t).map(|token| token.position).ok_or_else(|| {
                ApiError::invalid_param(format!("{name} is not a pagination token from this server"))
            })
        })
        .transpose()
}

fn limit_of(limit: Option<UInt>, default: usize) -> usize {
    limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(default).clamp(1, 1000)
}

/// Member events of the senders of `events`, from the state at the newest of them, for
/// lazy-loading clients.
fn members_for<T>(services: &Services, events: &[Arc<Event>]) -> Result<Vec<Raw<T>>, ApiError> {
    let Some(newest) = events.iter().max_by_key(|event| event.stored.position) else {
        return Ok(vec![]);
    };
    let state = services.rooms.state_before(&newest.stored)?;
    let mut senders: Vec<&UserId> = events.iter().map(|event| &*event.pdu.sender).collect();
    senders.sort();
    senders.dedup();
    let mut members = Vec::new();
    for sender in senders {
        let key = ("m.room.member".to_owned(), sender.to_string());
        let member = match state.get(&key) {
            Some(id) => services.rooms.pdu(id)?,
            // The sender's own join can be on the page itself, after the state we read.
            None => events
                .iter()
                .map(|event| &event.pdu)
                .find(|p| {
                    p.kind == TimelineEventType::RoomMember && p.state_key.as_deref() == Some(sender.as_str())
                })
                .cloned(),
        };
        if let Some(pdu) = member {
            members.push(pdu.client_event().to_raw());
        }
    }
    Ok(members)
}

fn event_in_room(services: &Services, room_id: &RoomId, event_id: &EventId) -> Result<Arc<Event>, ApiError> {
    services
        .rooms
        .event(event_id)?
        .filter(|event| event.pdu.room_id == room_id)
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id} in this room")))
}

async fn event(
    services: Arc<Services>,
    req: Req<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response, ApiError> {
    let body = req.body;
    let mut reader = services.rooms.reader(&body.room_id, &req.auth.user_id)?;
    let event = event_in_room(&services, &body.room_id, &body.event_id)?;
    reader.require(&event)?;
    Ok(get_room_event::v3::Response::new(client_event(&services, &req.auth, &event)?))
}

/// Where a walk over the timeline starts, which way it goes and when it stops.
struct Walk {
    from: u64,
    to: Option<u64>,
    forwards: bool,
    limit: usize,
}

/// Collects up to `limit` events visible to `reader` that pass `filter`, walking from
/// `from` in one direction and stopping at the `to` position (or where the reader's view of
/// the room ends). Returns them with the token after the last.
fn walk(
    services: &Services,
    session: &Session,
    reader: &mut Reader<'_>,
    room_id: &RoomId,
    Walk { from, to, forwards, limit }: Walk,
    filter: &RoomEventFilter,
) -> Result<(Events, Option<u64>), ApiError> {
    let (from, to) = match reader.last_position() {
        Some(last) if forwards => (from, Some(to.map_or(last, |to| to.min(last)))),
        Some(last) => (from.min(last), to),
        None => (from, to),
    };
    let ignored = services.account_data.ignored_users(&session.user_id)?;
    let mut found = Vec::new();
    let mut cursor = Some(from);
    while let Some(position) = cursor {
        let (page, next) = services.rooms.paginate(room_id, Some(position), forwards, limit)?;
        cursor = next;
        for event in page {
            let position = event.stored.position;
            let past_to = to.is_some_and(|to| if forwards { position > to } else { position <= to });
            if past_to {
                return Ok((found, None));
            }
            let token = if forwards { position } else { position - 1 };
            let shown = filter::matches(filter, &event.pdu) && !hidden_by_ignoring(&event.pdu, &ignored);
            if shown && reader.can_see(&event)? {
                found.push(event);
                if found.len() == limit {
                    return Ok((found, Some(token)));
                }
            }
        }
    }
    Ok((found, None))
}

async fn messages(
    services: Arc<Services>,
    req: Req<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response, ApiError> {
    let body = req.body;
    let room_id = &body.room_id;
    let mut reader = services.rooms.reader(room_id, &req.auth.user_id)?;
    let forwards = body.dir == Direction::Forward;
    let to = parse_token(body.to.as_deref(), "to")?;
    let start = match parse_token(body.from.as_deref(), "from")? {
        Some(from) => from,
        None if forwards => 0,
        None => services.rooms.latest_position(room_id)?,
    };
    let limit = limit_of(Some(body.limit), 10);
    let walk_from = Walk { from: start, to, forwards, limit };
    let (chunk, end) = walk(&services, &req.auth, &mut reader, room_id, walk_from, &body.filter)?;
    let mut response = get_message_events::v3::Response::new();
    if !body.filter.lazy_load_options.is_disabled() {
        response.state = members_for(&services, &chunk)?;
    }
    response.start = start.to_string();
    response.end = end.map(|e| e.to_string());
    response.chunk = client_events(&services, &req.auth, &chunk)?;
    Ok(response)
}

async fn context(
    services: Arc<Services>,
    req: Req<get_context::v3::Request>,
) -> Result<get_context::v3::Response, ApiError> {
    let body = req.body;
    let room_id = &body.room_id;
    let mut reader = services.rooms.reader(room_id, &req.auth.user_id)?;
    let event = event_in_room(&services, room_id, &body.event_id)?;
    reader.require(&event)?;
    let stored = &event.stored;
    let limit = limit_of(Some(body.limit), 10);
    let before_limit = limit / 2;
    let after_limit = limit - before_limit;
    let (before, start) = if before_limit == 0 {
        (vec![], Some(stored.position - 1))
    } else {
        walk(
            &services,
            &req.auth,
            &mut reader,
            room_id,
            Walk { from: stored.position - 1, to: None, forwards: false, limit: before_limit },
            &body.filter,
        )?
    };
    let (after, end) = if after_limit == 0 {
        (vec![], Some(stored.position))
    } else {
        walk(
            &services,
            &req.auth,
            &mut reader,
            room_id,
            Walk { from: stored.position, to: None, forwards: true, limit: after_limit },
            &body.filter,
        )?
    };
    let mut response = get_context::v3::Response::new();
    // Without a further page the tokens still point at the edges, so clients can resume.
    response.start = Some(
        start
            .unwrap_or_else(|| before.last().map_or(stored.position - 1, |e| e.stored.position - 1))
            .to_string(),
    );
    response.end =
        Some(end.unwrap_or_else(|| after.last().map_or(stored.position, |e| e.stored.position)).to_string());
    let mut shown: Events = before.iter().chain(after.iter()).cloned().collect();
    shown.push(event.clone());
    response.state = if body.filter.lazy_load_options.is_disabled() {
        let newest = after.last().map_or(stored, |e| &e.stored);
        let state = services.rooms.state_before(newest)?;
        services.rooms.pdus(state.values().cloned())?.iter().map(|p| p.client_event().to_raw()).collect()
    } else {
        members_for(&services, &shown)?
    };
    response.event = Some(client_event(&services, &req.auth, &event)?);
    response.events_before = client_events(&services, &req.auth, &before)?;
    response.events_after = client_events(&services, &req.auth, &after)?;
    Ok(response)
}

/// What the three `/relations` endpoints share: the parent, the filter and the paging.
struct RelationsQuery<'a> {
    room_id: &'a RoomId,
    parent: &'a EventId,
    filter: RelationFilter<'a>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: Direction,
    limit: Option<UInt>,
}

/// A page of relations: the events, the next page's token, and how deep a recursive query
/// looked (`None` when it did not recurse).
type RelationsPage = (Vec<Raw<ruma::events::AnyMessageLikeEvent>>, Option<String>, Option<UInt>);

fn relations(
    services: &Services,
    session: &Session,
    query: RelationsQuery<'_>,
) -> Result<RelationsPage, ApiError> {
    let RelationsQuery { room_id, parent, filter, from, to, dir, limit } = query;
    let mut reader = services.rooms.reader(room_id, &session.user_id)?;
    let parent_event = event_in_room(services, room_id, parent)?;
    reader.require(&parent_event)?;
    let forwards = dir == Direction::Forward;
    let from = parse_token(from, "from")?;
    let to = parse_token(to, "to")?;
    let limit = limit_of(limit, 50);
    let mut chunk = Vec::new();
    let mut next = None;
    let (events, depth) = services.rooms.relations(parent, filter, from, forwards)?;
    for event in events {
        let stored = &event.stored;
        if to.is_some_and(|to| if forwards { stored.position > to } else { stored.position <= to }) {
            break;
        }
        if !reader.can_see(&event)? {
            continue;
        }
        if chunk.len() == limit {
            next = Some(if forwards { stored.position - 1 } else { stored.position + 1 }.to_string());
            break;
        }
        chunk.push(client_event(services, session, &event)?);
    }
    let depth = filter.recurse.then(|| UInt::new_saturating(depth as u64));
    Ok((chunk, next, depth))
}

/// Answers one of the three `/relations` requests, whose fields share their names.
macro_rules! relations_response {
    ($services:expr, $session:expr, $body:expr, $filter:expr, $response:ty) => {{
        let body = &$body;
        let query = RelationsQuery {
            room_id: &body.room_id,
            parent: &body.event_id,
            filter: $filter,
            from: body.from.as_deref(),
            to: body.to.as_deref(),
            dir: body.dir,
            limit: body.limit,
        };
        let (chunk, next, depth) = relations(&$services, &$session, query)?;
        let mut response = <$response>::new(chunk);
        response.next_batch = next;
        response.recursion_depth = depth;
        Ok(response)
    }};
}

async fn relations_all(
    services: Arc<Services>,
    req: Req<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response, ApiError> {
    let filter = RelationFilter { recurse: req.body.recurse, ..Default::default() };
    relations_response!(services, req.auth, req.body, filter, get_relating_events::v1::Response)
}

async fn relations_by_type(
    services: Arc<Services>,
    req: Req<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response, ApiError> {
    let rel_type = req.body.rel_type.to_string();
    let filter = RelationFilter { rel_type: Some(&rel_type), kind: None, recurse: req.body.recurse };
    relations_response!(services, req.auth, req.body, filter, get_relating_events_with_rel_type::v1::Response)
}

async fn relations_by_type_and_kind(
    services: Arc<Services>,
    req: Req<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response, ApiError> {
    let (rel_type, kind) = (req.body.rel_type.to_string(), req.body.event_type.to_string());
    let filter = RelationFilter { rel_type: Some(&rel_type), kind: Some(&kind), recurse: req.body.recurse };
    relations_response!(
        services,
        req.auth,
        req.body,
        filter,
        get_relating_events_with_rel_type_and_event_type::v1::Response
    )
}

/// `GET /rooms/{roomId}/threads`: the room's thread roots, most recently active first.
async fn threads(
    services: Arc<Services>,
    req: Req<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response, ApiError> {
    let b = req.body;
    let from = b
        .from
        .as_deref()
        .map(|from| from.parse::<u64>().map_err(|_| ApiError::invalid_param("from is not a threads token")))
        .transpose()?;
    let participated = b.include == IncludeThreads::Participated;
    let limit = limit_of(b.limit, 20);
    let (roots, next) = services.rooms.threads(&b.room_id, &req.auth.user_id, participated, from, limit)?;
    let mut response = get_threads::v1::Response::new(client_events(&services, &req.auth, &roots)?);
    response.next_batch = next.map(|next| next.to_string());
    Ok(response)
}

async fn timestamp_to_event(
    services: Arc<Services>,
    req: Req<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response, ApiError> {
    let b = req.body;
    let mut reader = services.rooms.reader(&b.room_id, &req.auth.user_id)?;
    let event = services
        .rooms
        .event_at_timestamp(&b.room_id, b.ts.get().into(), b.dir == Direction::Forward, |event| {
            reader.can_see(event)
        })?
        .ok_or_else(|| ApiError::not_found("no event in that direction from the timestamp"))?;
    Ok(get_event_by_timestamp::v1::Response::new(event.pdu.event_id.clone(), event.pdu.origin_server_ts))
}
