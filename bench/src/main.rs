//! `myelin-bench`: drives any Matrix homeserver through the same client code, so Myelin and
//! Synapse are measured alike. Prints a JSON summary and a markdown table row.
//!
//! The server must allow open registration (m.login.dummy) and have rate limits off.
//! With `--pid`, the server's memory and CPU are read from /proc.

mod matrix;
mod process;
mod push;
mod scenarios;
mod search;
mod sliding;
mod stats;

use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use scenarios::Target;

#[derive(Parser)]
#[command(about = "Load generator for Matrix homeservers")]
struct Args {
    /// Homeserver base URL, e.g. http://127.0.0.1:8008.
    #[arg(long)]
    url: String,
    /// Name for the report (e.g. "myelin" or "synapse").
    #[arg(long, default_value = "server")]
    label: String,
    /// The server's process id, for RSS and CPU.
    #[arg(long)]
    pid: Option<u32>,
    /// Scenarios to run (comma-separated): ceiling, send, fanout, initial, rooms, idle,
    /// sliding, push, and search (not run unless named: it loads a million events).
    #[arg(long, default_value = "ceiling,send,fanout,initial,rooms,idle,sliding,push")]
    only: String,
    /// Users in the one-room send test (U).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Requests in flight in the send tests (C).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Seconds each send test runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Long-polling syncers in the fan-out test (M).
    #[arg(long, default_value_t = 50)]
    syncers: usize,
    /// Messages sent in the fan-out test (N).
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Milliseconds between fan-out messages.
    #[arg(long, default_value_t = 20)]
    pace_ms: u64,
    /// Rooms of the initial-sync user (R).
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Messages per room for the initial-sync user (H).
    #[arg(long, default_value_t = 200)]
    history: usize,
    /// Users each sending in their own room (S).
    #[arg(long, default_value_t = 50)]
    room_senders: usize,
    /// Idle long-polls whose CPU cost is measured.
    #[arg(long, default_value_t = 10_000)]
    idle_polls: usize,
    /// Seconds the idle long-polls are watched.
    #[arg(long, default_value_t = 30)]
    idle_window: u64,
    /// Rooms of the user in the sliding sync test.
    #[arg(long, default_value_t = 500)]
    sliding_rooms: usize,
    /// Sliding sync requests measured for each figure.
    #[arg(long, default_value_t = 100)]
    sliding_runs: usize,
    /// Idle sliding sync connections (each having seen every room) whose memory is measured.
    #[arg(long, default_value_t = 200)]
    sliding_idle: usize,
    /// Members of the push fan-out room, each with a pusher but the sender.
    #[arg(long, default_value_t = 1000)]
    push_members: usize,
    /// Messages sent in the push fan-out room (before and again after the pushers are set).
    #[arg(long, default_value_t = 20)]
    push_messages: usize,
    /// Milliseconds between push fan-out messages.
    #[arg(long, default_value_t = 500)]
    push_pace_ms: u64,
    /// Messages loaded for the search test (E).
    #[arg(long, default_value_t = 1_000_000)]
    search_events: usize,
    /// Rooms the search test's messages are spread over (all of them the searcher's).
    #[arg(long, default_value_t = 20)]
    search_rooms: usize,
    /// Users sending the search test's messages (each in every room).
    #[arg(long, default_value_t = 32)]
    search_senders: usize,
    /// Searches timed for each figure.
    #[arg(long, default_value_t = 30)]
    search_runs: usize,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let target = Target {
        base: args.url.trim_end_matches('/').to_owned(),
        prefix: format!("bench{}x", std::process::id()),
        password: "bench-password".to_owned(),
    };
    let wanted: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let idle_rss = args.pid.and_then(process::rss_bytes);
    let peak = args.pid.map(process::PeakRss::start);
    let duration = Duration::from_secs(args.duration);
    let mut report = serde_json::Map::new();
    report.insert("label".to_owned(), json!(args.label));
    for scenario in &wanted {
        eprintln!("running {scenario}...");
        let result = match *scenario {
            "ceiling" => scenarios::ceiling(&target, args.in_flight, duration).await?,
            "send" => scenarios::one_room_send(&target, args.users, args.in_flight, duration).await?,
            "fanout" => {
                scenarios::fan_out(&target, args.syncers, args.messages, Duration::from_millis(args.pace_ms))
                    .await?
            }
            "initial" => scenarios::initial_sync(&target, args.rooms, args.history, 10).await?,
            "rooms" => {
                scenarios::many_rooms_send(&target, args.room_senders, args.in_flight, duration).await?
            }
            "idle" => {
                scenarios::idle_long_polls(
                    &target,
                    args.pid,
                    args.idle_polls,
                    Duration::from_secs(args.idle_window),
                )
                .await?
            }
            "sliding" => {
                sliding::sliding_sync(
                    &target,
                    args.sliding_rooms,
                    args.sliding_runs,
                    args.sliding_idle,
                    args.pid,
                )
                .await?
            }
            "push" => {
                push::push_fan_out(
                    &target,
                    args.push_members,
                    args.push_messages,
                    Duration::from_millis(args.push_pace_ms),
                    args.pid,
                )
                .await?
            }
            "search" => {
                search::search(
                    &target,
                    args.search_events,
                    args.search_rooms,
                    args.search_senders,
                    args.in_flight,
                    args.search_runs,
                )
                .await?
            }
            other => return Err(format!("unknown scenario {other}")),
        };
        let mut result = result;
        // Which scenario drove the peak: the peak so far and the RSS left behind.
        if let (Some(pid), Some(peak), Value::Object(fields)) = (args.pid, &peak, &mut result) {
            fields.insert("rss_peak_so_far_mb".to_owned(), json!(mb(peak.peak())));
            fields.insert("rss_after_mb".to_owned(), json!(process::rss_bytes(pid).map(mb)));
        }
        eprintln!("  {result}");
        report.insert((*scenario).to_owned(), result);
    }
    if let (Some(idle), Some(peak)) = (idle_rss, &peak) {
        report.insert("rss_mb".to_owned(), json!({"idle": mb(idle), "peak": mb(peak.peak())}));
    }
    let report = Value::Object(report);
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
    println!("{}", markdown_row(&report));
    if let Some(sliding) = report.get("sliding") {
        println!("{}", sliding::markdown_row(report["label"].as_str().unwrap_or("?"), sliding));
    }
    if let Some(search) = report.get("search") {
        println!("{}", search::markdown_row(report["label"].as_str().unwrap_or("?"), search));
    }
    if let Some(push) = report.get("push") {
        println!("{}", push::markdown_row(report["label"].as_str().unwrap_or("?"), push));
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// One row of the table in docs/benchmarks.md.
fn markdown_row(r: &Value) -> String {
    let n = |v: &Value| {
        v.as_f64().map_or("–".to_owned(), |x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") })
    };
    format!(
        "| {} | {} msg/s | {} / {} ms | {} / {} ms | {} ms | {} msg/s | {} / {} MB | {} % | {} req/s |",
        r["label"].as_str().unwrap_or("?"),
        n(&r["send"]["messages_per_second"]),
        n(&r["send"]["p50_ms"]),
        n(&r["send"]["p99_ms"]),
        n(&r["fanout"]["p50_ms"]),
        n(&r["fanout"]["p99_ms"]),
        n(&r["initial"]["median_ms"]),
        n(&r["rooms"]["messages_per_second"]),
        n(&r["rss_mb"]["idle"]),
        n(&r["rss_mb"]["peak"]),
        n(&r["idle"]["core_fraction_percent"]),
        n(&r["ceiling"]["requests_per_second"]),
    )
}
