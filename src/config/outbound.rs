//! The `[outbound]` and `[push]` sections: where requests a user can trigger may go, and
//! how push notifications are delivered.

use ipnet::IpNet;
use serde::Deserialize;

/// Requests a user can make the server send (push notifications, federation, URL previews):
/// by default they reach only public addresses (over HTTPS, except URL previews' web pages).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Networks (CIDRs such as `10.0.0.0/8` or `127.0.0.1/32`) these requests may reach even
    /// though they are private, loopback or link-local; plain `http://` is allowed only to
    /// them. Empty by default: nothing inside the server's own network is reachable.
    pub allowed_networks: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// A gateway failing for longer than this loses the notifications that fail after it:
    /// when it comes back, it gets what is new rather than a flood of stale ones.
    pub give_up_after_secs: u64,
    /// Send message bodies to push gateways. Off, a notification carries the event id,
    /// room and sender but no content (the app fetches the event itself).
    pub include_content: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self { give_up_after_secs: 24 * 60 * 60, include_content: true }
    }
}
