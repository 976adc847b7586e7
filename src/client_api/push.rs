//! Push rules, pushers and `/notifications`.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::push::{
        PushRule, Pusher, delete_pushrule, get_notifications, get_pushers, get_pushrule,
        get_pushrule_actions, get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope,
        set_pusher::{self, v3::PusherAction},
        set_pushrule, set_pushrule_actions, set_pushrule_enabled,
    },
    push::{InsertPushRuleError, RemovePushRuleError, RuleKind, Ruleset},
    serde::Raw,
};

use crate::{
    error::Error,
    http::{
        ApiError,
        router::{Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(all_rules);
    router.ruma(global_rules);
    router.ruma(get_rule);
    router.ruma(put_rule);
    router.ruma(remove_rule);
    router.ruma(get_enabled);
    router.ruma(put_enabled);
    router.ruma(get_actions);
    router.ruma(put_actions);
    router.ruma(pushers);
    router.ruma(put_pusher);
    router.ruma(notifications);
}

fn not_found(kind: &RuleKind, rule_id: &str) -> Error {
    Error::NotFound(format!("no {kind} push rule {rule_id}"))
}

async fn all_rules(
    services: Arc<Services>,
    req: Req<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response, ApiError> {
    Ok(get_pushrules_all::v3::Response::new(services.push.ruleset(&req.auth.user_id)?))
}

async fn global_rules(
    services: Arc<Services>,
    req: Req<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response, ApiError> {
    Ok(get_pushrules_global_scope::v3::Response::new(services.push.ruleset(&req.auth.user_id)?))
}

fn find(ruleset: &Ruleset, kind: &RuleKind, rule_id: &str) -> Result<PushRule, ApiError> {
    ruleset
        .get(kind.clone(), rule_id)
        .map(|rule| rule.to_owned().into())
        .ok_or_else(|| not_found(kind, rule_id).into())
}

async fn get_rule(
    services: Arc<Services>,
    req: Req<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response, ApiError> {
    let ruleset = services.push.ruleset(&req.auth.user_id)?;
    Ok(get_pushrule::v3::Response::new(find(&ruleset, &req.body.kind, &req.body.rule_id)?))
}

async fn put_rule(
    services: Arc<Services>,
    req: Req<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response, ApiError> {
    let body = req.body;
    services
        .push
        .update_ruleset(&req.auth.user_id, |ruleset| {
            ruleset.insert(body.rule, body.after.as_deref(), body.before.as_deref()).map_err(|e| match e {
                InsertPushRuleError::UnknownRuleId => Error::NotFound(e.to_string()),
                other => Error::BadJson(other.to_string()),
            })
        })
        .await?;
    Ok(set_pushrule::v3::Response::new())
}

async fn remove_rule(
    services: Arc<Services>,
    req: Req<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response, ApiError> {
    let body = req.body;
    services
        .push
        .update_ruleset(&req.auth.user_id, |ruleset| {
            ruleset.remove(body.kind.clone(), &body.rule_id).map_err(|e| match e {
                RemovePushRuleError::NotFound => not_found(&body.kind, &body.rule_id),
                other => Error::Forbidden(other.to_string()),
            })
        })
        .await?;
    Ok(delete_pushrule::v3::Response::new())
}

async fn get_enabled(
    services: Arc<Services>,
    req: Req<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response, ApiError> {
    let ruleset = services.push.ruleset(&req.auth.user_id)?;
    let rule = ruleset
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(|| not_found(&req.body.kind, &req.body.rule_id))?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

async fn put_enabled(
    services: Arc<Services>,
    req: Req<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response, ApiError> {
    let body = req.body;
    services
        .push
        .update_ruleset(&req.auth.user_id, |ruleset| {
            ruleset
                .set_enabled(body.kind.clone(), &body.rule_id, body.enabled)
                .map_err(|_| not_found(&body.kind, &body.rule_id))
        })
        .await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

async fn get_actions(
    services: Arc<Services>,
    req: Req<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response, ApiError> {
    let ruleset = services.push.ruleset(&req.auth.user_id)?;
    let rule = ruleset
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(|| not_found(&req.body.kind, &req.body.rule_id))?;
    Ok(get_pushrule_actions::v3::Response::new(rule.actions().to_vec()))
}

async fn put_actions(
    services: Arc<Services>,
    req: Req<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response, ApiError> {
    let body = req.body;
    services
        .push
        .update_ruleset(&req.auth.user_id, |ruleset| {
            ruleset
                .set_actions(body.kind.clone(), &body.rule_id, body.actions)
                .map_err(|_| not_found(&body.kind, &body.rule_id))
        })
        .await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

async fn pushers(
    services: Arc<Services>,
    req: Req<get_pushers::v3::Request>,
) -> Result<get_pushers::v3::Response, ApiError> {
    let pushers = services
        .push
        .pushers(&req.auth.user_id)?
        .into_iter()
        .filter_map(|json| serde_json::from_value::<Pusher>(json).ok())
        .collect();
    Ok(get_pushers::v3::Response::new(pushers))
}

async fn put_pusher(
    services: Arc<Services>,
    req: Req<set_pusher::v3::Request>,
) -> Result<set_pusher::v3::Response, ApiError> {
    let user = &req.auth.user_id;
    match req.body.action {
        PusherAction::Post(data) => {
            services.push.set_pusher(user, Some(&req.auth.device_id), data.pusher, data.append).await?
        }
        PusherAction::Delete(ids) => services.push.remove_pusher(user, &ids.app_id, &ids.pushkey).await?,
        _ => return Err(ApiError::bad_json("unknown pusher action")),
    }
    Ok(set_pusher::v3::Response::new())
}

async fn notifications(
    services: Arc<Services>,
    req: Req<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response, ApiError> {
    let body = req.body;
    let user = &req.auth.user_id;
    let from = body
        .from
        .as_deref()
        .map(|f| {
            f.parse::<u64>().map_err(|_| ApiError::invalid_param("from is not a token from this server"))
        })
        .transpose()?;
    let limit = body.limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(20).clamp(1, 100);
    let only_highlight = body.only.as_deref() == Some("highlight");
    let mut notifications = Vec::new();
    let mut next_token = None;
    for (position, record) in services.push.notifications(user, from, limit * 4)? {
        if only_highlight && !record.highlight {
            continue;
        }
        let Some(stored_event) = services.rooms.event(&record.event_id)? else { continue };
        let actions = serde_json::from_value(record.actions.clone()).unwrap_or_default();
        let event =
            Raw::from_json(services.rooms.client_event(&stored_event, Some((user, &req.auth.device_id)))?);
        let read = services.push.is_read(user, &record, stored_event.stored.position)?;
        let ts = MilliSecondsSinceUnixEpoch(UInt::new_saturating(record.ts));
        notifications.push(get_notifications::v3::Notification::new(
            actions,
            event,
            read,
            record.room_id,
            ts,
        ));
        if notifications.len() == limit {
            next_token = Some(position.to_string());
            break;
        }
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(response)
}
