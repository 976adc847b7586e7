//! `POST /search`: the `room_events` category, answered by the search domain and shaped
//! here into results, groups and context.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedRoomId, OwnedUserId, UInt,
    api::client::search::search_events::v3::{
        Criteria, EventContextResult, GroupingKey, OrderBy, Request, Response, ResultCategories, ResultGroup,
        ResultGroupMap, ResultRoomEvents, SearchResult, UserProfile,
    },
    serde::Raw,
};

use crate::{
    accounts::Session,
    http::{
        ApiError,
        router::{Req, Router},
    },
    rooms::Event,
    search::{ContextLimits, Order, Query},
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(search);
}

fn client_event<T>(services: &Services, session: &Session, event: &Event) -> Result<Raw<T>, ApiError> {
    Ok(Raw::from_json(services.rooms.client_event(event, Some((&session.user_id, &session.device_id)))?))
}

fn limit(value: UInt) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

async fn search(services: Arc<Services>, req: Req<Request>) -> Result<Response, ApiError> {
    let Some(criteria) = req.body.search_categories.room_events else {
        // No category the server knows was asked for: nothing to answer.
        return Ok(Response::new(ResultCategories::new()));
    };
    let session = &req.auth;
    let results = room_events(&services, session, &criteria, req.body.next_batch.as_deref())?;
    let mut categories = ResultCategories::new();
    categories.room_events = results;
    Ok(Response::new(categories))
}

fn room_events(
    services: &Services,
    session: &Session,
    criteria: &Criteria,
    next_batch: Option<&str>,
) -> Result<ResultRoomEvents, ApiError> {
    let order = match &criteria.order_by {
        None | Some(OrderBy::Rank) => Order::Rank,
        Some(OrderBy::Recent) => Order::Recent,
        Some(other) => return Err(ApiError::invalid_param(format!("unknown order_by {:?}", other.as_str()))),
    };
    let mut group_by = Vec::new();
    for grouping in &criteria.groupings.group_by {
        match &grouping.key {
            Some(key @ (GroupingKey::RoomId | GroupingKey::Sender)) => group_by.push(key.clone()),
            Some(other) => {
                return Err(ApiError::invalid_param(format!("unknown grouping key {:?}", other.as_str())));
            }
            None => return Err(ApiError::invalid_param("a grouping has no key")),
        }
    }
    let context = &criteria.event_context;
    // ruma reads an absent `event_context` as its defaults (5, 5, no profiles), so those
    // exact values mean "none", as an absent one does for Synapse.
    let wants_context = !context.is_default();
    let query = Query {
        user: &session.user_id,
        search_term: &criteria.search_term,
        keys: criteria.keys.as_ref().map(|keys| keys.iter().map(|k| k.as_str().to_owned()).collect()),
        filter: &criteria.filter,
        order,
        context: wants_context.then(|| ContextLimits {
            before: limit(context.before_limit),
            after: limit(context.after_limit),
            include_profile: context.include_profile,
        }),
        next_batch,
    };
    let found = services.search.search(&query)?;

    let mut results = ResultRoomEvents::new();
    let mut by_room: BTreeMap<OwnedRoomId, ResultGroup> = BTreeMap::new();
    let mut by_sender: BTreeMap<OwnedUserId, ResultGroup> = BTreeMap::new();
    for (index, item) in found.found.iter().enumerate() {
        let pdu = &item.event.pdu;
        for group in [
            by_room.entry(pdu.room_id.clone()).or_default(),
            by_sender.entry(pdu.sender.clone()).or_default(),
        ] {
            group.order.get_or_insert(UInt::new_saturating(index as u64 + 1));
            group.results.push(pdu.event_id.clone());
            group.next_batch = found.next_batch.clone();
        }
        let mut result = SearchResult::new();
        result.rank = Some(item.rank);
        result.result = Some(client_event(services, session, &item.event)?);
        if let Some(context) = &item.context {
            let mut shaped = EventContextResult::new();
            shaped.start = Some(context.start.clone());
            shaped.end = Some(context.end.clone());
            shaped.events_before = context
                .before
                .iter()
                .map(|e| client_event(services, session, e))
                .collect::<Result<_, _>>()?;
            shaped.events_after =
                context.after.iter().map(|e| client_event(services, session, e)).collect::<Result<_, _>>()?;
            for (user, profile) in &context.profiles {
                let mut shown = UserProfile::new();
                shown.displayname = profile.displayname.clone();
                shown.avatar_url = profile.avatar_url.as_deref().map(Into::into);
                shaped.profile_info.insert(user.clone(), shown);
            }
            result.context = shaped;
        }
        results.results.push(result);
    }
    for key in group_by {
        results.groups.insert(match key {
            GroupingKey::Sender => ResultGroupMap::Sender(std::mem::take(&mut by_sender)),
            _ => ResultGroupMap::RoomId(std::mem::take(&mut by_room)),
        });
    }
    results.count = Some(UInt::new_saturating(found.count as u64));
    results.next_batch = found.next_batch;
    results.highlights = found.highlights;
    Ok(results)
}
