//! Link previews (`/media/preview_url`): fetch the page a user names, read what it says
//! about itself (OpenGraph, else its title, description and first image; its oEmbed
//! document when it points to one), store its image in the content repository and answer
//! with `og:*` keys whose `og:image` is that file's `mxc://` URI.
//!
//! Every fetch goes where `outbound.allowed_networks` lets user-triggered requests go
//! (`fetch.rs`); the page is read in its charset and parsed off the async threads
//! (`html.rs`); oEmbed in `oembed.rs`; finished previews are kept a while (`cache.rs`).
//! A failing oEmbed document or image leaves that part out; only the page itself failing
//! fails the preview.

mod cache;
mod fetch;
pub(crate) mod html;
pub(crate) mod oembed;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use reqwest::Url;
use ruma::UserId;
use serde_json::{Map, Value};

use self::{cache::Cache, fetch::Fetcher};
use super::{Media, thumbnail};
use crate::{config::UrlPreviewConfig, outbound::OutboundPolicy};

/// Why no preview could be made.
#[derive(Debug, Clone)]
pub enum PreviewError {
    /// Not an absolute `http`/`https` URL.
    InvalidUrl(String),
    /// The outbound rule does not let the server go there.
    Refused(String),
    /// The page answered with more than `max_fetch_bytes`.
    TooLarge(String),
    /// The page could not be fetched: no answer, an error status, too slow.
    Upstream(String),
    /// This server failed (storing the image).
    Internal(String),
    /// `media.url_preview.enabled` is off.
    Disabled,
}

impl std::fmt::Display for PreviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidUrl(m) | Self::TooLarge(m) | Self::Upstream(m) | Self::Internal(m) => f.write_str(m),
            Self::Refused(m) => write!(f, "this server may not fetch that URL: {m}"),
            Self::Disabled => f.write_str("URL previews are off on this server"),
        }
    }
}

/// A preview: the `og:*` object answered to clients.
pub type OpenGraph = Arc<Map<String, Value>>;

#[derive(Clone)]
struct Preview {
    og: OpenGraph,
    /// How long it may be served again (shorter when oEmbed says so).
    lifetime: Duration,
}

type Outcome = Result<Preview, PreviewError>;

/// How long a failure is remembered: asking again at once would only fail again, but a
/// site that was down for a minute should not stay unpreviewable for the hour.
const FAILURE_LIFETIME: Duration = Duration::from_secs(60);

/// The longest key and value kept (Synapse's limits): a page cannot make a preview huge.
const MAX_KEY_CHARS: usize = 50;
const MAX_VALUE_CHARS: usize = 1000;
/// The most `og:*` keys a page contributes.
const MAX_KEYS: usize = 30;

/// Keys describing the page's own image, replaced by those of the stored copy.
const IMAGE_KEYS: [&str; 6] =
    ["og:image", "og:image:url", "og:image:secure_url", "og:image:width", "og:image:height", "og:image:type"];

pub struct Previews {
    fetcher: Fetcher,
    cache: Cache<Outcome>,
    /// Pages' images already stored, by URL: a site's logo is stored once, not once per
    /// page of the site.
    images: Cache<Option<StoredImage>>,
    timeout: Duration,
    lifetime: Duration,
}

/// How long a page's image, once stored, is used again for other previews.
const IMAGE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An image stored in the content repository for a preview.
#[derive(Clone)]
struct StoredImage {
    mxc: String,
    content_type: String,
    width: u32,
    height: u32,
    size: usize,
}

impl Previews {
    pub fn new(config: &UrlPreviewConfig, policy: Arc<OutboundPolicy>) -> Self {
        let timeout = Duration::from_secs(config.timeout_secs);
        let lifetime = Duration::from_secs(config.cache_ttl_secs);
        let lifetime_of: fn(&Outcome) -> Duration = |outcome| match outcome {
            Ok(preview) => preview.lifetime,
            Err(_) => FAILURE_LIFETIME,
        };
        Self {
            fetcher: Fetcher::new(policy, timeout, config.max_fetch_bytes),
            cache: Cache::new(config.cache_entries, lifetime, lifetime_of),
            images: Cache::new(config.cache_entries, IMAGE_LIFETIME, |image| {
                if image.is_some() { IMAGE_LIFETIME } else { FAILURE_LIFETIME }
            }),
            timeout,
            lifetime,
        }
    }

