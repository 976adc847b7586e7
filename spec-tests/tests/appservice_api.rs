//! The application-service API, seen from a fake service that records every request the
//! homeserver makes (`spec_tests::appservice::FakeAppservice`): transactions (in order,
//! with the `hs_token`, queued durably while the service is down), acting as the service's
//! users, registering and logging them in, exclusive namespaces, ping, alias queries,
//! third-party lookups and rate limits. The `myelin appservice` commands and refused
//! registration files are in `appservice_cli.rs`.

use std::time::Duration;

use spec_tests::{
    appservice::{
        FakeAppservice, Received, SERVER_NAME, regex_escape, registration, server_with, service_client,
        user_id,
    },
    rooms::{PASSWORD, room_path, txn_id},
    *,
};

const WAIT: Duration = Duration::from_secs(30);

/// Registers `localpart` as the service (`m.login.application_service`).
async fn register_as_service(service: &Client, localpart: &str) -> Resp {
    let body = json!({"type": "m.login.application_service", "username": localpart});
    service.post("/_matrix/client/v3/register", &body).await
}

/// `path` with `user_id=` (and more query) for masquerading.
fn acting_as(path: &str, user: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}user_id={}", enc(user))
}

/// The bodies of the `m.room.message` events the service got for `room`, in order.
fn message_bodies(events: &[Value], room: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message" && e["room_id"] == room)
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `path` with its percent-escapes decoded (ASCII only, as in ids).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex =
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A room of `alice`'s that the ghost `@{prefix}_ghost` (registered by the service) has
/// joined, so the service is interested in it.
async fn room_with_ghost(alice: &Client, service: &Client, ghost_localpart: &str) -> String {
    register_as_service(service, ghost_localpart).await.expect(200);
    let ghost = user_id(ghost_localpart);
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    alice.membership_action(&room, "invite", &ghost).await.expect(200);
    let join = service.post(&acting_as(&room_path(&room, "join"), &ghost), &json!({})).await;
    join.expect(200);
    room
}

#[tokio::test]
async fn transactions_carry_the_events_of_interesting_rooms_in_order_with_the_hs_token() {
    let bridge = registration("bridge", "bridge");
    let fake = FakeAppservice::up_on(bridge.port).await;
    let (server, _files) = server_with(&[&bridge], "").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let service = service_client(&server, &bridge);
    let room = room_with_ghost(&alice, &service, "bridge_ghost").await;
    // A room without any of the service's users concerns it not.
    let private = alice.create_room(&json!({"preset": "private_chat"})).await;
    alice.send_text(&private, "not for the bridge").await;
    for text in ["one", "two", "three"] {
        alice.send_text(&room, text).await;
    }

    fake.wait_until(WAIT, |_| message_bodies(&fake.events(), &room).len() >= 3).await;
    assert_eq!(message_bodies(&fake.events(), &room), ["one", "two", "three"]);
    let transactions = fake.transactions();
    for transaction in &transactions {
        assert_eq!(
            transaction.authorization.as_deref(),
            Some(format!("Bearer {}", bridge.hs_token).as_str()),
            "{transaction:?}"
        );
    }
    let events = fake.events();
    // The ghost's invite and join came too (state keys in its namespace).
    let memberships: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == user_id("bridge_ghost"))
        .map(|e| &e["content"]["membership"])
        .collect();
    assert_eq!(memberships, ["invite", "join"], "{events:#?}");
    assert!(events.iter().all(|e| e["room_id"] != private), "an uninteresting room was sent: {events:#?}");
    // Each event once.
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "an event was sent twice: {events:#?}");
}

