//! Synapse-compatible admin API: registration tokens (list with `valid`, show, create,
//! update, delete). They are the tokens `myelin token ...` manages and `/register` spends.

use spec_tests::{admin_api::*, rooms::PASSWORD, *};

const TOKEN_MODE: &str = "[registration]\nmode = \"token\"\n[rate_limits]\nenabled = false\n";

fn tokens(rest: &str) -> String {
    admin_path(&format!("v1/registration_tokens{rest}"))
}

fn listed(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["registration_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn register_body(username: &str, token: &str) -> Value {
    json!({"username": username, "password": PASSWORD,
           "auth": {"type": "m.login.registration_token", "token": token}})
}

#[tokio::test]
async fn token_endpoints_are_for_admins_only() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    root.post(&tokens("/new"), &json!({"token": "abcd"})).await.expect(200);
    let alice = server.client().register("alice", PASSWORD).await;
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", tokens(""), None),
        ("POST", tokens("/new"), Some(json!({}))),
        ("GET", tokens("/abcd"), None),
        ("PUT", tokens("/abcd"), Some(json!({"uses_allowed": 0}))),
        ("DELETE", tokens("/abcd"), None),
    ];
    for (method, path, body) in &cases {
        assert_admin_only(&server, &alice, method, path, body.as_ref()).await;
    }
    assert_eq!(listed(&root.get(&tokens("")).await.expect(200)), ["abcd"]);
}

#[tokio::test]
async fn create_use_update_and_delete_a_token() {
    let server = Server::start_with_config(TOKEN_MODE).await;
    let root = admin_client(&server, "root").await;

    let random = root.post(&tokens("/new"), &json!({})).await.expect(200);
    assert_eq!(random["token"].as_str().unwrap().len(), 16, "{random}");
    for (field, value) in [("uses_allowed", Value::Null), ("pending", json!(0)), ("completed", json!(0))] {
        assert_eq!(random[field], value, "{field}: {random}");
    }
    assert!(random["expiry_time"].is_null());
    let short = root.post(&tokens("/new"), &json!({"length": 5})).await.expect(200);
    assert_eq!(short["token"].as_str().unwrap().len(), 5);
    let once = root.post(&tokens("/new"), &json!({"token": "once", "uses_allowed": 1})).await.expect(200);
    assert_eq!((once["token"].clone(), once["uses_allowed"].clone()), (json!("once"), json!(1)));

    // The token lets one person register, and is then spent.
    server.client().post("/_matrix/client/v3/register", &register_body("newbie", "once")).await.expect(200);
    let spent = root.get(&tokens("/once")).await.expect(200);
    assert_eq!(spent["completed"], 1);
    assert_eq!(listed(&root.get(&tokens("?valid=false")).await.expect(200)), ["once"]);
    assert_eq!(
        root.get(&tokens("?valid=true")).await.expect(200)["registration_tokens"].as_array().unwrap().len(),
        2
    );
    // The CLI sees the same tokens.
    let cli = cli_ok(&server.cli(&["token", "list"], None));
    assert!(cli.contains("once"), "{cli}");

    // More uses make it valid again; `null` lifts a limit, an absent field keeps it.
    let tomorrow = 4_102_444_800_000u64;
    let updated =
        root.put(&tokens("/once"), &json!({"uses_allowed": 2, "expiry_time": tomorrow})).await.expect(200);
    assert_eq!(
        (updated["uses_allowed"].clone(), updated["expiry_time"].clone()),
        (json!(2), json!(tomorrow))
    );
    let lifted = root.put(&tokens("/once"), &json!({"uses_allowed": null})).await.expect(200);
    assert_eq!(
        (lifted["uses_allowed"].clone(), lifted["expiry_time"].clone()),
        (Value::Null, json!(tomorrow))
    );
    server.client().post("/_matrix/client/v3/register", &register_body("second", "once")).await.expect(200);
    // Zero uses turns it off without deleting it.
    root.put(&tokens("/once"), &json!({"uses_allowed": 0})).await.expect(200);
    let refused = server.client().post("/_matrix/client/v3/register", &register_body("third", "once")).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    assert_eq!(root.delete(&tokens("/once"), None).await.expect(200), json!({}));
    root.get(&tokens("/once")).await.expect_error(404, "M_NOT_FOUND");
    root.delete(&tokens("/once"), None).await.expect_error(404, "M_NOT_FOUND");
    root.put(&tokens("/once"), &json!({"uses_allowed": 1})).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    root.post(&tokens("/new"), &json!({"token": "taken"})).await.expect(200);
    for body in [
        json!({"token": "taken"}),
        json!({"token": "no spaces"}),
        json!({"token": "x".repeat(65)}),
        json!({"length": 0}),
        json!({"length": 65}),
        json!({"uses_allowed": -1}),
        json!({"expiry_time": 1000}),
    ] {
        root.post(&tokens("/new"), &body).await.expect_error(400, "M_INVALID_PARAM");
    }
    root.post(&tokens("/new"), &json!({"uses_allowed": "many"})).await.expect_error(400, "M_BAD_JSON");
    root.request_raw("POST", &tokens("/new"), "{").await.expect_error(400, "M_NOT_JSON");
    root.put(&tokens("/taken"), &json!({"expiry_time": 1000})).await.expect_error(400, "M_INVALID_PARAM");
    root.put(&tokens("/taken"), &json!({"uses_allowed": -5})).await.expect_error(400, "M_INVALID_PARAM");
    root.get(&tokens("?valid=perhaps")).await.expect_error(400, "M_INVALID_PARAM");
    assert_eq!(listed(&root.get(&tokens("")).await.expect(200)), ["taken"], "nothing bad was stored");
}
