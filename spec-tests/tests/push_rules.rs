//! Push rules (`/pushrules`), pushers and `/notifications`.

mod sync_support;

use spec_tests::*;
use sync_support::*;

const RULES: &str = "/_matrix/client/v3/pushrules/global";

fn override_ids(all: &Value) -> Vec<String> {
    all["global"]["override"]
        .as_array()
        .unwrap_or_else(|| panic!("{all}"))
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

fn keyword_rule(pattern: &str) -> Value {
    json!({
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": pattern}],
        "actions": ["notify"],
    })
}

#[tokio::test]
async fn pushrules_with_a_trailing_slash_lists_the_server_default_rules() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let all = alice.get("/_matrix/client/v3/pushrules/").await.expect(200);
    let overrides = override_ids(&all);
    assert_eq!(overrides.first().map(String::as_str), Some(".m.rule.master"), "{all}");
    assert!(overrides.iter().any(|id| id == ".m.rule.is_user_mention"), "{all}");
    let underrides: Vec<&str> = all["global"]["underride"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    assert!(underrides.contains(&".m.rule.message"), "{all}");
    // Clients find the same rules in their first sync.
    let body = sync(&alice, None, 0, None).await;
    let synced = of_type(&body["account_data"], "m.push_rules");
    assert_eq!(synced.len(), 1, "{body}");
    assert_eq!(synced[0]["content"]["global"]["override"], all["global"]["override"]);
}

#[tokio::test]
async fn a_server_default_rule_can_be_read_on_its_own() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let rule = alice.get(&format!("{RULES}/override/.m.rule.master")).await.expect(200);
    assert_eq!((rule["rule_id"].as_str(), rule["default"].as_bool()), (Some(".m.rule.master"), Some(true)));
    assert_eq!(rule["enabled"], false, "{rule}");
    alice.get(&format!("{RULES}/override/.m.rule.nope")).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn new_override_rules_are_placed_by_before_and_after() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    alice.put(&format!("{RULES}/override/middle"), &keyword_rule("middle")).await.expect(200);
    alice.put(&format!("{RULES}/override/first?before=middle"), &keyword_rule("first")).await.expect(200);
    alice.put(&format!("{RULES}/override/last?after=middle"), &keyword_rule("last")).await.expect(200);

    let rule = alice.get(&format!("{RULES}/override/middle")).await.expect(200);
    assert_eq!(rule["default"], false, "{rule}");
    assert_eq!(rule["enabled"], true, "{rule}");
    assert_eq!(rule["actions"], json!(["notify"]), "{rule}");
    assert_eq!(rule["conditions"][0]["pattern"], "middle", "{rule}");

    let ids = override_ids(&alice.get("/_matrix/client/v3/pushrules/").await.expect(200));
    let at = |id: &str| ids.iter().position(|x| x == id).unwrap_or_else(|| panic!("{id} missing: {ids:?}"));
    assert!(at("first") < at("middle") && at("middle") < at("last"), "{ids:?}");

    // Placing next to a rule that does not exist is refused and stores nothing.
    let reply = alice.put(&format!("{RULES}/override/stray?before=ghost"), &keyword_rule("x")).await;
    assert!(matches!(reply.status, 400 | 404), "{reply:?}");
    alice.get(&format!("{RULES}/override/stray")).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_rules_enabled_flag_and_actions_can_be_read_and_changed() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    alice.put(&format!("{RULES}/override/mine"), &keyword_rule("cake")).await.expect(200);

    let enabled = format!("{RULES}/override/mine/enabled");
    assert_eq!(alice.get(&enabled).await.expect(200), json!({"enabled": true}));
    alice.put(&enabled, &json!({"enabled": false})).await.expect(200);
    assert_eq!(alice.get(&enabled).await.expect(200), json!({"enabled": false}));

    let actions = format!("{RULES}/override/mine/actions");
    let new_actions = json!(["notify", {"set_tweak": "sound", "value": "ding"}]);
    alice.put(&actions, &json!({"actions": new_actions})).await.expect(200);
    assert_eq!(alice.get(&actions).await.expect(200), json!({"actions": new_actions}));

    // Server-default rules can be switched off too.
    let default_enabled = format!("{RULES}/underride/.m.rule.message/enabled");
    alice.put(&default_enabled, &json!({"enabled": false})).await.expect(200);
    assert_eq!(alice.get(&default_enabled).await.expect(200), json!({"enabled": false}));

    alice.get(&format!("{RULES}/override/ghost/enabled")).await.expect_error(404, "M_NOT_FOUND");
    alice
        .put(&format!("{RULES}/override/ghost/actions"), &json!({"actions": []}))
        .await
        .expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_users_rule_can_be_deleted_but_a_server_default_rule_cannot() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    alice.put(&format!("{RULES}/override/mine"), &keyword_rule("cake")).await.expect(200);
    alice.delete(&format!("{RULES}/override/mine"), None).await.expect(200);
    alice.get(&format!("{RULES}/override/mine")).await.expect_error(404, "M_NOT_FOUND");
    alice.delete(&format!("{RULES}/override/mine"), None).await.expect_error(404, "M_NOT_FOUND");

    let refused = alice.delete(&format!("{RULES}/override/.m.rule.master"), None).await;
    assert!((400..500).contains(&refused.status) && refused.errcode().starts_with("M_"), "{refused:?}");
    alice.get(&format!("{RULES}/override/.m.rule.master")).await.expect(200);
}