    /// The preview of `url`, asked for by `user` (who is recorded as the uploader of the
    /// image it stores), from the cache when it is there.
    pub async fn preview(&self, media: &Media, user: &UserId, url: &str) -> Result<OpenGraph, PreviewError> {
        let mut url = fetch::parse_url(url)?;
        // The fragment names a place in the page, which is never sent: one page, one entry.
        url.set_fragment(None);
        let outcome = self
            .cache
            .get_or_make(url.as_str(), || async {
                let made = tokio::time::timeout(self.timeout, self.make(media, user, url.clone())).await;
                made.unwrap_or_else(|_| {
                    Err(PreviewError::Upstream(format!(
                        "{url} could not be previewed within {} s",
                        self.timeout.as_secs()
                    )))
                })
            })
            .await;
        outcome.map(|preview| preview.og)
    }

    async fn make(&self, media: &Media, user: &UserId, url: Url) -> Outcome {
        let page = self.fetcher.get(url).await?;
        let mut lifetime = self.lifetime;
        let mut og = BTreeMap::new();
        let mut image = None;
        let essence = page.essence().to_owned();
        if essence.starts_with("image/") {
            image = self.store_image(media, user, page).await?;
        } else if essence == "text/html" || essence == "application/xhtml+xml" {
            let found = tokio::task::spawn_blocking(move || {
                html::parse(&html::decode(&page.bytes, page.content_type.as_deref()), &page.url)
            })
            .await
            .map_err(|e| PreviewError::Internal(e.to_string()))?;
            // The page's own tags win where both say something (they are often the fuller
            // ones); oEmbed beats what the page says only in passing (its `<title>`).
            let mut from_oembed = BTreeMap::new();
            if let Some(document) = found.oembed.clone() {
                match self.fetcher.get(document).await {
                    Ok(fetched) => {
                        if let Some(oembed) = oembed::parse(&fetched.bytes, &fetched.url) {
                            lifetime = oembed.cache_age.map_or(lifetime, |age| age.min(lifetime));
                            from_oembed = oembed.og;
                        }
                    }
                    Err(e) => tracing::info!(error = %e, "oEmbed document left out of a preview"),
                }
            }
            og = found.merged(from_oembed);
            let image_url = og.get("og:image").and_then(|src| fetch::parse_url(src).ok());
            og.retain(|key, _| !IMAGE_KEYS.contains(&key.as_str()));
            if let Some(image_url) = image_url {
                image = self.page_image(media, user, image_url).await;
            }
        }
        Ok(Preview { og: Arc::new(answer(og, image)), lifetime })
    }

    /// A page's image, stored once a day at most however often pages showing it are
    /// previewed; `None` when it cannot be had (the preview goes without).
    async fn page_image(&self, media: &Media, user: &UserId, url: Url) -> Option<StoredImage> {
        self.images
            .get_or_make(url.as_str(), || async {
                match self.fetcher.get(url.clone()).await {
                    Ok(fetched) => self.store_image(media, user, fetched).await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "a preview's image could not be stored");
                        None
                    }),
                    Err(e) => {
                        tracing::info!(error = %e, "image left out of a preview");
                        None
                    }
                }
            })
            .await
    }

    /// Stores a fetched image as media; `None` when it is no image the server can read (so
    /// no thumbnail could be made of it either).
    async fn store_image(
        &self,
        media: &Media,
        user: &UserId,
        fetched: fetch::Fetched,
    ) -> Result<Option<StoredImage>, PreviewError> {
        let Some(probed) = thumbnail::probe(&fetched.bytes) else {
            return Ok(None);
        };
        let size = fetched.bytes.len();
        let name = fetched.url.path_segments().and_then(|mut s| s.next_back()).filter(|n| !n.is_empty());
        let name = name.map(|n| percent_encoding::percent_decode_str(n).decode_utf8_lossy().into_owned());
        let mxc = media
            .upload(user, Some(probed.content_type.to_owned()), name, fetched.bytes)
            .await
            .map_err(|e| PreviewError::Internal(format!("storing a preview image: {e}")))?;
        Ok(Some(StoredImage {
            mxc: mxc.to_string(),
            content_type: probed.content_type.to_owned(),
            width: probed.width,
            height: probed.height,
            size,
        }))
    }
}

/// The answer: the page's keys within the limits, and the stored image's.
fn answer(og: BTreeMap<String, String>, image: Option<StoredImage>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in og {
        if out.len() >= MAX_KEYS || key.chars().count() > MAX_KEY_CHARS {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let value = match value.char_indices().nth(MAX_VALUE_CHARS) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_owned(),
        };
        out.insert(key, Value::String(value));
    }
    if let Some(image) = image {
        out.insert("og:image".to_owned(), image.mxc.into());
        out.insert("og:image:type".to_owned(), image.content_type.into());
        out.insert("og:image:width".to_owned(), image.width.into());
        out.insert("og:image:height".to_owned(), image.height.into());
        out.insert("matrix:image:size".to_owned(), image.size.into());
    }
    out
}
