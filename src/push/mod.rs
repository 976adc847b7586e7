//! Push rules, notification counts, `/notifications` and pushers.
//!
//! The rules live in the user's `m.push_rules` account data (as clients expect to find
//! them in `/sync`), starting from ruma's server-default ruleset. Every new event is
//! evaluated against the rules of each local member it could notify; notifying events are
//! recorded, and the unread counts are the recorded events after the member's read receipt.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    events::room::power_levels::RoomPowerLevels,
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use crate::{
    account_data::AccountData,
    error::{Error, Result},
    pdu::Pdu,
    storage::{EventNotifications, NotificationRecord, ReadMarks, Store, ThreadedCounts},
};

mod evaluation;

use evaluation::{Evaluation, RuleIds, Rules};

const RULES_TYPE: &str = "m.push_rules";

/// What the room looks like at a new event, for evaluating push rules.
pub struct RoomContext {
    pub room_id: OwnedRoomId,
    pub member_count: u64,
    pub power_levels: RoomPowerLevels,
    /// Local users to evaluate the event for, with their display names in the room.
    pub recipients: Vec<(OwnedUserId, String)>,
    /// The thread the event is in (`None`: the main timeline), whose counts it adds to.
    pub thread: Option<OwnedEventId>,
}

pub struct Push {
    store: Arc<Store>,
    account_data: Arc<AccountData>,
    /// Parsed rulesets of users events were evaluated for: parsing (or building the
    /// server default) for every member at every event dominated the send path. Rules only
    /// change through [`Push::update_ruleset`], which replaces the entry.
    rulesets: Mutex<HashMap<OwnedUserId, Arc<Rules>>>,
    rule_ids: RuleIds,
    /// The unread counts each user's last sync computed per room, to continue from.
    tallies: Mutex<HashMap<(OwnedUserId, OwnedRoomId), Tally>>,
}

/// Unread counts of one user in one room: the notifying events up to `upto` that `marks`
/// leave unread.
#[derive(Debug, Clone)]
struct Tally {
    marks: ReadMarks,
    upto: u64,
    counts: ThreadedCounts,
}

impl Push {
    pub fn new(store: Arc<Store>, account_data: Arc<AccountData>) -> Self {
        Self {
            store,
            account_data,
            rulesets: Mutex::default(),
            rule_ids: RuleIds::default(),
            tallies: Mutex::default(),
        }
    }

    /// The user's rules: what they stored, or the server defaults.
    pub fn ruleset(&self, user: &UserId) -> Result<Ruleset> {
        match self.store.account_data(user, None, RULES_TYPE)? {
            Some(record) => serde_json::from_value(record.content["global"].clone())
                .map_err(|e| Error::Internal(format!("stored push rules of {user}: {e}"))),
            None => Ok(Ruleset::server_default(user)),
        }
    }

    /// The user's rules, parsed once and then kept.
    fn cached_rules(&self, user: &UserId) -> Result<Arc<Rules>> {
        if let Some(rules) = self.rulesets.lock().expect("never poisoned").get(user) {
            return Ok(rules.clone());
        }
        let rules = self.rule_ids.rules(self.ruleset(user)?);
        // An update that raced this read has put the newer rules: keep those.
        Ok(self.rulesets.lock().expect("never poisoned").entry(user.to_owned()).or_insert(rules).clone())
    }

    /// The `m.push_rules` account data event content for the user. Every sync sends it, so
    /// it comes from the parsed rules kept for push evaluation, not from storage.
    pub fn rules_content(&self, user: &UserId) -> Result<Box<RawJsonValue>> {
        Ok(self.cached_rules(user)?.content.clone())
    }

    /// Applies `change` to the user's rules and stores them.
    pub async fn update_ruleset<T>(
        &self,
        user: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let mut ruleset = self.ruleset(user)?;
        let result = change(&mut ruleset)?;
        self.account_data.set_managed(user, None, RULES_TYPE, &json!({"global": ruleset})).await?;
        let rules = self.rule_ids.rules(ruleset);
        self.rulesets.lock().expect("never poisoned").insert(user.to_owned(), rules);
        Ok(result)
    }