#[tokio::test]
async fn a_disabled_rule_stops_its_notifications() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    // In a two-member room messages notify through .m.rule.room_one_to_one.
    for rule in ["underride/.m.rule.room_one_to_one", "underride/.m.rule.message"] {
        bob.put(&format!("{RULES}/{rule}/enabled"), &json!({"enabled": false})).await.expect(200);
    }
    send_text(&alice, &room, "quiet please").await;
    let body = sync(&bob, None, 0, None).await;
    assert_eq!(joined(&body, &room)["unread_notifications"]["notification_count"], 0, "{body}");
}

#[tokio::test]
async fn pushers_can_be_set_listed_and_deleted() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let pusher = json!({
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": "device-key-1",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"},
    });
    alice.post("/_matrix/client/v3/pushers/set", &pusher).await.expect(200);
    let listed = alice.get("/_matrix/client/v3/pushers").await.expect(200);
    let pushers = listed["pushers"].as_array().unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(pushers.len(), 1, "{listed}");
    assert_eq!(pushers[0]["pushkey"], "device-key-1");
    assert_eq!(pushers[0]["data"]["url"], "https://push.example.org/_matrix/push/v1/notify");

    // Other users do not see it.
    let bob = server.client().register("bob", "password-b").await;
    assert_eq!(bob.get("/_matrix/client/v3/pushers").await.expect(200), json!({"pushers": []}));

    let delete = json!({"kind": null, "app_id": "org.example.app", "pushkey": "device-key-1"});
    alice.post("/_matrix/client/v3/pushers/set", &delete).await.expect(200);
    assert_eq!(alice.get("/_matrix/client/v3/pushers").await.expect(200), json!({"pushers": []}));
}

#[tokio::test]
async fn notifications_lists_a_notifying_event_and_whether_it_was_read() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    let message = send_text(&alice, &room, "ping").await;

    let list = bob.get("/_matrix/client/v3/notifications").await.expect(200);
    let first = &list["notifications"][0];
    assert_eq!(first["event"]["event_id"], message, "{list}");
    assert_eq!(first["room_id"], room.as_str(), "{list}");
    assert_eq!(first["read"], false, "{list}");
    assert!(first["actions"].as_array().is_some_and(|a| a.iter().any(|x| x == "notify")), "{list}");
    assert!(first["ts"].is_u64(), "{list}");
    // Alice's own message is not her notification.
    let own = alice.get("/_matrix/client/v3/notifications").await.expect(200);
    assert_eq!(own["notifications"], json!([]), "{own}");

    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&message));
    bob.post(&path, &json!({})).await.expect(200);
    let list = bob.get("/_matrix/client/v3/notifications").await.expect(200);
    assert_eq!(list["notifications"][0]["read"], true, "{list}");
    let highlights = bob.get("/_matrix/client/v3/notifications?only=highlight").await.expect(200);
    assert_eq!(highlights["notifications"], json!([]), "{highlights}");
}

#[tokio::test]
async fn notifications_page_backwards_and_filter_highlights() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let bob = server.client().register("bob", "password-b").await;
    let room = public_room(&alice).await;
    join(&bob, &room).await;
    let first = send_text(&alice, &room, "one").await;
    let second = send_text(&alice, &room, "two").await;
    let mention = json!({"msgtype": "m.text", "body": "three", "m.mentions": {"user_ids": [bob.user_id()]}});
    let third = send_event(&alice, &room, "m.room.message", mention).await;
    let ids = |page: &Value| -> Vec<String> {
        page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["event"]["event_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let page = bob.get("/_matrix/client/v3/notifications?limit=2").await.expect(200);
    assert_eq!(ids(&page), vec![third.clone(), second], "{page}");
    let next = page["next_token"].as_str().unwrap_or_else(|| panic!("a next_token: {page}"));
    let page =
        bob.get(&format!("/_matrix/client/v3/notifications?limit=2&from={}", enc(next))).await.expect(200);
    assert_eq!(ids(&page), vec![first], "{page}");
    assert!(page["next_token"].is_null(), "{page}");

    let page = bob.get("/_matrix/client/v3/notifications?only=highlight").await.expect(200);
    assert_eq!(ids(&page), vec![third], "{page}");
    assert!(page["notifications"][0]["actions"].to_string().contains("highlight"), "{page}");
}
