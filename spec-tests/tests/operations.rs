//! Operator endpoints: `/health` on the client listener, Prometheus `/metrics` on a listener
//! of its own that is off unless configured.

use spec_tests::*;

const WITH_METRICS: &str = r#"
[rate_limits]
enabled = false
[metrics]
enabled = true
listen = "127.0.0.1:0"
"#;

#[tokio::test]
async fn health_answers_ok_without_authentication() {
    let server = Server::start().await;
    let response = reqwest::get(format!("{}/health", server.base_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "OK");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let server = Server::start().await;
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(!log.contains("metrics on http://"), "{log}");
    server.client().get("/metrics").await.expect_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn metrics_count_requests_events_flushes_and_database_size() {
    let server = Server::start_with_config(WITH_METRICS).await;
    let alice = server.client().register("alice", "password-a").await;
    let room = alice.post("/_matrix/client/v3/createRoom", &json!({})).await.expect(200)["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t1", enc(&room));
    alice.put(&path, &json!({"msgtype": "m.text", "body": "hi"})).await.expect(200);

    let url = server.metrics_url();
    let body = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    assert!(body.contains(r#"myelin_http_requests_total{method="PUT",route="/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",status="200"} 1"#), "{body}");
    let persisted: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("myelin_events_persisted_total "))
        .expect("events counter")
        .parse()
        .unwrap();
    assert!(persisted >= 7.0, "createRoom's events and the message: {persisted}");
    assert!(body.contains("myelin_flush_duration_seconds_count"), "{body}");
    assert!(body.contains("myelin_http_request_duration_seconds_bucket"), "{body}");
    assert!(body.contains("myelin_sync_long_polls_waiting 0"), "{body}");
    let size: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("myelin_database_size_bytes "))
        .expect("size")
        .parse()
        .unwrap();
    assert!(size > 0.0);
}