#[tokio::test]
async fn services_are_interested_in_their_room_and_alias_namespaces() {
    let server_regex = regex_escape(SERVER_NAME);
    let (server, files) = server_with(&[], "").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let other_room = alice.create_room(&json!({"preset": "public_chat"})).await;

    // Registered at run time, once the room's id is known: one service by room id, one
    // by a shared (not exclusive, so alice may set it) alias namespace.
    let mut by_room = registration("by-room", "roomed");
    by_room.rooms = vec![regex_escape(&room)];
    let mut by_alias = registration("by-alias", "aliased");
    by_alias.exclusive_aliases = vec![format!("#aliased_.*:{server_regex}")];
    let shared =
        by_alias.yaml().replace("exclusive: true\n      regex: '#", "exclusive: false\n      regex: '#");
    assert!(shared.contains("exclusive: false"), "{shared}");
    let rooms_fake = FakeAppservice::up_on(by_room.port).await;
    let alias_fake = FakeAppservice::up_on(by_alias.port).await;
    for (name, text) in [("by-room.yaml", by_room.yaml()), ("by-alias.yaml", shared)] {
        let path = files.write(name, &text);
        cli_ok(&server.cli(&["appservice", "register", path.to_str().unwrap()], None));
    }

    alice.send_text(&room, "before the alias").await;
    alice.send_text(&other_room, "elsewhere").await;
    rooms_fake.wait_until(WAIT, |_| message_bodies(&rooms_fake.events(), &room).len() == 1).await;

    // An alias in the namespace: from then on the other service hears the room.
    let alias = format!("#aliased_lobby:{SERVER_NAME}");
    alice
        .put(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)), &json!({"room_id": room}))
        .await
        .expect(200);
    alice.send_text(&room, "after the alias").await;
    alias_fake
        .wait_until(WAIT, |_| {
            message_bodies(&alias_fake.events(), &room).contains(&"after the alias".to_owned())
        })
        .await;
    rooms_fake
        .wait_until(WAIT, |_| {
            message_bodies(&rooms_fake.events(), &room).contains(&"after the alias".to_owned())
        })
        .await;
    assert_eq!(message_bodies(&alias_fake.events(), &room), ["after the alias"]);
    assert_eq!(message_bodies(&rooms_fake.events(), &room), ["before the alias", "after the alias"]);
    let elsewhere: Vec<Value> = [rooms_fake.events(), alias_fake.events()]
        .concat()
        .into_iter()
        .filter(|e| e["room_id"] == other_room)
        .collect();
    assert!(elsewhere.is_empty(), "{elsewhere:#?}");
}

#[tokio::test]
async fn a_service_that_is_down_gets_everything_in_order_after_restarts() {
    let bridge = registration("bridge", "bridge");
    let mut fake = FakeAppservice::down_on(bridge.port);
    let (mut server, _files) = server_with(&[&bridge], "").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let service = service_client(&server, &bridge);
    let room = room_with_ghost(&alice, &service, "bridge_ghost").await;
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(format!("before kill {i}"));
        alice.send_text(&room, &sent[sent.len() - 1]).await;
    }
    server.kill9();
    server.restart().await;
    for i in 0..3 {
        sent.push(format!("before stop {i}"));
        alice.send_text(&room, &sent[sent.len() - 1]).await;
    }
    server.stop().await;
    server.restart().await;
    sent.push("after restarts".to_owned());
    alice.send_text(&room, "after restarts").await;
    assert!(fake.received().is_empty());

    fake.up().await;
    fake.wait_until(WAIT, |_| message_bodies(&fake.events(), &room).len() >= sent.len()).await;
    // Give a duplicate time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message_bodies(&fake.events(), &room), sent);
}

