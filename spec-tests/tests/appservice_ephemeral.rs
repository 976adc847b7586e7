//! Ephemeral data for application services that ask for it (`receive_ephemeral`, MSC2409):
//! typing and receipts in the rooms of their users go in a transaction's `ephemeral`, and
//! to-device messages for their users' devices in `de.sorunome.msc2409.to_device`
//! (MSC4203), each with its room or recipient. A service that did not ask gets none.

use std::time::Duration;

use spec_tests::{
    appservice::{FakeAppservice, Files, Registration, SERVER_NAME, registration, service_client, user_id},
    rooms::{PASSWORD, room_path, txn_id},
    *,
};

const WAIT: Duration = Duration::from_secs(30);

/// Everything of kind `field` (`ephemeral`, `de.sorunome.msc2409.to_device`) the service
/// received, in order.
fn received(fake: &FakeAppservice, field: &str) -> Vec<Value> {
    fake.transactions().iter().flat_map(|t| t.body[field].as_array().cloned().unwrap_or_default()).collect()
}

/// A service's ghost in alice's room, logged in with a device of its own.
async fn ghost_in_room(server: &Server, alice: &Client, service: &Registration, localpart: &str) -> String {
    let service_client = service_client(server, service);
    let registered = service_client
        .post(
            "/_matrix/client/v3/register",
            &json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true}),
        )
        .await;
    registered.expect(200);
    let ghost = user_id(localpart);
    let room = alice.create_room(&json!({"preset": "private_chat"})).await;
    alice.membership_action(&room, "invite", &ghost).await.expect(200);
    let join = format!("{}?user_id={}", room_path(&room, "join"), enc(&ghost));
    service_client.post(&join, &json!({})).await.expect(200);
    room
}

#[tokio::test]
async fn typing_receipts_and_to_device_reach_the_services_that_ask() {
    let eager = registration("eager", "eager");
    let quiet = registration("quiet", "quiet");
    let files = Files::default();
    let eager_path = files
        .write("eager.yaml", &eager.yaml().replace("receive_ephemeral: false", "receive_ephemeral: true"));
    let quiet_path = files.write("quiet.yaml", &quiet.yaml());
    let eager_fake = FakeAppservice::up_on(eager.port).await;
    let quiet_fake = FakeAppservice::up_on(quiet.port).await;
    let config = format!(
        "server_name = \"{SERVER_NAME}\"\n{}{TEST_CONFIG}",
        Files::config_line(&[&eager_path, &quiet_path])
    );
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room = ghost_in_room(&server, &alice, &eager, "eager_ghost").await;
    let quiet_room = ghost_in_room(&server, &alice, &quiet, "quiet_ghost").await;

    // Typing.
    let typing = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(alice.user_id()));
    alice.put(&typing, &json!({"typing": true, "timeout": 30000})).await.expect(200);
    let eager_typing = |e: &Value| e["type"] == "m.typing" && e["room_id"] == room;
    eager_fake.wait_until(WAIT, |_| received(&eager_fake, "ephemeral").iter().any(eager_typing)).await;
    let typed = received(&eager_fake, "ephemeral").into_iter().find(eager_typing).unwrap();
    assert_eq!(typed["content"]["user_ids"], json!([alice.user_id()]), "{typed}");

    // A read receipt.
    let event_id = alice.send_text(&room, "read me").await;
    alice
        .post(&room_path(&room, &format!("receipt/m.read/{}", enc(&event_id))), &json!({}))
        .await
        .expect(200);
    let eager_receipt = |e: &Value| e["type"] == "m.receipt" && e["room_id"] == room;
    eager_fake.wait_until(WAIT, |_| received(&eager_fake, "ephemeral").iter().any(eager_receipt)).await;
    let receipt = received(&eager_fake, "ephemeral").into_iter().find(eager_receipt).unwrap();
    assert!(receipt["content"][&event_id]["m.read"][alice.user_id()]["ts"].is_u64(), "{receipt}");

    // A to-device message for the ghost's device.
    let login = service_client(&server, &eager)
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.application_service",
                    "identifier": {"type": "m.id.user", "user": user_id("eager_ghost")}}),
        )
        .await
        .expect(200);
    let device = login["device_id"].as_str().unwrap().to_owned();
    let ghost = user_id("eager_ghost");
    let messages = json!({"messages": {&ghost: {&device: {"hello": "ghost"}}}});
    alice.put(&format!("/_matrix/client/v3/sendToDevice/m.test/{}", txn_id()), &messages).await.expect(200);
    let field = "de.sorunome.msc2409.to_device";
    eager_fake.wait_until(WAIT, |_| !received(&eager_fake, field).is_empty()).await;
    let message = &received(&eager_fake, field)[0];
    assert_eq!(message["type"], "m.test", "{message}");
    assert_eq!(message["sender"], alice.user_id(), "{message}");
    assert_eq!(message["to_user_id"], ghost, "{message}");
    assert_eq!(message["to_device_id"], device, "{message}");
    assert_eq!(message["content"], json!({"hello": "ghost"}), "{message}");

    // The service that did not ask hears its room's events, and nothing ephemeral.
    alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&quiet_room), enc(alice.user_id())),
            &json!({"typing": true, "timeout": 30000}),
        )
        .await
        .expect(200);
    alice.send_text(&quiet_room, "marker").await;
    quiet_fake
        .wait_until(WAIT, |_| quiet_fake.events().iter().any(|e| e["content"]["body"] == "marker"))
        .await;
    assert!(received(&quiet_fake, "ephemeral").is_empty(), "{:#?}", quiet_fake.transactions());
    assert!(received(&quiet_fake, field).is_empty());
}
