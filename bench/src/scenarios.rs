//! The measurements. Each sets up its own users and rooms, so runs never share state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    matrix::{User, http_client, register, timeline_bodies},
    stats::Samples,
};

pub struct Target {
    pub base: String,
    /// Prefix for user names, unique per run.
    pub prefix: String,
    pub password: String,
}

impl Target {
    pub async fn users(&self, label: &str, n: usize, pool: usize) -> Result<Vec<User>, String> {
        let http = http_client(pool);
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            users.push(
                register(&http, &self.base, &format!("{}{label}{i}", self.prefix), &self.password).await?,
            );
        }
        Ok(users)
    }

    /// Like [`Target::users`], with up to `in_flight` registrations at once: password
    /// hashing makes registration slow on every server, and some scenarios need a thousand.
    pub async fn users_concurrently(
        &self,
        label: &str,
        n: usize,
        in_flight: usize,
    ) -> Result<Vec<User>, String> {
        let http = http_client(in_flight);
        let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            let (http, base) = (http.clone(), self.base.clone());
            let (name, password) = (format!("{}{label}{i}", self.prefix), self.password.clone());
            tasks.push(tokio::spawn(async move {
                let user = register(&http, &base, &name, &password).await;
                drop(permit);
                user
            }));
        }
        let mut users = Vec::with_capacity(n);
        for task in tasks {
            users.push(task.await.map_err(|e| e.to_string())??);
        }
        Ok(users)
    }
}

/// Requests per second the generator itself manages on a trivial endpoint.
pub async fn ceiling(target: &Target, in_flight: usize, duration: Duration) -> Result<Value, String> {
    let http = http_client(in_flight);
    let url = format!("{}/_matrix/client/versions", target.base);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if http.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())?;
    }
    Ok(json!({"requests_per_second": total as f64 / duration.as_secs_f64()}))
}

/// Sends from `senders` (user, room) pairs with `in_flight` concurrent requests for
/// `duration`; returns messages/s and latency quantiles.
async fn send_load(
    senders: Vec<(User, String)>,
    in_flight: usize,
    duration: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + duration;
    let senders = Arc::new(senders);
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let senders = senders.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut errors = 0u64;
            let mut i = worker;
            while Instant::now() < deadline {
                let (user, room) = &senders[i % senders.len()];
                let started = Instant::now();
                match user.send(room, "load").await {
                    Ok(_) => samples.push(started.elapsed()),
                    Err(_) => errors += 1,
                }
                i += in_flight;
            }
            (samples, errors)
        }));
    }
    let mut samples = Samples::default();
    let mut errors = 0;
    for task in tasks {
        let (s, e) = task.await.map_err(|e| e.to_string())?;
        samples.extend(s);
        errors += e;
    }
    Ok(json!({
        "messages_per_second": samples.len() as f64 / duration.as_secs_f64(),
        "p50_ms": samples.quantile_ms(0.5),
        "p99_ms": samples.quantile_ms(0.99),
        "errors": errors,
    }))
}

/// U users in one room, C requests in flight.
pub async fn one_room_send(
    target: &Target,
    users: usize,
    in_flight: usize,
    duration: Duration,
) -> Result<Value, String> {
    let users = target.users("send", users, in_flight).await?;
    let room = users[0].create_room().await?;
    for user in &users[1..] {
        user.join(&room).await?;
    }
    send_load(users.into_iter().map(|u| (u, room.clone())).collect(), in_flight, duration).await
}

/// S users, each in a room of their own, C requests in flight.
pub async fn many_rooms_send(
    target: &Target,
    users: usize,
    in_flight: usize,
    duration: Duration,
) -> Result<Value, String> {
    let users = target.users("many", users, in_flight).await?;
    let mut senders = Vec::new();
    for user in users {
        let room = user.create_room().await?;
        senders.push((user, room));
    }
    send_load(senders, in_flight, duration).await
}

