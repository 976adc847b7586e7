//! Synapse-compatible admin API, users: list (paging, filters, order), query, create or
//! modify, deactivate, reset password, admin flag, joined rooms, memberships, pushers and
//! username availability; each refused to callers who are not server admins, and bad
//! input answered with Synapse's error codes.

use spec_tests::{admin_api::*, rooms::PASSWORD, *};

const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

fn users(query: &str) -> String {
    admin_path(&format!("v2/users{query}"))
}

fn names(body: &Value) -> Vec<String> {
    body["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn every_user_endpoint_is_for_admins_only() {
    let server = Server::start().await;
    admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let me = alice.user_id().to_owned();
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", users(""), None),
        ("GET", user_path("v2/users", &me, ""), None),
        ("PUT", user_path("v2/users", &me, ""), Some(json!({"admin": true}))),
        ("POST", user_path("v1/deactivate", &me, ""), Some(json!({}))),
        ("POST", user_path("v1/reset_password", &me, ""), Some(json!({"new_password": "x"}))),
        ("GET", user_path("v1/users", &me, "/joined_rooms"), None),
        ("GET", user_path("v1/users", &me, "/admin"), None),
        ("PUT", user_path("v1/users", &me, "/admin"), Some(json!({"admin": true}))),
        ("GET", user_path("v1/users", &me, "/memberships"), None),
        ("GET", user_path("v1/users", &me, "/pushers"), None),
        ("GET", admin_path("v1/username_available?username=zed"), None),
    ];
    for (method, path, body) in &cases {
        assert_admin_only(&server, &alice, method, path, body.as_ref()).await;
    }
    // Nothing those refused calls asked for happened.
    alice.get(WHOAMI).await.expect(200);
    let root = server.client().login("root", PASSWORD).await;
    assert_eq!(root.get(&user_path("v2/users", &me, "")).await.expect(200)["admin"], false);
    // A token nobody issued is not a missing one.
    server.client().with_token("nope").get(&users("")).await.expect_error(401, "M_UNKNOWN_TOKEN");
    // Every call is logged with the admin who made it.
    let logged = server
        .log_has_line(|l| {
            l.contains("admin API call") && l.contains("@root:localhost") && l.contains("/v2/users")
        })
        .await;
    assert!(logged, "no log line for the call");
}

