//! Push fan-out: one message in a room whose members all have HTTP pushers pointing at a
//! push gateway run here, on loopback. Measures how long each notification takes from the
//! send to the gateway, whether every one arrives, and whether the sender's own send gets
//! slower than in the same room without pushers (pushing must not hold the send up).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{matrix::User, process::cpu_seconds, scenarios::Target, stats::Samples};

/// What the gateway saw: each event notification's event id and arrival time.
#[derive(Default)]
struct Arrivals {
    events: Vec<(String, Instant)>,
    /// Count-only (badge) notifications.
    badges: usize,
}

/// A push gateway on a free loopback port that accepts everything and notes arrivals. It
/// runs on a thread of its own, as a real gateway runs elsewhere: on the generator's
/// runtime, its thousand requests would queue ahead of the sender's responses and show as
/// send latency.
async fn start_gateway() -> Result<(SocketAddr, Arc<Mutex<Arrivals>>), String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let seen = arrivals.clone();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    std::thread::spawn(move || runtime.block_on(serve_gateway(listener, seen)));
    Ok((address, arrivals))
}

async fn serve_gateway(listener: std::net::TcpListener, seen: Arc<Mutex<Arrivals>>) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    while let Ok((stream, _)) = listener.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let at = Instant::now();
                    let notification: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut seen = seen.lock().unwrap();
                    match notification["notification"]["event_id"].as_str() {
                        Some(id) => seen.events.push((id.to_owned(), at)),
                        None => seen.badges += 1,
                    }
                    let reply = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(br#"{"rejected":[]}"#)))
                        .expect("a static response");
                    Ok::<_, Infallible>(reply)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Runs `f` over `items` with at most `limit` in flight.
async fn bounded_all<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Result<(), String>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut tasks = Vec::new();
    for item in items {
        let permit = semaphore.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let job = f(item);
        tasks.push(tokio::spawn(async move {
            let result = job.await;
            drop(permit);
            result
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Sends `messages` messages `pace` apart; returns each event id with when its send began,
/// and the send latencies.
async fn send_paced(
    sender: &User,
    room: &str,
    messages: usize,
    pace: Duration,
) -> Result<(HashMap<String, Instant>, Samples), String> {
    let mut started = HashMap::new();
    let mut latency = Samples::default();
    for n in 0..messages {
        let begun = Instant::now();
        let event_id = sender.send(room, &format!("push-{n}")).await?;
        latency.push(begun.elapsed());
        started.insert(event_id, begun);
        tokio::time::sleep(pace).await;
    }
    Ok((started, latency))
}

/// `members` users in one room; every one but the sender sets a pusher; the sender sends
/// `messages` messages `pace` apart, first before the pushers exist (the baseline send
/// latency), then with them.
/// With `pid`, the server's CPU time while it pushes is reported per notification: unlike
/// latency, it hardly depends on what else the machine is doing.
pub async fn push_fan_out(
    target: &Target,
    members: usize,
    messages: usize,
    pace: Duration,
    pid: Option<u32>,
) -> Result<Value, String> {
    let (gateway, arrivals) = start_gateway().await?;
    let users = target.users_concurrently("push", members, 16).await?;
    let sender = users[0].clone();
    let room = sender.create_room().await?;
    bounded_all(users[1..].to_vec(), 8, |user| {
        let room = room.clone();
        async move { user.join(&room).await }
    })
    .await?;

    let (_, baseline) = send_paced(&sender, &room, messages, pace).await?;

    let url = format!("http://{gateway}/_matrix/push/v1/notify");
    let pushers: Vec<(usize, User)> = users[1..].iter().cloned().enumerate().collect();
    bounded_all(pushers, 16, |(i, user)| {
        let body = json!({
            "kind": "http", "app_id": "org.example.bench", "pushkey": format!("bench-{i}"),
            "app_display_name": "bench", "device_display_name": "bench", "lang": "en",
            "data": {"url": url},
        });
        async move { user.post("/_matrix/client/v3/pushers/set", &body, "set pusher").await.map(|_| ()) }
    })
    .await?;

    let cpu_before = pid.and_then(cpu_seconds);
    let (started, with_pushers) = send_paced(&sender, &room, messages, pace).await?;
    let expected = messages * (members - 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().events.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_used = pid.and_then(cpu_seconds).zip(cpu_before).map(|(after, before)| after - before);
    // Late duplicates would show as more than expected.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = arrivals.lock().unwrap();
    let mut to_gateway = Samples::default();
    for (event_id, at) in &arrivals.events {
        if let Some(begun) = started.get(event_id) {
            to_gateway.push(at.saturating_duration_since(*begun));
        }
    }
    Ok(json!({
        "expected": expected,
        "delivered": to_gateway.len(),
        "badge_updates": arrivals.badges,
        "notify_p50_ms": to_gateway.quantile_ms(0.5),
        "notify_p99_ms": to_gateway.quantile_ms(0.99),
        "notify_max_ms": to_gateway.quantile_ms(1.0),
        "server_cpu_us_per_notification": cpu_used.map(|cpu| cpu * 1e6 / expected.max(1) as f64),
        "send_p50_ms_without_pushers": baseline.quantile_ms(0.5),
        "send_p99_ms_without_pushers": baseline.quantile_ms(0.99),
        "send_p50_ms_with_pushers": with_pushers.quantile_ms(0.5),
        "send_p99_ms_with_pushers": with_pushers.quantile_ms(0.99),
    }))
}

/// One row of the push table in docs/benchmarks.md.
pub fn markdown_row(label: &str, r: &Value) -> String {
    format!(
        "| {label} | {} / {} | {:.1} / {:.1} ms | {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.0} µs |",
        r["delivered"],
        r["expected"],
        r["notify_p50_ms"].as_f64().unwrap_or(0.0),
        r["notify_p99_ms"].as_f64().unwrap_or(0.0),
        r["notify_max_ms"].as_f64().unwrap_or(0.0),
        r["send_p50_ms_without_pushers"].as_f64().unwrap_or(0.0),
        r["send_p99_ms_without_pushers"].as_f64().unwrap_or(0.0),
        r["send_p50_ms_with_pushers"].as_f64().unwrap_or(0.0),
        r["send_p99_ms_with_pushers"].as_f64().unwrap_or(0.0),
        r["server_cpu_us_per_notification"].as_f64().unwrap_or(0.0),
    )
}
