//! Push rules, notification counts, `/notifications`, pushers and delivery to their
//! gateways.
//!
//! The rules live in the user's `m.push_rules` account data (as clients expect to find
//! them in `/sync`), starting from ruma's server-default ruleset. Every new event is
//! evaluated against the rules of each local member it could notify; notifying events are
//! recorded, and the unread counts are the recorded events after the member's read receipt.
//! The same records are what each HTTP pusher delivers to its gateway ([`delivery`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use reqwest::Url;

use ruma::{
    DeviceId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    api::client::push::{Pusher, PusherKind},
    events::room::power_levels::RoomPowerLevels,
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::{Value as JsonValue, json, value::RawValue as RawJsonValue};

use crate::{
    account_data::AccountData,
    config::PushConfig,
    error::{Error, Result},
    outbound::OutboundPolicy,
    pdu::Pdu,
    storage::{
        EventNotifications, NotificationRecord, PusherKey, PusherRecord, PusherState, Store, ThreadedCounts,
    },
};

mod counts;
mod delivery;
mod evaluation;
mod gateway;
mod notification;

use counts::UnreadCounter;
use delivery::Delivery;
pub use delivery::TestOutcome;
use evaluation::{Evaluation, RuleIds, Rules};
pub use gateway::NOTIFY_PATH;

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
    counter: Arc<UnreadCounter>,
    delivery: Delivery,
}

impl Push {
    pub fn new(
        store: Arc<Store>,
        account_data: Arc<AccountData>,
        config: PushConfig,
        outbound: Arc<OutboundPolicy>,
    ) -> Self {
        let counter = Arc::new(UnreadCounter::default());
        Self {
            delivery: Delivery::new(store.clone(), counter.clone(), config, outbound),
            store,
            account_data,
            rulesets: Mutex::default(),
            rule_ids: RuleIds::default(),
            counter,
        }
    }

    /// Starts delivering to push gateways (a running server does; the CLI does not).
    pub fn start_delivery(&self) -> Result<()> {
        self.delivery.start()
    }

    /// Records how far delivery got, before the server stops.
    pub fn finish_delivery(&self) -> Result<()> {
        self.delivery.write_cursors()
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
    /// durable with the event's own flush. Returns whom it notifies, for
    /// [`Push::deliver`] once the event is durable.
    pub async fn process(
        &self,
        pdu: &Pdu,
        client_event: &JsonValue,
        position: u64,
        context: RoomContext,
    ) -> Result<Vec<OwnedUserId>> {
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
        self.store.stage_notifications(position, &notified)?;
        Ok(notified.recipients().cloned().collect())
    }

    /// Hands a durable event's notifications to the recipients' pushers; returns at once.
    /// Call before the event's position becomes visible (see [`delivery`]).
    pub fn deliver(&self, room: &OwnedRoomId, position: u64, recipients: Vec<OwnedUserId>) {
        self.delivery.notified(room, position, recipients);
    }

    /// A local user's read receipt moved: their phones' badges follow.
    pub fn receipt_moved(&self, user: &UserId) {
        self.delivery.receipt_moved(user);
    }

    /// The user's unread counts in the room by thread, counting events at or before `upto`
    /// and after `joined_at` (see [`UnreadCounter::unread_counts`]).
    pub fn unread_counts(
        &self,
        user: &UserId,
        room: &RoomId,
        joined_at: u64,
        upto: u64,
    ) -> Result<ThreadedCounts> {
        self.counter.unread_counts(&self.store, user, room, joined_at, upto)
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

    /// The user's pushers as the client set them.
    pub fn pushers(&self, user: &UserId) -> Result<Vec<JsonValue>> {
        Ok(self.store.pushers(user)?.into_iter().map(|record| record.pusher).collect())
    }

    /// The user's pushers with their delivery state, for operators.
    pub fn pusher_records(&self, user: &UserId) -> Result<Vec<PusherRecord>> {
        Ok(self.store.pushers(user)?)
    }

    /// Adds or replaces a pusher set by `device`. Unless `append`, other users' pushers with
    /// the same app id and push key are removed (the key moved to this user's account).
    pub async fn set_pusher(
        &self,
        user: &UserId,
        device: Option<&DeviceId>,
        pusher: Pusher,
        append: bool,
    ) -> Result<()> {
        self.check_pusher(&pusher)?;
        let key = PusherKey {
            user_id: user.to_owned(),
            app_id: pusher.ids.app_id.clone(),
            pushkey: pusher.ids.pushkey.clone(),
        };
        let json = serde_json::to_value(&pusher).map_err(|e| Error::Internal(e.to_string()))?;
        // Delivery starts from now: a new phone is not sent the past.
        let state = PusherState {
            set_at_ms: MilliSecondsSinceUnixEpoch::now().get().into(),
            device_id: device.map(ToOwned::to_owned),
            delivered_upto: self.store.visible_position(),
            failing_since: None,
        };
        let taken = self.store.set_pusher(&key, &json, &state, !append).await?;
        for other in &taken {
            self.delivery.pusher_removed(other);
        }
        self.delivery.pusher_set(PusherRecord { key, pusher: json, state });
        Ok(())
    }

    /// Removes a pusher (the spec's `kind: null`); removing one that does not exist is fine.
    pub async fn remove_pusher(&self, user: &UserId, app_id: &str, pushkey: &str) -> Result<()> {
        let key =
            PusherKey { user_id: user.to_owned(), app_id: app_id.to_owned(), pushkey: pushkey.to_owned() };
        self.store.remove_pusher(&key).await?;
        self.delivery.pusher_removed(&key);
        Ok(())
    }

    /// Sends each of the user's HTTP pushers a badge update and reports the answers.
    pub async fn test_pushers(&self, user: &UserId) -> Result<Vec<(PusherKey, TestOutcome)>> {
        self.delivery.test(user).await
    }

    /// The spec's rules for a pusher: limits on the ids, and for `http` a URL to the push
    /// gateway API's one path, to a place outbound requests may go.
    fn check_pusher(&self, pusher: &Pusher) -> Result<()> {
        if pusher.ids.pushkey.len() > 512 {
            return Err(Error::InvalidParam("pushkey is longer than 512 bytes".to_owned()));
        }
        if pusher.ids.app_id.chars().count() > 64 {
            return Err(Error::InvalidParam("app_id is longer than 64 characters".to_owned()));
        }
        let data = match &pusher.kind {
            PusherKind::Http(data) => data,
            PusherKind::Email(_) => return Ok(()),
            _ => return Err(Error::InvalidParam("kind must be http or email".to_owned())),
        };
        let url = Url::parse(&data.url)
            .map_err(|e| Error::InvalidParam(format!("data.url {:?} is not a URL: {e}", data.url)))?;
        if url.path() != NOTIFY_PATH || url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidParam(format!(
                "data.url must be a URL of the push gateway API: https://…{NOTIFY_PATH}"
            )));
        }
        self.delivery.check_url(&url).map_err(|refused| Error::InvalidParam(format!("data.url: {refused}")))
    }
}
