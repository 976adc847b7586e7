//! Evaluating one event for many users at once.
//!
//! Every local member of a room gets the event checked against their rules, and most of
//! them have the same rules: the server defaults, where only a handful mention the user.
//! A rule's outcome depends on the event, the room and — for `contains_display_name`
//! only — the user's display name (each condition's sender check is the same for every
//! recipient, since the sender is never evaluated for). So identical rules are evaluated
//! once per event and their outcome shared; per-member evaluation of the full default
//! ruleset had become the largest cost of a send to a 50-member room.
//!
//! The same holds for single conditions. A rule that names the user (`.m.rule.invite_for_me`
//! matches `state_key` against the user's id) is unique to each user, but it fails with
//! its first condition (`type` is `m.room.member`) for almost every event; that condition
//! is shared, so most per-user rules are settled without evaluating them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::push::{Action, AnyPushRuleRef, FlattenedJson, PushCondition, PushConditionRoomCtx, Ruleset};
use serde::Serialize;
use serde_json::value::{RawValue as RawJsonValue, to_raw_value};

/// A user's ruleset, with what identifies each rule and condition across users.
pub struct Rules {
    pub ruleset: Ruleset,
    /// The `m.push_rules` account data content, `{"global": ruleset}`, serialised once:
    /// every initial sync sends it.
    pub content: Box<RawJsonValue>,
    /// For each rule in evaluation order, how to find its outcome.
    checks: Vec<Check>,
}

/// How one rule's outcome is found for a recipient.
struct Check {
    /// The id the rule shares with every identical rule, or `None` when its outcome depends
    /// on the user.
    shared: Option<u32>,
    /// Conditions of the rule whose outcome is the same for every user, with their ids: if
    /// one fails, so does the rule.
    conditions: Vec<(u32, PushCondition)>,
}

/// Interns rules and conditions by their serialised form: equal ids mean equal rules.
#[derive(Default)]
pub struct RuleIds(Mutex<HashMap<String, u32>>);

impl RuleIds {
    pub fn rules(&self, ruleset: Ruleset) -> Arc<Rules> {
        let mut ids = self.0.lock().expect("never poisoned");
        let mut intern = |form: String| {
            let next = ids.len() as u32;
            *ids.entry(form).or_insert(next)
        };
        let checks = ruleset
            .iter()
            .map(|rule| Check {
                shared: shareable_form(rule).map(&mut intern),
                conditions: shareable_conditions(rule)
                    .map(|condition| {
                        let form = serde_json::to_string(&condition).expect("push conditions serialise");
                        (intern(format!("condition:{form}")), condition)
                    })
                    .collect(),
            })
            .collect();
        #[derive(Serialize)]
        struct Content<'a> {
            global: &'a Ruleset,
        }
        let content = to_raw_value(&Content { global: &ruleset }).expect("push rules serialise");
        Arc::new(Rules { ruleset, content, checks })
    }
}

/// Whether a condition's outcome depends on the user evaluated for.
#[allow(deprecated)]
fn per_user(condition: &PushCondition) -> bool {
    matches!(condition, PushCondition::ContainsDisplayName)
}

/// The rule's kind and JSON, unless its outcome depends on the user evaluated for.
fn shareable_form(rule: AnyPushRuleRef<'_>) -> Option<String> {
    let json = match rule {
        AnyPushRuleRef::Override(rule) | AnyPushRuleRef::Underride(rule) => {
            if rule.conditions.iter().any(per_user) {
                return None;
            }
            serde_json::to_string(rule)
        }
        AnyPushRuleRef::Content(rule) => serde_json::to_string(rule),
        AnyPushRuleRef::Room(rule) => serde_json::to_string(rule),
        AnyPushRuleRef::Sender(rule) => serde_json::to_string(rule),
        _ => return None,
    };
    let kind = match rule {
        AnyPushRuleRef::Override(_) => "override",
        AnyPushRuleRef::Underride(_) => "underride",
        AnyPushRuleRef::Content(_) => "content",
        AnyPushRuleRef::Room(_) => "room",
        _ => "sender",
    };
    Some(format!("{kind}:{}", json.ok()?))
}

/// The conditions of an enabled override or underride rule that are the same for every
/// user. A rule applies only if all its conditions do (and ruma's own checks pass).
fn shareable_conditions(rule: AnyPushRuleRef<'_>) -> impl Iterator<Item = PushCondition> + '_ {
    let conditions = match rule {
        AnyPushRuleRef::Override(rule) | AnyPushRuleRef::Underride(rule) if rule.enabled => {
            rule.conditions.as_slice()
        }
        _ => &[],
    };
    conditions.iter().filter(|c| !per_user(c)).cloned()
}

/// One event's evaluation, shared across its recipients.
pub struct Evaluation<'e> {
    event: &'e FlattenedJson,
    /// Outcomes by rule or condition id, as they are found.
    outcomes: Vec<Option<bool>>,
}

impl<'e> Evaluation<'e> {
    pub fn new(event: &'e FlattenedJson) -> Self {
        Self { event, outcomes: Vec::new() }
    }

    fn outcome(&self, id: u32) -> Option<bool> {
        self.outcomes.get(id as usize).copied().flatten()
    }

