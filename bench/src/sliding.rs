//! Sliding sync (MSC4186) as Element X uses it, for a user in many rooms: how long a new
//! connection waits for its first page of the room list, how soon a long-poll wakes after a
//! message, and how much memory an idle connection that has seen every room holds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{matrix::User, scenarios::Target, stats::Samples};

/// Element X's room list request (matrix-sdk-ui 0.16), for the rooms `[0, end]`.
fn room_list(conn_id: &str, end: usize) -> Value {
    json!({
        "conn_id": conn_id,
        "lists": {"all_rooms": {
            "ranges": [[0, end]],
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""],
                ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
                ["io.element.functional_members", ""], ["m.space.parent", "*"], ["m.space.child", "*"]
            ],
            "timeline_limit": 1,
            "filters": {}
        }},
        "extensions": {
            "account_data": {"enabled": true},
            "receipts": {"enabled": true, "rooms": ["*"]},
            "typing": {"enabled": true}
        }
    })
}

fn pos(response: &Value) -> Result<String, String> {
    response["pos"].as_str().map(str::to_owned).ok_or_else(|| format!("no pos in {response}"))
}

pub async fn sliding_sync(
    target: &Target,
    rooms: usize,
    runs: usize,
    idle_connections: usize,
    pid: Option<u32>,
) -> Result<Value, String> {
    let mut users = target.users("sliding", 2, 8).await?;
    let (user, sender) = (users.remove(0), users.remove(0));
    let mut room_ids = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let room = user.create_room().await?;
        user.send(&room, "hello").await?;
        room_ids.push(room);
    }
    let busy = room_ids[0].clone();
    sender.join(&busy).await?;

    // A new connection's first page: rooms [0, 19].
    let mut first = Samples::default();
    for run in 0..runs {
        let started = Instant::now();
        user.sliding(None, None, &room_list(&format!("first-{run}"), 19)).await?;
        first.push(started.elapsed());
    }

    // A parked long-poll, woken by a message in one of the rooms.
    let body = room_list("wake", 19);
    let mut since = pos(&user.sliding(None, None, &body).await?)?;
    let mut wake = Samples::default();
    for run in 0..runs {
        let poll = {
            let (user, body, since) = (user.clone(), body.clone(), since.clone());
            tokio::spawn(async move {
                let response = user.sliding(Some(&since), Some(30_000), &body).await;
                (response, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender.send(&busy, &format!("wake {run}")).await?;
        let sent = Instant::now();
        let (response, arrived) = poll.await.map_err(|e| e.to_string())?;
        let response = response?;
        if response["rooms"][&busy].is_null() {
            return Err(format!("the long-poll woke without the room: {response}"));
        }
        wake.push(arrived.saturating_duration_since(sent));
        since = pos(&response)?;
    }

    // Idle connections that have seen every room, as Element X's list ends up. One goes
    // first, so what every connection shares (the server's caches of those rooms) is in
    // place before the memory is read.
    let all = rooms.saturating_sub(1);
    user.sliding(None, None, &room_list("warm-up", all)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pid.and_then(crate::process::rss_bytes);
    for n in 0..idle_connections {
        user.sliding(None, None, &room_list(&format!("idle-{n}"), all)).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pid.and_then(crate::process::rss_bytes);
    let per_connection_kb = match (before, after) {
        (Some(before), Some(after)) if idle_connections > 0 => {
            Some(after.saturating_sub(before) as f64 / idle_connections as f64 / 1024.0)
        }
        _ => None,
    };
    Ok(json!({
        "rooms": rooms,
        "first_p50_ms": first.quantile_ms(0.5),
        "first_p99_ms": first.quantile_ms(0.99),
        "wake_p50_ms": wake.quantile_ms(0.5),
        "wake_p99_ms": wake.quantile_ms(0.99),
        "idle_connections": idle_connections,
        "kb_per_idle_connection": per_connection_kb,
    }))
}

/// One row of the sliding sync table in docs/benchmarks.md.
pub fn markdown_row(label: &str, r: &Value) -> String {
    let n = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"));
    format!(
        "| {label} | {} rooms | {} / {} ms | {} / {} ms | {} KB |",
        r["rooms"],
        n(&r["first_p50_ms"]),
        n(&r["first_p99_ms"]),
        n(&r["wake_p50_ms"]),
        n(&r["wake_p99_ms"]),
        n(&r["kb_per_idle_connection"]),
    )
}

impl User {
    /// One sliding sync request.
    pub async fn sliding(
        &self,
        pos: Option<&str>,
        timeout_ms: Option<u64>,
        body: &Value,
    ) -> Result<Value, String> {
        let mut path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync".to_owned();
        let mut query = Vec::new();
        if let Some(pos) = pos {
            query.push(format!("pos={pos}"));
        }
        if let Some(timeout) = timeout_ms {
            query.push(format!("timeout={timeout}"));
        }
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        self.post(&path, body, "sliding sync").await
    }
}
