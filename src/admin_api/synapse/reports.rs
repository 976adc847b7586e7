//! Event reports: list (paging, filters, newest first by default), show, delete.

use std::sync::Arc;

use http::Method;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value as JsonValue, json};

use super::call::{self, AdminCall};
use crate::{
    admin::Page,
    http::{ApiError, Response, router::Router},
    rooms::EventReport,
    services::Services,
};

const ONE: &str = "/_synapse/admin/v1/event_reports/{report_id}";

pub fn routes(router: &mut Router) {
    call::route(router, Method::GET, "/_synapse/admin/v1/event_reports", list);
    call::route(router, Method::GET, ONE, show);
    call::route(router, Method::DELETE, ONE, delete);
}

/// A report as Synapse shows one. Reports here carry no score.
#[derive(Serialize)]
struct ReportJson {
    id: u64,
    received_ts: u64,
    room_id: OwnedRoomId,
    name: Option<String>,
    canonical_alias: Option<String>,
    event_id: OwnedEventId,
    user_id: OwnedUserId,
    reason: Option<String>,
    score: Option<i64>,
    sender: Option<OwnedUserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_json: Option<JsonValue>,
}

impl ReportJson {
    fn new(report: EventReport, event_json: Option<JsonValue>) -> Self {
        Self {
            id: report.id,
            received_ts: report.ts,
            room_id: report.room_id,
            name: report.room_name,
            canonical_alias: report.canonical_alias,
            event_id: report.event_id,
            user_id: report.reporter,
            reason: report.reason,
            score: None,
            sender: report.sender,
            event_json,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    from: usize,
    #[serde(default = "call::default_limit")]
    limit: usize,
    dir: Option<String>,
    user_id: Option<String>,
    room_id: Option<String>,
    event_sender_user_id: Option<String>,
}

async fn list(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let q: ListQuery = call.input.query()?;
    // Newest first unless `dir=f`.
    let oldest_first = !call::backwards(Some(q.dir.as_deref().unwrap_or("b")))?;
    let mut reports: Vec<EventReport> = services
        .rooms
        .event_reports()?
        .into_iter()
        .filter(|r| q.user_id.as_deref().is_none_or(|u| r.reporter.as_str() == u))
        .filter(|r| q.room_id.as_deref().is_none_or(|room| r.room_id.as_str() == room))
        .filter(|r| {
            q.event_sender_user_id
                .as_deref()
                .is_none_or(|s| r.sender.as_ref().is_some_and(|x| x.as_str() == s))
        })
        .collect();
    if !oldest_first {
        reports.reverse();
    }
    let page = Page::of(reports, q.from, q.limit);
    let mut body = json!({
        "event_reports": page.items.into_iter().map(|r| ReportJson::new(r, None)).collect::<Vec<_>>(),
        "total": page.total,
    });
    if let Some(next) = page.next {
        body["next_token"] = json!(next);
    }
    call::ok(&body)
}

fn report_id(call: &AdminCall) -> Result<u64, ApiError> {
    call.input.arg(0).parse().map_err(|_| ApiError::invalid_param("The report ID must be an integer"))
}

async fn show(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    let (report, event_json) = services.rooms.event_report(report_id(&call)?)?;
    call::ok(&ReportJson::new(report, Some(event_json.unwrap_or(JsonValue::Null))))
}

async fn delete(services: Arc<Services>, call: AdminCall) -> Result<Response, ApiError> {
    services.rooms.delete_report(report_id(&call)?).await?;
    call::empty()
}