/// M users long-poll /sync in one room while one user sends N messages `pace` apart:
/// latency from the send's response to the message's arrival at each syncer.
pub async fn fan_out(
    target: &Target,
    syncers: usize,
    messages: usize,
    pace: Duration,
) -> Result<Value, String> {
    let mut users = target.users("fan", syncers + 1, syncers + 1).await?;
    let sender = users.remove(0);
    let room = sender.create_room().await?;
    for user in &users {
        user.join(&room).await?;
    }
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for user in users {
        let room = room.clone();
        let mut since = user.sync(None, 0).await?["next_batch"].as_str().unwrap_or_default().to_owned();
        tasks.push(tokio::spawn(async move {
            let mut arrivals: Vec<(String, Instant)> = Vec::new();
            while arrivals.len() < messages {
                let Ok(response) = user.sync(Some(&since), 30_000).await else { break };
                let now = Instant::now();
                arrivals.extend(
                    timeline_bodies(&response, &room)
                        .filter(|b| b.starts_with("fan-"))
                        .map(|b| (b.to_owned(), now)),
                );
                since = response["next_batch"].as_str().unwrap_or_default().to_owned();
            }
            arrivals
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..messages {
        let body = format!("fan-{n}");
        sender.send(&room, &body).await?;
        sent_at.lock().unwrap().insert(body, Instant::now());
        tokio::time::sleep(pace).await;
    }
    let mut samples = Samples::default();
    let mut missing = 0;
    for task in tasks {
        let arrivals = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .map_err(|_| "fan-out stalled")?
            .map_err(|e| e.to_string())?;
        missing += messages.saturating_sub(arrivals.len());
        let sent_at = sent_at.lock().unwrap();
        for (body, at) in arrivals {
            if let Some(sent) = sent_at.get(&body) {
                // A syncer may see the event before the sender has read its response.
                samples.push(at.saturating_duration_since(*sent));
            }
        }
    }
    Ok(
        json!({"p50_ms": samples.quantile_ms(0.5), "p99_ms": samples.quantile_ms(0.99), "deliveries": samples.len(), "missing": missing}),
    )
}

/// A user in R rooms with H messages each: median time of an initial /sync over `runs`.
pub async fn initial_sync(
    target: &Target,
    rooms: usize,
    history: usize,
    runs: usize,
) -> Result<Value, String> {
    let user = target.users("initial", 1, 8).await?.remove(0);
    for _ in 0..rooms {
        let room = user.create_room().await?;
        for _ in 0..history {
            user.send(&room, "history").await?;
        }
    }
    user.sync(None, 0).await?;
    let mut samples = Samples::default();
    for _ in 0..runs {
        let started = Instant::now();
        user.sync(None, 0).await?;
        samples.push(started.elapsed());
    }
    Ok(json!({"median_ms": samples.quantile_ms(0.5), "p99_ms": samples.quantile_ms(0.99)}))
}

/// N long-polls parked for `window`: the server's CPU seconds used meanwhile.
pub async fn idle_long_polls(
    target: &Target,
    pid: Option<u32>,
    polls: usize,
    window: Duration,
) -> Result<Value, String> {
    let users = target.users("idle", polls.div_ceil(100).max(1), 8).await?;
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(user.sync(None, 0).await?["next_batch"].as_str().unwrap_or_default().to_owned());
    }
    let settle = Duration::from_secs(5);
    let mut tasks = Vec::new();
    for i in 0..polls {
        let mut user = users[i % users.len()].clone();
        // One connection per long-poll, as separate clients would have.
        user.http = http_client(1);
        let since = tokens[i % users.len()].clone();
        let timeout_ms = (settle + window).as_millis() as u64 + 10_000;
        tasks.push(tokio::spawn(async move { user.sync(Some(&since), timeout_ms).await.is_ok() }));
    }
    // Connecting 10 000 clients is work too; measure only the parked time after it.
    tokio::time::sleep(settle).await;
    let cpu_before = pid.and_then(crate::process::cpu_seconds);
    tokio::time::sleep(window).await;
    let cpu_after = pid.and_then(crate::process::cpu_seconds);
    for task in tasks {
        task.abort();
    }
    let cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(json!({
        "long_polls": polls,
        "window_s": window.as_secs_f64(),
        "server_cpu_s": cpu,
        "core_fraction_percent": cpu.map(|c| 100.0 * c / window.as_secs_f64()),
    }))
}
