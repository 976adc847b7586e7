//! Reports of events, rooms and users to the server's administrators, who list them with
//! `myelin reports list` or the admin API (event reports, with what the event and its room
//! are).

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use super::{Error, Result, Rooms};
use crate::{now_ms, storage::Report};

/// The longest reason a report may give, in characters: room for a few paragraphs, not
/// for a file.
const MAX_REASON_CHARS: usize = 1000;

/// What a report is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportTarget {
    Event { room_id: OwnedRoomId, event_id: OwnedEventId },
    Room { room_id: OwnedRoomId },
    User { user_id: OwnedUserId },
}

/// A report as administrators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiledReport {
    pub id: u64,
    pub reporter: OwnedUserId,
    #[serde(flatten)]
    pub target: ReportTarget,
    pub reason: Option<String>,
    /// When it was made, in milliseconds since the epoch.
    pub ts: u64,
}

/// A report of an event, with what administrators need to judge it.
#[derive(Debug, Clone)]
pub struct EventReport {
    pub id: u64,
    pub reporter: OwnedUserId,
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    /// The reported event's sender, if the event is stored here.
    pub sender: Option<OwnedUserId>,
    pub reason: Option<String>,
    pub ts: u64,
    pub room_name: Option<String>,
    pub canonical_alias: Option<String>,
}

impl Rooms {
    /// Reports an event. Only members may (spec), and an event that does not exist or that
    /// the reporter cannot be in the room of is "not found" either way, hiding which.
    pub async fn report_event(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
    ) -> Result<()> {
        check_reason(reason.as_deref())?;
        let not_found = || Error::NotFound("no such event, or you are not joined to its room".to_owned());
        if self.membership(room_id, reporter).ok().flatten() != Some(MembershipState::Join) {
            return Err(not_found());
        }
        self.event(event_id)?.filter(|event| event.pdu.room_id == room_id).ok_or_else(not_found)?;
        let target = ReportTarget::Event { room_id: room_id.to_owned(), event_id: event_id.to_owned() };
        self.file_report(reporter, target, reason).await
    }

    /// Reports a whole room (any user may, of any room this server knows).
    pub async fn report_room(&self, reporter: &UserId, room_id: &RoomId, reason: String) -> Result<()> {
        check_reason(Some(&reason))?;
        self.room(room_id)?;
        self.file_report(reporter, ReportTarget::Room { room_id: room_id.to_owned() }, Some(reason)).await
    }

    /// Reports a user (spec v1.14): one of this server's accounts, or another server's user
    /// this server has seen in a room. Anyone may report anyone.
    pub async fn report_user(&self, reporter: &UserId, user_id: &UserId, reason: String) -> Result<()> {
        check_reason(Some(&reason))?;
        let known = if user_id.server_name() == self.server_name {
            self.accounts.exists(user_id)?
        } else {
            self.store.has_user_rooms(user_id)?
        };
        if !known {
            return Err(Error::NotFound(format!("this server knows no user {user_id}")));
        }
        self.file_report(reporter, ReportTarget::User { user_id: user_id.to_owned() }, Some(reason)).await
    }

    /// Every report, oldest first.
    pub fn reports(&self) -> Result<Vec<FiledReport>> {
        let reports = self.store.reports()?;
        Ok(reports
            .into_iter()
            .filter_map(|(id, report)| {
                let target = match (report.room_id, report.event_id, report.user_id) {
                    (Some(room_id), Some(event_id), _) => ReportTarget::Event { room_id, event_id },
                    (Some(room_id), None, _) => ReportTarget::Room { room_id },
                    (None, _, Some(user_id)) => ReportTarget::User { user_id },
                    (None, _, None) => {
                        tracing::warn!(id, "a stored report names nothing it reports");
                        return None;
                    }
                };
                Some(FiledReport {
                    id,
                    reporter: report.reporter,
                    target,
                    reason: report.reason,
                    ts: report.ts,
                })
            })
            .collect())
    }

    /// The reports of events, oldest first, each with the event's sender and its room's
    /// name and alias as they are now.
    pub fn event_reports(&self) -> Result<Vec<EventReport>> {
        Ok(self.reports()?.into_iter().filter_map(|report| self.event_report_of(report)).collect())
    }

    /// One event report with the event as stored; `NotFound` for any other id.
    pub fn event_report(&self, id: u64) -> Result<(EventReport, Option<JsonValue>)> {
        let report = self
            .reports()?
            .into_iter()
            .find(|r| r.id == id)
            .and_then(|report| self.event_report_of(report))
            .ok_or_else(|| Error::NotFound(format!("no event report {id}")))?;
        let pdu = self.stored_pdu(&report.event_id)?.map(|stored| stored.pdu);
        Ok((report, pdu))
    }

    /// Deletes any report (of an event, a room or a user).
    pub async fn delete_report(&self, id: u64) -> Result<()> {
        if !self.store.delete_report(id).await? {
            return Err(Error::NotFound(format!("no report {id}")));
        }
        tracing::info!(id, "report deleted");
        Ok(())
    }

    fn event_report_of(&self, report: FiledReport) -> Option<EventReport> {
        let ReportTarget::Event { room_id, event_id } = report.target else { return None };
        let sender = self.event(&event_id).ok().flatten().map(|event| event.pdu.sender.clone());
        let summary = self.summary(&room_id).ok();
        Some(EventReport {
            id: report.id,
            reporter: report.reporter,
            room_name: summary.as_ref().and_then(|s| s.name.clone()),
            canonical_alias: summary.and_then(|s| s.canonical_alias),
            room_id,
            event_id,
            sender,
            reason: report.reason,
            ts: report.ts,
        })
    }

    async fn file_report(
        &self,
        reporter: &UserId,
        target: ReportTarget,
        reason: Option<String>,
    ) -> Result<()> {
        tracing::warn!(%reporter, ?target, "content reported");
        let (room_id, event_id, user_id) = match target {
            ReportTarget::Event { room_id, event_id } => (Some(room_id), Some(event_id), None),
            ReportTarget::Room { room_id } => (Some(room_id), None, None),
            ReportTarget::User { user_id } => (None, None, Some(user_id)),
        };
        let report =
            Report { reporter: reporter.to_owned(), room_id, event_id, user_id, reason, ts: now_ms() };
        Ok(self.store.add_report(&report).await?)
    }
}

fn check_reason(reason: Option<&str>) -> Result<()> {
    match reason {
        Some(reason) if reason.chars().count() > MAX_REASON_CHARS => Err(Error::InvalidParam(format!(
            "a report's reason may have at most {MAX_REASON_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}
