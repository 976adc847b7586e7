//! Prometheus metrics (docs/architecture.md, decision 10), served on their own listener when
//! `[metrics] enabled = true`.
//!
//! The metrics are process-wide, like the process they describe, so any layer can record
//! into them without threading a handle through every call.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route's path template (never the raw path: ids would explode the label set).
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    /// `delivered`, `failed` (to be retried), `dropped` (given up), `rejected` (the
    /// gateway refused the push key), `badge` (a count-only update).
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub sync_waiting: Gauge,
    pub events_persisted: Counter,
    pub flush_batch_writers: Histogram,
    pub flush_seconds: Histogram,
    pub db_size_bytes: Gauge,
    pub pushes: Family<PushLabels, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0].into_iter()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("myelin");
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
    let request_seconds =
        Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
    registry.register(
        "http_request_duration_seconds",
        "Time to answer a request, by route",
        request_seconds.clone(),
    );
    let sync_waiting = Gauge::default();
    registry.register(
        "sync_long_polls_waiting",
        "Long-polling /sync requests parked right now",
        sync_waiting.clone(),
    );
    let events_persisted = Counter::default();
    registry.register("events_persisted", "Room events stored", events_persisted.clone());
    let flush_batch_writers = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
    registry.register(
        "flush_batch_writers",
        "Writers made durable by one shared flush",
        flush_batch_writers.clone(),
    );
    let flush_seconds = Histogram::new(latency_buckets());
    registry.register("flush_duration_seconds", "Time one database flush takes", flush_seconds.clone());
    let db_size_bytes = Gauge::default();
    registry.register("database_size_bytes", "Size of the database on disk", db_size_bytes.clone());
    let pushes = Family::<PushLabels, Counter>::default();
    registry.register("push_notifications", "Requests to push gateways, by outcome", pushes.clone());
    Metrics {
        registry,
        requests,
        request_seconds,
        sync_waiting,
        events_persisted,
        flush_batch_writers,
        flush_seconds,
        db_size_bytes,
        pushes,
    }
});

pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// The text exposition format Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