    /// Evaluates a new event for its recipients and records the notifications it causes,
    /// durable with the event's own flush.
    pub async fn process(
        &self,
        pdu: &Pdu,
        client_event: &JsonValue,
        position: u64,
        context: RoomContext,
    ) -> Result<()> {
        let raw: Raw<JsonValue> = Raw::from_json(
            serde_json::value::to_raw_value(client_event).map_err(|e| Error::Internal(e.to_string()))?,
        );
        let event = FlattenedJson::from_raw(&raw);
        let mut evaluation = Evaluation::new(&event);
        let ts = MilliSecondsSinceUnixEpoch::now().get().into();
        let mut notified =
            EventNotifications::new(context.room_id.clone(), pdu.event_id.clone(), ts, context.thread);
        // One context for every recipient, with the recipient's fields set in turn.
        let mut room_ctx = PushConditionRoomCtx::new(
            context.room_id,
            UInt::new_saturating(context.member_count),
            pdu.sender.clone(),
            String::new(),
        );
        room_ctx.power_levels = Some(PushConditionPowerLevelsCtx::from(context.power_levels));
        for (user, display_name) in context.recipients {
            if user == pdu.sender {
                continue;
            }
            room_ctx.user_display_name = display_name;
            if self.account_data.ignored_users(&user)?.contains(&pdu.sender) {
                continue;
            }
            let rules = self.cached_rules(&user)?;
            room_ctx.user_id = user;
            let actions = evaluation.actions(&rules, &room_ctx).await;
            if actions.iter().any(Action::should_notify) {
                let highlight = actions.iter().any(Action::is_highlight);
                notified.add(
                    room_ctx.user_id.clone(),
                    highlight,
                    serde_json::to_value(actions).unwrap_or_default(),
                );
            }
        }
        Ok(self.store.stage_notifications(position, &notified)?)
    }

    /// The user's unread counts in the room by thread, counting events at or before `upto`
    /// (the position a sync answers up to, so the counts match the timeline it sends) and
    /// after `joined_at`, the position of the user's join: without a read receipt, what came
    /// before the join (such as the invite that notified them) is not unread in the joined
    /// room.
    pub fn unread_counts(
        &self,
        user: &UserId,
        room: &RoomId,
        joined_at: u64,
        upto: u64,
    ) -> Result<ThreadedCounts> {
        let mut marks = self.store.read_marks(user, room)?;
        marks.unthreaded = marks.unthreaded.max(joined_at);
        let key = (user.to_owned(), room.to_owned());
        let cached = self.tallies.lock().expect("never poisoned").get(&key).cloned();
        // Each sync counts only what came since the last one, unless a receipt moved. Events
        // of threads without a receipt of their own are unread from the unthreaded mark on,
        // so that is where a full count starts.
        let counts = match cached {
            Some(mut tally) if tally.marks == marks && tally.upto <= upto => {
                let new = self.store.count_notifications(user, room, &marks, tally.upto, upto)?;
                tally.counts.add(&new);
                tally.counts
            }
            _ => self.store.count_notifications(user, room, &marks, marks.unthreaded, upto)?,
        };
        self.tallies
            .lock()
            .expect("never poisoned")
            .insert(key, Tally { marks, upto, counts: counts.clone() });
        Ok(counts)
    }

    /// The user's notifications, newest first, before the `from` token.
    pub fn notifications(
        &self,
        user: &UserId,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, NotificationRecord)>> {
        let rooms: Vec<OwnedRoomId> =
            self.store.user_rooms(user)?.into_iter().map(|(room, _)| room).collect();
        Ok(self.store.notifications(user, &rooms, from.unwrap_or(u64::MAX), limit)?)
    }

    /// Whether the user's receipts (unthreaded, or in the notification's thread) cover it.
    pub fn is_read(&self, user: &UserId, notification: &NotificationRecord, position: u64) -> Result<bool> {
        let marks = self.store.read_marks(user, &notification.room_id)?;
        Ok(marks.read_upto(notification.thread.as_deref().map(|t| t.as_str())) >= position)
    }

    pub fn pushers(&self, user: &UserId) -> Result<Vec<JsonValue>> {
        Ok(self.store.pushers(user)?)
    }

    /// Adds or replaces a pusher; `None` deletes it (the spec's `kind: null`).
    pub async fn set_pusher(
        &self,
        user: &UserId,
        app_id: &str,
        pushkey: &str,
        pusher: Option<&JsonValue>,
    ) -> Result<()> {
        Ok(self.store.set_pusher(user, app_id, pushkey, pusher).await?)
    }
}
