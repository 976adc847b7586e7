//! Nothing acknowledged is lost: the server is killed with SIGKILL while many clients send,
//! and after a restart every event a client received an event id for is there.

use std::{sync::Arc, time::Duration};

use spec_tests::*;
use tokio::sync::Mutex;

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill_under_concurrent_sends() {
    let mut server = Server::start().await;
    let alice = server.client().register("alice", "password-a").await;
    let room = alice
        .post("/_matrix/client/v3/createRoom", &json!({"preset": "public_chat"}))
        .await
        .expect(200)["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut senders = vec![alice.clone()];
    for i in 0..7 {
        let user = server.client().register(&format!("sender{i}"), "password-s").await;
        user.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), &json!({})).await.expect(200);
        senders.push(user);
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let (room, acknowledged) = (room.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{i}-{n}", enc(&room));
                let body = json!({"msgtype": "m.text", "body": format!("{i}/{n}")});
                // Once the server dies, requests fail: stop there.
                let Ok(response) = tokio::time::timeout(
                    Duration::from_secs(5),
                    sender.request_fallible("PUT", &path, &body),
                )
                .await
                else {
                    return;
                };
                match response {
                    Some(resp) if resp.status == 200 => {
                        acknowledged.lock().await.push(resp.body["event_id"].as_str().unwrap().to_owned());
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let the senders get going, then pull the plug mid-flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() > 20,
        "too few sends before the kill to prove anything: {}",
        acknowledged.len()
    );

    server.restart().await;
    let alice = server.client().login("alice", "password-a").await;
    for event_id in &acknowledged {
        let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(event_id));
        let found = alice.get(&path).await;
        assert_eq!(found.status, 200, "acknowledged event {event_id} was lost: {}", found.body);
    }
}