#[tokio::test]
async fn delivery_retries_a_service_that_answers_an_error_until_it_accepts() {
    let bridge = registration("bridge", "bridge");
    let fake = FakeAppservice::up_on(bridge.port).await;
    let (server, _files) = server_with(&[&bridge], "").await;
    let alice = server.client().register("alice", PASSWORD).await;
    let service = service_client(&server, &bridge);
    let room = room_with_ghost(&alice, &service, "bridge_ghost").await;
    fake.wait_until(WAIT, |_| !fake.transactions().is_empty()).await;
    fake.answer_status(500);
    alice.send_text(&room, "first").await;
    alice.send_text(&room, "second").await;
    // Refused at least twice, each time carrying the messages from the first on.
    let refused = |received: &[Received]| -> Vec<Vec<String>> {
        received
            .iter()
            .filter(|r| r.path.starts_with("/_matrix/app/v1/transactions/") && r.status == 500)
            .map(|t| message_bodies(t.body["events"].as_array().map_or(&[][..], Vec::as_slice), &room))
            .filter(|bodies| !bodies.is_empty())
            .collect()
    };
    fake.wait_until(WAIT, |received| refused(received).len() >= 2).await;
    for bodies in refused(&fake.received()) {
        assert_eq!(bodies[0], "first", "a retry skipped what was refused: {bodies:?}");
    }
    fake.answer_status(200);
    fake.wait_until(WAIT, |_| message_bodies(&fake.events(), &room).len() >= 2).await;
    assert_eq!(message_bodies(&fake.events(), &room), ["first", "second"]);
}

#[tokio::test]
async fn a_service_acts_as_its_own_users_and_nobody_else() {
    let bridge = registration("bridge", "bridge");
    let (server, _files) = server_with(&[&bridge], "").await;
    server.client().register("alice", PASSWORD).await;
    let service = service_client(&server, &bridge);
    const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

    let me = service.get(WHOAMI).await.expect(200);
    assert_eq!(me["user_id"], user_id("bridgebot"), "{me}");
    assert!(me.get("device_id").is_none(), "a service without a device has none: {me}");

    register_as_service(&service, "bridge_ghost").await.expect(200);
    let ghost = service.get(&acting_as(WHOAMI, &user_id("bridge_ghost"))).await.expect(200);
    assert_eq!(ghost["user_id"], user_id("bridge_ghost"), "{ghost}");

    // In the namespace but never registered; outside it; on another server.
    for user in [user_id("bridge_nobody"), user_id("alice"), "@bridge_x:elsewhere.example".to_owned()] {
        service.get(&acting_as(WHOAMI, &user)).await.expect_error(403, "M_FORBIDDEN");
    }
    server
        .client()
        .with_token("not-a-token-anyone-has")
        .get(WHOAMI)
        .await
        .expect_error(401, "M_UNKNOWN_TOKEN");

    // A device of the ghost's, by `device_id`.
    let login = json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "bridge_ghost"}});
    let logged_in = service.post("/_matrix/client/v3/login", &login).await.expect(200);
    let device = logged_in["device_id"].as_str().expect("device_id");
    let path = format!("{}&device_id={}", acting_as(WHOAMI, &user_id("bridge_ghost")), enc(device));
    let with_device = service.get(&path).await.expect(200);
    assert_eq!(
        (&with_device["user_id"], &with_device["device_id"]),
        (&json!(user_id("bridge_ghost")), &json!(device))
    );
    let path = format!("{}&device_id=NOSUCHDEVICE", acting_as(WHOAMI, &user_id("bridge_ghost")));
    service.get(&path).await.expect_error(403, "M_FORBIDDEN");

    // What the service does as a ghost is the ghost's doing.
    let room = service
        .post(&acting_as("/_matrix/client/v3/createRoom", &user_id("bridge_ghost")), &json!({}))
        .await
        .expect(200);
    let room = room["room_id"].as_str().unwrap();
    let state = service
        .get(&acting_as(&room_path(room, "state/m.room.create/"), &user_id("bridge_ghost")))
        .await
        .expect(200);
    assert!(state.is_object());
    let creator = service
        .get(&acting_as(
            &room_path(room, &format!("state/m.room.member/{}", enc(&user_id("bridge_ghost")))),
            &user_id("bridge_ghost"),
        ))
        .await
        .expect(200);
    assert_eq!(creator["membership"], "join", "{creator}");
}