    fn record(&mut self, id: u32, outcome: bool) {
        let index = id as usize;
        if index >= self.outcomes.len() {
            self.outcomes.resize(index + 1, None);
        }
        self.outcomes[index] = Some(outcome);
    }

    /// The actions of the first rule that applies for the recipient `context` describes.
    pub async fn actions<'r>(&mut self, rules: &'r Rules, context: &PushConditionRoomCtx) -> &'r [Action] {
        for (rule, check) in rules.ruleset.iter().zip(&rules.checks) {
            let applies = match check.shared.and_then(|id| self.outcome(id)) {
                Some(outcome) => outcome,
                None => {
                    let outcome =
                        self.conditions_hold(check, context).await && rule.applies(self.event, context).await;
                    if let Some(id) = check.shared {
                        self.record(id, outcome);
                    }
                    outcome
                }
            };
            if applies {
                return rule.actions();
            }
        }
        &[]
    }

    /// False when one of the rule's shared conditions fails for this event.
    async fn conditions_hold(&mut self, check: &Check, context: &PushConditionRoomCtx) -> bool {
        for (id, condition) in &check.conditions {
            let holds = match self.outcome(*id) {
                Some(holds) => holds,
                None => {
                    let holds = condition.applies(self.event, context).await;
                    self.record(*id, holds);
                    holds
                }
            };
            if !holds {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        UInt, UserId,
        events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
        owned_room_id,
        push::{NewConditionalPushRule, NewPushRule},
        room_version_rules::AuthorizationRules,
        serde::Raw,
    };
    use serde_json::json;

    use super::*;

    const SENDER: &str = "@dave:example.org";

    fn context(user: &UserId, display_name: &str) -> PushConditionRoomCtx {
        let mut context = PushConditionRoomCtx::new(
            owned_room_id!("!room:example.org"),
            UInt::new_saturating(4),
            user.to_owned(),
            display_name.to_owned(),
        );
        // The sender may notify the whole room, so that `@room` rules can apply.
        let mut content = RoomPowerLevelsEventContent::new(&AuthorizationRules::V11);
        content.users.insert(SENDER.try_into().unwrap(), 100.into());
        let levels =
            RoomPowerLevels::new(RoomPowerLevelsSource::from(Some(content)), &AuthorizationRules::V11, []);
        context.power_levels = Some(levels.into());
        context
    }

    /// Shared outcomes must give each user what ruma's own per-user evaluation gives.
    #[tokio::test]
    async fn shared_evaluation_matches_per_user_evaluation() {
        let ids = RuleIds::default();
        let users =
            [("@alice:example.org", "Alice"), ("@bob:example.org", "Bobby"), ("@carol:example.org", "carol")];
        let message = |content: serde_json::Value| {
            json!({
                "type": "m.room.message",
                "sender": SENDER,
                "room_id": "!room:example.org",
                "content": content,
            })
        };
        let events = [
            message(json!({"msgtype": "m.text", "body": "hello everyone"})),
            message(json!({"msgtype": "m.text", "body": "hi Alice, and bob"})),
            message(json!({"msgtype": "m.text", "body": "Bobby?"})),
            message(json!({"msgtype": "m.text", "body": "thanks Alice"})),
            message(json!({"msgtype": "m.text", "body": "@room look"})),
            message(json!({"msgtype": "m.notice", "body": "carol"})),
            message(
                json!({"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": ["@carol:example.org"]}}),
            ),
            // Per-user rules with shared conditions: only Bob is invited.
            json!({
                "type": "m.room.member",
                "sender": SENDER,
                "room_id": "!room:example.org",
                "state_key": "@bob:example.org",
                "content": {"membership": "invite"},
            }),
            json!({
                "type": "m.room.member",
                "sender": SENDER,
                "room_id": "!room:example.org",
                "state_key": "@alice:example.org",
                "content": {"membership": "join"},
            }),
        ];
        for event in events {
            let raw: Raw<serde_json::Value> = Raw::new(&event).unwrap();
            let flat = FlattenedJson::from_raw(&raw);
            let mut evaluation = Evaluation::new(&flat);
            for (user, name) in users {
                let user = UserId::parse(user).unwrap();
                let mut ruleset = Ruleset::server_default(&user);
                // A rule whose outcome depends on the user, as older defaults had.
                #[allow(deprecated)]
                let by_name = NewConditionalPushRule::new(
                    "by_name".to_owned(),
                    vec![PushCondition::ContainsDisplayName],
                    vec![Action::Notify],
                );
                ruleset.insert(NewPushRule::Override(by_name), None, None).unwrap();
                let context = context(&user, name);
                let expected = serde_json::to_value(ruleset.get_actions(&raw, &context).await).unwrap();
                let rules = ids.rules(ruleset);
                let shared = serde_json::to_value(evaluation.actions(&rules, &context).await).unwrap();
                assert_eq!(shared, expected, "{user} on {event}");
                if event["content"]["membership"] == "invite" {
                    let invited = user == "@bob:example.org";
                    assert_eq!(shared.to_string().contains("notify"), invited, "invite notifies only Bob");
                }
            }
        }
    }
}
