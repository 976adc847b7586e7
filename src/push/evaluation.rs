//! Evaluating one event for many users at once.
//!
//! Every local member of a room gets the event checked against their rules, and most of
//! them have the same rules: the server defaults, where only a handful mention the user.
//! A rule's outcome depends on the event, the room and — for `contains_display_name`
//! only — the user's display name (each condition's sender check is the same for every
//! recipient, since the sender is never evaluated for). So identical rules are evaluated
//! once per event and their outcome shared; per-member evaluation of the full default
//! ruleset had become the largest cost of a send to a 50-member room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::push::{Action, AnyPushRuleRef, FlattenedJson, PushCondition, PushConditionRoomCtx, Ruleset};

/// A user's ruleset, with what identifies each rule across users.
pub struct Rules {
    pub ruleset: Ruleset,
    /// For each rule in evaluation order, the id it shares with every identical rule, or
    /// `None` when its outcome depends on the user.
    shared: Vec<Option<u32>>,
}

/// Interns rules by their serialised form: equal ids mean equal rules.
#[derive(Default)]
pub struct RuleIds(Mutex<HashMap<String, u32>>);

impl RuleIds {
    pub fn rules(&self, ruleset: Ruleset) -> Arc<Rules> {
        let mut ids = self.0.lock().expect("never poisoned");
        let shared = ruleset
            .iter()
            .map(|rule| {
                let form = shareable_form(rule)?;
                let next = ids.len() as u32;
                Some(*ids.entry(form).or_insert(next))
            })
            .collect();
        Arc::new(Rules { ruleset, shared })
    }
}

/// The rule's kind and JSON, unless its outcome depends on the user evaluated for.
fn shareable_form(rule: AnyPushRuleRef<'_>) -> Option<String> {
    let json = match rule {
        AnyPushRuleRef::Override(rule) | AnyPushRuleRef::Underride(rule) => {
            #[allow(deprecated)]
            let per_user = rule.conditions.iter().any(|c| matches!(c, PushCondition::ContainsDisplayName));
            if per_user {
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

/// One event's evaluation, shared across its recipients.
pub struct Evaluation<'e> {
    event: &'e FlattenedJson,
    outcomes: HashMap<u32, bool>,
}

impl<'e> Evaluation<'e> {
    pub fn new(event: &'e FlattenedJson) -> Self {
        Self { event, outcomes: HashMap::new() }
    }

    /// The actions of the first rule that applies for the recipient `context` describes.
    pub async fn actions<'r>(&mut self, rules: &'r Rules, context: &PushConditionRoomCtx) -> &'r [Action] {
        for (rule, shared) in rules.ruleset.iter().zip(&rules.shared) {
            let applies = match shared.and_then(|id| self.outcomes.get(&id).map(|o| (id, *o))) {
                Some((_, outcome)) => outcome,
                None => {
                    let outcome = rule.applies(self.event, context).await;
                    if let Some(id) = shared {
                        self.outcomes.insert(*id, outcome);
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
        let contents = [
            json!({"msgtype": "m.text", "body": "hello everyone"}),
            json!({"msgtype": "m.text", "body": "hi Alice, and bob"}),
            json!({"msgtype": "m.text", "body": "Bobby?"}),
            json!({"msgtype": "m.text", "body": "thanks Alice"}),
            json!({"msgtype": "m.text", "body": "@room look"}),
            json!({"msgtype": "m.notice", "body": "carol"}),
            json!({"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": ["@carol:example.org"]}}),
        ];
        for content in contents {
            let event = json!({
                "type": "m.room.message",
                "sender": SENDER,
                "room_id": "!room:example.org",
                "content": content,
            });
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
                assert_eq!(shared, expected, "{user} on {content}");
            }
        }
    }
}
