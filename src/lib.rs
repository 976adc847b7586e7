//! Myelin: a Matrix homeserver in one binary, backed by sled.
//!
//! `docs/architecture.md` is the map of these modules and how a request flows through them.

pub mod account_data;
pub mod accounts;
pub mod admin;
pub mod admin_api;
pub mod appservices;
pub mod archive;
pub mod cli;
pub mod client_api;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod federation;
pub mod federation_api;
/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod media;
pub mod metrics;
pub mod notifier;
pub mod ops_api;
pub mod outbound;
pub mod outbox;
pub mod pdu;
pub mod presence;
pub mod push;
pub mod rate_limiter;
pub mod rooms;
pub mod search;
pub mod server;
pub mod services;
pub mod signing_key;
pub mod storage;
pub mod sync;

/// Milliseconds since the Unix epoch, the unit of Matrix timestamps.
pub fn now_ms() -> u64 {
    ruma::MilliSecondsSinceUnixEpoch::now().get().into()
}
