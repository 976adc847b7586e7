//! Server-side search: loads E messages into R rooms through many concurrent senders over
//! HTTP, then times `POST /search` for a rare term, a common one and two terms, ordered by
//! rank and by recency, as a user in every room.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use serde_json::{Value, json};

use crate::{scenarios::Target, stats::Samples};

/// Matches of the rare term, whatever the number of events.
const RARE_MATCHES: usize = 50;
const RARE: &str = "quokka";
/// In every other message.
const COMMON: &str = "lorem";

/// The body of message `i`: eight words from a vocabulary of 2 000 with a skewed
/// (roughly Zipf) distribution, the common word in every other message and the rare word
/// in `RARE_MATCHES` of them.
fn body(i: usize, events: usize) -> String {
    let mut state = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut words = Vec::with_capacity(10);
    for _ in 0..8 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (2000f64.powf(u) as usize).clamp(1, 2000);
        words.push(format!("w{rank}"));
    }
    if i.is_multiple_of(2) {
        words.push(COMMON.to_owned());
    }
    if i.is_multiple_of((events / RARE_MATCHES).max(1)) {
        words.push(RARE.to_owned());
    }
    words.join(" ")
}

pub async fn search(
    target: &Target,
    events: usize,
    rooms: usize,
    senders: usize,
    in_flight: usize,
    runs: usize,
) -> Result<Value, String> {
    let searcher = target.users("searcher", 1, in_flight).await?.remove(0);
    let senders = target.users_concurrently("searchsender", senders, in_flight).await?;
    let mut room_ids = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let room = searcher.create_room().await?;
        for sender in &senders {
            sender.join(&room).await?;
        }
        room_ids.push(room);
    }
    let (room_ids, senders) = (Arc::new(room_ids), Arc::new(senders));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (room_ids, senders, next) = (room_ids.clone(), senders.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<(), String>(());
                }
                if i > 0 && i.is_multiple_of(100_000) {
                    eprintln!("  loaded {i} events");
                }
                let sender = &senders[i % senders.len()];
                sender.send(&room_ids[i % room_ids.len()], &body(i, events)).await?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let load_secs = started.elapsed().as_secs_f64();

    let mut report = serde_json::Map::new();
    report.insert("events".to_owned(), json!(events));
    report.insert("rooms".to_owned(), json!(rooms));
    report.insert("load_events_per_second".to_owned(), json!(events as f64 / load_secs));
    for (name, term) in
        [("rare", RARE.to_owned()), ("common", COMMON.to_owned()), ("two_terms", format!("{COMMON} w2"))]
    {
        for order in ["rank", "recent"] {
            let body =
                json!({"search_categories": {"room_events": {"search_term": term, "order_by": order}}});
            // One unmeasured search first, as a client's first query warms the caches.
            let first = searcher.post("/_matrix/client/v3/search", &body, "search").await?;
            let results = &first["search_categories"]["room_events"];
            let mut samples = Samples::default();
            for _ in 0..runs {
                let started = Instant::now();
                searcher.post("/_matrix/client/v3/search", &body, "search").await?;
                samples.push(started.elapsed());
            }
            report.insert(
                format!("{name}_{order}"),
                json!({
                    "term": term,
                    "count": results["count"],
                    "results": results["results"].as_array().map_or(0, Vec::len),
                    "p50_ms": samples.quantile_ms(0.5),
                    "p95_ms": samples.quantile_ms(0.95),
                }),
            );
        }
    }
    Ok(Value::Object(report))
}

/// The row for the search table in docs/benchmarks.md.
pub fn markdown_row(label: &str, r: &Value) -> String {
    let n = |v: &Value| {
        v.as_f64().map_or("–".to_owned(), |x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") })
    };
    let pair = |key: &str| format!("{} / {} ms", n(&r[key]["p50_ms"]), n(&r[key]["p95_ms"]));
    format!(
        "| {label} | {} | {} ev/s | {} | {} | {} | {} | {} | {} |",
        r["events"],
        n(&r["load_events_per_second"]),
        pair("rare_rank"),
        pair("rare_recent"),
        pair("common_rank"),
        pair("common_recent"),
        pair("two_terms_rank"),
        pair("two_terms_recent"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rare_term_has_its_matches_and_the_common_one_half() {
        let events = 10_000;
        let bodies: Vec<String> = (0..events).map(|i| body(i, events)).collect();
        assert_eq!(bodies.iter().filter(|b| b.split(' ').any(|w| w == RARE)).count(), RARE_MATCHES);
        assert_eq!(bodies.iter().filter(|b| b.split(' ').any(|w| w == COMMON)).count(), events / 2);
    }
}