#[tokio::test]
async fn a_service_registers_and_logs_in_its_users_even_when_registration_is_closed() {
    let bridge = registration("bridge", "bridge");
    let (server, _files) = server_with(&[&bridge], "\n[registration]\nmode = \"disabled\"\n").await;
    let service = service_client(&server, &bridge);
    let anonymous = server.client();

    let registered = register_as_service(&service, "bridge_new").await.expect(200);
    assert_eq!(registered["user_id"], user_id("bridge_new"), "{registered}");
    let token = registered["access_token"].as_str().expect("access_token");
    let whoami = anonymous.with_token(token).get("/_matrix/client/v3/account/whoami").await.expect(200);
    assert_eq!(whoami["user_id"], user_id("bridge_new"));
    register_as_service(&service, "bridge_new").await.expect_error(400, "M_USER_IN_USE");

    register_as_service(&service, "outsider").await.expect_error(400, "M_EXCLUSIVE");
    let body = json!({"type": "m.login.application_service", "username": "bridge_other"});
    anonymous.post("/_matrix/client/v3/register", &body).await.expect_error(401, "M_MISSING_TOKEN");
    let body = json!({"username": "bridge_other", "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
    service.post("/_matrix/client/v3/register", &body).await.expect_error(400, "M_BAD_JSON");
    // Registration stays closed for everyone else.
    anonymous
        .post(
            "/_matrix/client/v3/register",
            &json!({"username": "carol", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}),
        )
        .await
        .expect_error(403, "M_FORBIDDEN");

    let flows = anonymous.get("/_matrix/client/v3/login").await.expect(200);
    let types: Vec<&str> =
        flows["flows"].as_array().unwrap().iter().filter_map(|f| f["type"].as_str()).collect();
    assert!(types.contains(&"m.login.application_service"), "{flows}");

    let login = |user: &str| json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user}});
    let logged_in = service.post("/_matrix/client/v3/login", &login("bridge_new")).await.expect(200);
    assert_eq!(logged_in["user_id"], user_id("bridge_new"), "{logged_in}");
    assert!(logged_in["device_id"].is_string() && logged_in["access_token"].is_string(), "{logged_in}");
    let full_id = service.post("/_matrix/client/v3/login", &login(&user_id("bridge_new"))).await.expect(200);
    assert_eq!(full_id["user_id"], user_id("bridge_new"));
    anonymous
        .post("/_matrix/client/v3/login", &login("bridge_new"))
        .await
        .expect_error(401, "M_MISSING_TOKEN");
    service
        .post("/_matrix/client/v3/login", &login("bridge_unregistered"))
        .await
        .expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn without_services_login_does_not_offer_the_application_service_type() {
    let server = Server::start().await;
    let flows = server.client().get("/_matrix/client/v3/login").await.expect(200);
    let types: Vec<&str> =
        flows["flows"].as_array().unwrap().iter().filter_map(|f| f["type"].as_str()).collect();
    assert!(!types.contains(&"m.login.application_service"), "{flows}");
}

