//! The `[media.url_preview]` section: link previews, which make the server fetch web pages
//! that users name.

use serde::Deserialize;

use super::ConfigError;

/// Link previews (`GET /_matrix/client/v1/media/preview_url`). The pages, oEmbed documents
/// and images they fetch go only where `outbound.allowed_networks` lets user-triggered
/// requests go: public addresses, and private ones only when listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlPreviewConfig {
    /// Serve previews. Off, the endpoints answer `404 M_UNRECOGNIZED`, as Synapse's do
    /// when it has previews off.
    pub enabled: bool,
    /// The most bytes read of one page, oEmbed document or image (Synapse's
    /// `max_spider_size`); a larger answer is not previewed.
    pub max_fetch_bytes: usize,
    /// How long one preview may take, every fetch it makes included.
    pub timeout_secs: u64,
    /// How long a preview is kept and served again without fetching the page.
    pub cache_ttl_secs: u64,
    /// The most previews kept at once; past it, the oldest is forgotten.
    pub cache_entries: usize,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_fetch_bytes: 10 * 1024 * 1024,
            timeout_secs: 20,
            cache_ttl_secs: 3600,
            cache_entries: 1000,
        }
    }
}

impl UrlPreviewConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_fetch_bytes == 0 {
            return Err(ConfigError("media.url_preview.max_fetch_bytes: must be at least 1".to_owned()));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError("media.url_preview.timeout_secs: must be at least 1".to_owned()));
        }
        Ok(())
    }
}