#[tokio::test]
async fn the_list_pages_filters_and_sorts() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    for name in ["carol", "alice", "bob", "dave"] {
        server.client().register(name, PASSWORD).await;
    }
    root.put(&user_path("v2/users", "@dave:localhost", ""), &json!({"displayname": "Aardvark"}))
        .await
        .expect(200);
    root.post(&user_path("v1/deactivate", "@carol:localhost", ""), &json!({})).await.expect(200);

    let all = root.get(&users("")).await.expect(200);
    assert_eq!(names(&all), ["@alice:localhost", "@bob:localhost", "@dave:localhost", "@root:localhost"]);
    assert_eq!(all["total"], 4);
    assert!(all["next_token"].is_null(), "{all}");
    let alice = &all["users"][0];
    for (field, value) in [("is_guest", json!(false)), ("admin", json!(false)), ("deactivated", json!(false))]
    {
        assert_eq!(alice[field], value, "{field}: {alice}");
    }
    assert_eq!(alice["displayname"], "alice");
    assert!(alice["creation_ts"].as_u64().unwrap() > 1_600_000_000_000, "creation_ts in ms: {alice}");
    assert!(alice["last_seen_ts"].as_u64().is_some(), "{alice}");

    let first = root.get(&users("?limit=2")).await.expect(200);
    assert_eq!(names(&first), ["@alice:localhost", "@bob:localhost"]);
    assert_eq!((first["total"].clone(), first["next_token"].clone()), (json!(4), json!("2")));
    let second = root.get(&users("?limit=2&from=2")).await.expect(200);
    assert_eq!(names(&second), ["@dave:localhost", "@root:localhost"]);
    assert!(second["next_token"].is_null(), "{second}");

    let with_deactivated = root.get(&users("?deactivated=true")).await.expect(200);
    assert_eq!(with_deactivated["total"], 5);
    assert!(
        with_deactivated["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "@carol:localhost" && u["deactivated"] == true)
    );
    assert_eq!(names(&root.get(&users("?admins=true")).await.expect(200)), ["@root:localhost"]);
    assert_eq!(root.get(&users("?admins=false")).await.expect(200)["total"], 3);
    // `name` matches the user id or the display name, whatever the case.
    assert_eq!(names(&root.get(&users("?name=AARD")).await.expect(200)), ["@dave:localhost"]);
    assert_eq!(names(&root.get(&users("?name=bo")).await.expect(200)), ["@bob:localhost"]);
    assert_eq!(names(&root.get(&users("?user_id=ali")).await.expect(200)), ["@alice:localhost"]);

    let by_name_desc = root.get(&users("?order_by=displayname&dir=b")).await.expect(200);
    assert_eq!(
        names(&by_name_desc),
        ["@root:localhost", "@bob:localhost", "@alice:localhost", "@dave:localhost"]
    );
    let admins_last = root.get(&users("?order_by=admin")).await.expect(200);
    assert_eq!(names(&admins_last).last().unwrap(), "@root:localhost");

    for bad in ["?from=-1", "?limit=many", "?order_by=shoe_size", "?dir=sideways", "?deactivated=maybe"] {
        root.get(&users(bad)).await.expect_error(400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn query_a_user_and_refuse_unknown_or_bad_ids() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    server.client().register("alice", PASSWORD).await;
    let body = root.get(&user_path("v2/users", "@alice:localhost", "")).await.expect(200);
    assert_eq!(body["name"], "@alice:localhost");
    assert_eq!(body["threepids"], json!([]));
    assert_eq!(body["external_ids"], json!([]));
    for field in ["admin", "deactivated", "erased", "shadow_banned", "is_guest", "locked"] {
        assert_eq!(body[field], false, "{field}: {body}");
    }
    assert!(body.as_object().unwrap().contains_key("avatar_url"), "{body}");
    root.get(&user_path("v2/users", "@nobody:localhost", "")).await.expect_error(404, "M_NOT_FOUND");
    root.get(&user_path("v2/users", "not-a-user-id", "")).await.expect_error(400, "M_INVALID_PARAM");
    root.get(&user_path("v2/users", "@alice:elsewhere.example", ""))
        .await
        .expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn put_creates_then_modifies_an_account() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let path = user_path("v2/users", "@erin:localhost", "");
    let body = json!({"password": PASSWORD, "displayname": "Erin", "avatar_url": "mxc://localhost/abc"});
    let created = root.put(&path, &body).await.expect(201);
    assert_eq!(
        (created["name"].clone(), created["displayname"].clone()),
        (json!("@erin:localhost"), json!("Erin"))
    );
    assert_eq!(created["avatar_url"], "mxc://localhost/abc");
    let erin = server.client().login("erin", PASSWORD).await;
    let profile = server.client().get("/_matrix/client/v3/profile/@erin:localhost").await.expect(200);
    assert_eq!(profile["displayname"], "Erin");

    // A new display name reaches her rooms, as if she had set it.
    let room = erin.create_room(&json!({})).await;
    let modified = root.put(&path, &json!({"displayname": "Erin E.", "admin": true})).await.expect(200);
    assert_eq!((modified["displayname"].clone(), modified["admin"].clone()), (json!("Erin E."), json!(true)));
    let member = erin.get_state(&room, "m.room.member", "@erin:localhost").await.expect(200);
    assert_eq!(member["displayname"], "Erin E.");
    erin.get(&admin_path("v1/server_version")).await.expect(200);

    // A new password logs every device out unless told otherwise.
    root.put(&path, &json!({"password": "second password", "logout_devices": false})).await.expect(200);
    erin.get(WHOAMI).await.expect(200);
    root.put(&path, &json!({"password": "third password"})).await.expect(200);
    erin.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    server.client().login("erin", "third password").await;

    // A refused request changes nothing: no deactivation with a password to set.
    root.put(&path, &json!({"deactivated": true, "password": "x"}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    server.client().login("erin", "third password").await;
    // Deactivated, then back with a new password (a deactivated account has none).
    root.put(&path, &json!({"deactivated": true})).await.expect(200);
    server
        .client()
        .post(LOGIN, &login_body("erin", "third password"))
        .await
        .expect_error(403, "M_USER_DEACTIVATED");
    root.put(&path, &json!({"deactivated": false})).await.expect_error(400, "M_INVALID_PARAM");
    let back = root.put(&path, &json!({"deactivated": false, "password": PASSWORD})).await.expect(200);
    assert_eq!(back["deactivated"], false);
    server.client().login("erin", PASSWORD).await;

    root.request_raw("PUT", &path, "{oops").await.expect_error(400, "M_NOT_JSON");
    root.put(&path, &json!({"admin": "yes"})).await.expect_error(400, "M_BAD_JSON");
    root.put(&user_path("v2/users", "@x:elsewhere.example", ""), &json!({}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    root.put(&user_path("v2/users", "@bad name:localhost", ""), &json!({}))
        .await
        .expect_error(400, "M_INVALID_USERNAME");
    // Nobody demotes themselves by accident.
    root.put(&user_path("v2/users", "@root:localhost", ""), &json!({"admin": false}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn deactivate_with_erase_and_refuse_unknown_users() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = root.create_room(&json!({"preset": "public_chat"})).await;
    alice.join_room(&room).await.expect(200);

    let path = user_path("v1/deactivate", "@alice:localhost", "");
    let body = root.post(&path, &json!({"erase": true})).await.expect(200);
    assert_eq!(body["id_server_unbind_result"], "success");
    alice.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    let details = root.get(&user_path("v2/users", "@alice:localhost", "")).await.expect(200);
    assert_eq!((details["deactivated"].clone(), details["erased"].clone()), (json!(true), json!(true)));
    assert!(details["displayname"].is_null(), "{details}");
    let member = root.get_state(&room, "m.room.member", "@alice:localhost").await.expect(200);
    assert_eq!(member["membership"], "leave", "she left her rooms");

    // An empty body is allowed, as in Synapse.
    server.client().register("bob", PASSWORD).await;
    root.request_raw("POST", &user_path("v1/deactivate", "@bob:localhost", ""), "").await.expect(200);
    let bob = root.get(&user_path("v2/users", "@bob:localhost", "")).await.expect(200);
    assert_eq!((bob["deactivated"].clone(), bob["erased"].clone()), (json!(true), json!(false)));

    root.post(&user_path("v1/deactivate", "@nobody:localhost", ""), &json!({}))
        .await
        .expect_error(404, "M_NOT_FOUND");
    root.post(&user_path("v1/deactivate", "nobody", ""), &json!({}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    root.post(&user_path("v1/deactivate", "@bob:localhost", ""), &json!({"erase": "yes"}))
        .await
        .expect_error(400, "M_BAD_JSON");
}

#[tokio::test]
async fn reset_password_logs_out_unless_asked_not_to() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let path = user_path("v1/reset_password", "@alice:localhost", "");
    root.post(&path, &json!({"new_password": "new one", "logout_devices": false})).await.expect(200);
    alice.get(WHOAMI).await.expect(200);
    server.client().post(LOGIN, &login_body("alice", PASSWORD)).await.expect_error(403, "M_FORBIDDEN");
    root.post(&path, &json!({"new_password": "newer one"})).await.expect(200);
    alice.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    server.client().login("alice", "newer one").await;

    root.post(&path, &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    root.request_raw("POST", &path, "[1,").await.expect_error(400, "M_NOT_JSON");
    let unknown = user_path("v1/reset_password", "@nobody:localhost", "");
    root.post(&unknown, &json!({"new_password": "x"})).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn admin_flag_and_joined_rooms() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({})).await;

    let joined = root.get(&user_path("v1/users", "@alice:localhost", "/joined_rooms")).await.expect(200);
    assert_eq!((joined["joined_rooms"].clone(), joined["total"].clone()), (json!([room]), json!(1)));
    // Other servers' users are asked about too: here, in no room this server knows.
    let remote =
        root.get(&user_path("v1/users", "@zed:elsewhere.example", "/joined_rooms")).await.expect(200);
    assert_eq!(remote["total"], 0);
    root.get(&user_path("v1/users", "@nobody:localhost", "/joined_rooms"))
        .await
        .expect_error(404, "M_NOT_FOUND");

    let admin = user_path("v1/users", "@alice:localhost", "/admin");
    assert_eq!(root.get(&admin).await.expect(200), json!({"admin": false}));
    root.put(&admin, &json!({"admin": true})).await.expect(200);
    assert_eq!(root.get(&admin).await.expect(200), json!({"admin": true}));
    alice.get(&users("")).await.expect(200);
    root.put(&admin, &json!({})).await.expect_error(400, "M_MISSING_PARAM");
    root.put(&user_path("v1/users", "@root:localhost", "/admin"), &json!({"admin": false}))
        .await
        .expect_error(400, "M_INVALID_PARAM");
    root.get(&user_path("v1/users", "@nobody:localhost", "/admin")).await.expect_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn memberships_pushers_and_username_availability() {
    let server = Server::start().await;
    let root = admin_client(&server, "root").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let joined = alice.create_room(&json!({})).await;
    let left = alice.create_room(&json!({})).await;
    alice.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&left)), &json!({})).await.expect(200);

    let memberships = root.get(&user_path("v1/users", "@alice:localhost", "/memberships")).await.expect(200);
    assert_eq!(memberships["memberships"], json!({ joined.as_str(): "join", left.as_str(): "leave" }));
    let remote = root.get(&user_path("v1/users", "@zed:elsewhere.example", "/memberships")).await.expect(200);
    assert_eq!(remote["memberships"], json!({}));
    root.get(&user_path("v1/users", "@nobody:localhost", "/memberships"))
        .await
        .expect_error(404, "M_NOT_FOUND");

    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "key-1",
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}, "append": false,
    });
    alice.post("/_matrix/client/v3/pushers/set", &pusher).await.expect(200);
    let pushers = root.get(&user_path("v1/users", "@alice:localhost", "/pushers")).await.expect(200);
    assert_eq!(pushers["total"], 1);
    let listed = &pushers["pushers"][0];
    for field in ["kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang", "data"] {
        assert_eq!(listed[field], pusher[field], "{field}: {listed}");
    }
    assert!(listed.get("append").is_none(), "{listed}");
    root.get(&user_path("v1/users", "@nobody:localhost", "/pushers")).await.expect_error(404, "M_NOT_FOUND");

    let available = |name: &str| admin_path(&format!("v1/username_available?username={}", enc(name)));
    assert_eq!(root.get(&available("zed")).await.expect(200), json!({"available": true}));
    root.get(&available("alice")).await.expect_error(400, "M_USER_IN_USE");
    root.get(&available("no spaces")).await.expect_error(400, "M_INVALID_USERNAME");
    root.get(&admin_path("v1/username_available")).await.expect_error(400, "M_MISSING_PARAM");
}