#[tokio::test]
async fn exclusive_namespaces_are_reserved_from_everyone_else() {
    let mut bridge = registration("bridge", "bridge");
    bridge.exclusive_aliases = vec![format!("#bridge_.*:{}", regex_escape(SERVER_NAME))];
    let (server, _files) = server_with(&[&bridge], "").await;
    let anonymous = server.client();
    for name in ["bridge_mallory", "bridgebot"] {
        let body = json!({"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
        anonymous.post("/_matrix/client/v3/register", &body).await.expect_error(400, "M_EXCLUSIVE");
        anonymous
            .get(&format!("/_matrix/client/v3/register/available?username={name}"))
            .await
            .expect_error(400, "M_EXCLUSIVE");
    }
    let alice = anonymous.register("alice", PASSWORD).await;
    let available =
        anonymous.get("/_matrix/client/v3/register/available?username=bridgette").await.expect(200);
    assert_eq!(available["available"], true);

    let room = alice.create_room(&json!({})).await;
    let taken = format!("#bridge_chat:{SERVER_NAME}");
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(&taken));
    alice.put(&path, &json!({"room_id": room})).await.expect_error(400, "M_EXCLUSIVE");
    let create = json!({"room_alias_name": "bridge_chat2"});
    alice.post("/_matrix/client/v3/createRoom", &create).await.expect_error(400, "M_EXCLUSIVE");
    // Outside the namespace, and for the service inside it, aliases are free.
    let free = format!("#alice_chat:{SERVER_NAME}");
    alice
        .put(&format!("/_matrix/client/v3/directory/room/{}", enc(&free)), &json!({"room_id": room}))
        .await
        .expect(200);
    let service = service_client(&server, &bridge);
    let own_room = service.post("/_matrix/client/v3/createRoom", &json!({})).await.expect(200);
    service.put(&path, &json!({"room_id": own_room["room_id"]})).await.expect(200);
}

#[tokio::test]
async fn ping_reaches_the_service_and_reports_how_it_failed() {
    let pinged = registration("pinged", "pinged");
    let mut no_url = registration("no-url", "nourl");
    no_url.with_url = false;
    let mut fake = FakeAppservice::up_on(pinged.port).await;
    let (server, _files) = server_with(&[&pinged, &no_url], "").await;
    let service = service_client(&server, &pinged);
    let ping = |id: &str| format!("/_matrix/client/v1/appservice/{id}/ping");

    let ok = service.post(&ping("pinged"), &json!({"transaction_id": "txn-42"})).await.expect(200);
    assert!(ok["duration_ms"].is_u64(), "{ok}");
    let got: Vec<Received> =
        fake.received().into_iter().filter(|r| r.path == "/_matrix/app/v1/ping").collect();
    assert_eq!(got.len(), 1, "{:#?}", fake.received());
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].body["transaction_id"], "txn-42", "{:?}", got[0]);
    assert_eq!(got[0].authorization.as_deref(), Some(format!("Bearer {}", pinged.hs_token).as_str()));

    service.post(&ping("no-url"), &json!({})).await.expect_error(403, "M_FORBIDDEN");
    service.post(&ping("nonexistent"), &json!({})).await.expect_error(403, "M_FORBIDDEN");
    server.client().post(&ping("pinged"), &json!({})).await.expect_error(401, "M_MISSING_TOKEN");
    let alice = server.client().register("alice", PASSWORD).await;
    let by_user = alice.post(&ping("pinged"), &json!({})).await;
    assert!(by_user.status == 401 || by_user.status == 403, "a user's token is not a service's: {by_user:?}");
    service_client(&server, &no_url)
        .post(&ping("no-url"), &json!({}))
        .await
        .expect_error(400, "M_URL_NOT_SET");

    fake.route("/_matrix/app/v1/ping", 500, json!({"errcode": "M_UNKNOWN", "error": "bad day"}));
    let bad = service.post(&ping("pinged"), &json!({})).await;
    bad.expect_error(502, "M_BAD_STATUS");
    assert_eq!(bad.body["status"], 500, "{}", bad.body);
    assert!(bad.body["body"].as_str().is_some_and(|b| b.contains("bad day")), "{}", bad.body);

    fake.down();
    service.post(&ping("pinged"), &json!({})).await.expect_error(502, "M_CONNECTION_FAILED");
}

#[tokio::test]
async fn an_unknown_alias_in_a_service_namespace_is_asked_of_the_service() {
    let mut bridge = registration("bridge", "bridge");
    bridge.exclusive_aliases = vec![format!("#bridge_.*:{}", regex_escape(SERVER_NAME))];
    let fake = FakeAppservice::up_on(bridge.port).await;
    let (server, _files) = server_with(&[&bridge], "").await;
    let service = service_client(&server, &bridge);
    // The service creates a room for `#bridge_made` when asked, and knows no other.
    let creator = service.clone();
    fake.handle(move |request| {
        let service = creator.clone();
        async move {
            let made = format!("/_matrix/app/v1/rooms/#bridge_made:{SERVER_NAME}");
            if request.method != "GET" || !request.path.starts_with("/_matrix/app/v1/rooms/") {
                return (200, json!({}));
            }
            if percent_decode(&request.path) != made {
                return (404, json!({"errcode": "M_NOT_FOUND", "error": "no such channel"}));
            }
            let room = service
                .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
                .await
                .expect(200);
            let alias = format!("#bridge_made:{SERVER_NAME}");
            let path = format!("/_matrix/client/v3/directory/room/{}", enc(&alias));
            service.put(&path, &json!({"room_id": room["room_id"]})).await.expect(200);
            (200, json!({}))
        }
    });
    let alice = server.client().register("alice", PASSWORD).await;
    let alias = format!("#bridge_made:{SERVER_NAME}");

    let resolved = alice.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias))).await.expect(200);
    let room = resolved["room_id"].as_str().expect("room_id").to_owned();
    let queries: Vec<Received> =
        fake.received().into_iter().filter(|r| r.path.starts_with("/_matrix/app/v1/rooms/")).collect();
    assert_eq!(queries.len(), 1, "{queries:#?}");
    assert_eq!(queries[0].authorization.as_deref(), Some(format!("Bearer {}", bridge.hs_token).as_str()));
    let joined = alice.join_room(&alias).await.expect(200);
    assert_eq!(joined["room_id"], room);
    // Known now: not asked again.
    let queries =
        fake.received().into_iter().filter(|r| r.path.starts_with("/_matrix/app/v1/rooms/")).count();
    assert_eq!(queries, 1);

    let unknown = format!("#bridge_unknown:{SERVER_NAME}");
    alice
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc(&unknown)))
        .await
        .expect_error(404, "M_NOT_FOUND");
    alice.join_room(&unknown).await.expect_error(404, "M_NOT_FOUND");
    // Outside every alias namespace nobody is asked.
    let before = fake.received().len();
    let elsewhere = format!("#plain:{SERVER_NAME}");
    alice
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc(&elsewhere)))
        .await
        .expect_error(404, "M_NOT_FOUND");
    let asked: Vec<Received> = fake.received()[before..]
        .iter()
        .filter(|r| r.path.starts_with("/_matrix/app/v1/rooms/"))
        .cloned()
        .collect();
    assert!(asked.is_empty(), "{asked:#?}");
}

#[tokio::test]
async fn third_party_lookups_are_answered_by_the_services_that_bridge_the_protocol() {
    let mut irc = registration("irc", "irc");
    irc.protocols = vec!["irc".to_owned()];
    let fake = FakeAppservice::up_on(irc.port).await;
    let protocol = json!({
        "user_fields": ["network", "nickname"],
        "location_fields": ["network", "channel"],
        "icon": "mxc://example.org/irc",
        "field_types": {
            "network": {"regexp": "[a-z.]+", "placeholder": "irc.example.org"},
            "nickname": {"regexp": "[^\\s]+", "placeholder": "nick"},
            "channel": {"regexp": "#[^\\s]+", "placeholder": "#chan"}
        },
        "instances": [{"desc": "Example", "fields": {"network": "irc.example.org"}, "network_id": "example"}]
    });
    let location = json!([{"alias": "#irc_chan:localhost", "protocol": "irc", "fields": {"network": "irc.example.org", "channel": "#chan"}}]);
    let user = json!([{"userid": "@irc_nick:localhost", "protocol": "irc", "fields": {"network": "irc.example.org", "nickname": "nick"}}]);
    fake.route("/_matrix/app/v1/thirdparty/protocol/irc", 200, protocol.clone());
    fake.route("/_matrix/app/v1/thirdparty/location/irc", 200, location.clone());
    fake.route("/_matrix/app/v1/thirdparty/user/irc", 200, user.clone());
    fake.route("/_matrix/app/v1/thirdparty/location?", 200, location.clone());
    fake.route("/_matrix/app/v1/thirdparty/user?", 200, user.clone());
    let (server, _files) = server_with(&[&irc], "").await;
    let alice = server.client().register("alice", PASSWORD).await;
    const TP: &str = "/_matrix/client/v3/thirdparty";

    let all = alice.get(&format!("{TP}/protocols")).await.expect(200);
    assert_eq!(all, json!({"irc": protocol}));
    assert_eq!(alice.get(&format!("{TP}/protocol/irc")).await.expect(200), protocol);
    let found =
        alice.get(&format!("{TP}/location/irc?network=irc.example.org&channel=%23chan")).await.expect(200);
    assert_eq!(found, location);
    assert_eq!(alice.get(&format!("{TP}/user/irc?nickname=nick")).await.expect(200), user);
    let by_alias =
        alice.get(&format!("{TP}/location?alias={}", enc("#irc_chan:localhost"))).await.expect(200);
    assert_eq!(by_alias, location);
    let by_user = alice.get(&format!("{TP}/user?userid={}", enc("@irc_nick:localhost"))).await.expect(200);
    assert_eq!(by_user, user);

    // What the service was asked, with the fields passed on and its hs_token.
    let received = fake.received();
    for r in &received {
        assert_eq!(r.method, "GET", "{r:?}");
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {}", irc.hs_token).as_str()), "{r:?}");
    }
    let asked = |prefix: &str| {
        received
            .iter()
            .find(|r| r.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("never asked {prefix}: {received:#?}"))
            .path
            .clone()
    };
    let location_query = asked("/_matrix/app/v1/thirdparty/location/irc?");
    assert!(
        location_query.contains("network=irc.example.org") && location_query.contains("channel=%23chan"),
        "{location_query}"
    );
    assert!(asked("/_matrix/app/v1/thirdparty/user/irc?").contains("nickname=nick"));
    assert!(asked("/_matrix/app/v1/thirdparty/location?").contains("alias=%23irc_chan%3Alocalhost"));
    assert!(asked("/_matrix/app/v1/thirdparty/user?").contains("userid=%40irc_nick%3Alocalhost"));

    alice.get(&format!("{TP}/protocol/xmpp")).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&format!("{TP}/location/xmpp")).await.expect_error(404, "M_NOT_FOUND");
    alice.get(&format!("{TP}/user/xmpp")).await.expect_error(404, "M_NOT_FOUND");
    server.client().get(&format!("{TP}/protocols")).await.expect_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn users_of_a_service_that_is_not_rate_limited_skip_the_per_user_limits() {
    let mut free = registration("free", "free");
    free.rate_limited = Some(false);
    let metered = registration("metered", "metered");
    let limits = "\n[rate_limits.message]\nper_second = 0.01\nburst = 3\n";
    let (server, _files) = server_with(&[&free, &metered], limits).await;
    let free_service = service_client(&server, &free);
    let metered_service = service_client(&server, &metered);
    register_as_service(&free_service, "free_ghost").await.expect(200);
    register_as_service(&metered_service, "metered_ghost").await.expect(200);

    for (service, ghost, limited) in
        [(&free_service, "free_ghost", false), (&metered_service, "metered_ghost", true)]
    {
        let ghost = user_id(ghost);
        let room =
            service.post(&acting_as("/_matrix/client/v3/createRoom", &ghost), &json!({})).await.expect(200);
        let room = room["room_id"].as_str().unwrap().to_owned();
        let mut refused = None;
        for i in 0..10 {
            let path = acting_as(&room_path(&room, &format!("send/m.room.message/{}", txn_id())), &ghost);
            let sent = service.put(&path, &json!({"msgtype": "m.text", "body": format!("{i}")})).await;
            if sent.status != 200 {
                refused = Some((i, sent));
                break;
            }
        }
        match (limited, refused) {
            (false, None) | (true, Some(_)) => {}
            (false, Some((i, resp))) => panic!("{ghost} was limited after {i} messages: {resp:?}"),
            (true, None) => panic!("{ghost} of a rate-limited service was never limited"),
        }
    }
    // Creating a room counts too.
    let create = acting_as("/_matrix/client/v3/createRoom", &user_id("metered_ghost"));
    metered_service.post(&create, &json!({})).await.expect_error(429, "M_LIMIT_EXCEEDED");
}
