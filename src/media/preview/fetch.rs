//! Fetching what a preview needs (the page, its oEmbed document, its image) under the
//! outbound rule (`outbound.rs`): each hop of a redirect chain is checked again, since the
//! HTTP clients never follow one themselves, and an answer is read with a size limit
//! before it is buffered.

use std::sync::Arc;

use reqwest::{StatusCode, Url, header};

use super::PreviewError;
use crate::outbound::{OutboundHttp, OutboundPolicy, Refused};

/// Redirects followed from one URL, as a browser would follow a few.
const MAX_REDIRECTS: usize = 5;

/// What some sites show only to crawlers (OpenGraph tags in server-rendered pages) they
/// show to a user agent that says it is a bot; the version is left out, as it tells a
/// stranger what to attack.
const USER_AGENT: &str = "Myelin (bot; link previews for Matrix)";

/// An answer read whole.
pub struct Fetched {
    /// Where the answer came from, after redirects: relative links resolve against it.
    pub url: Url,
    /// The `Content-Type` header, lowercase.
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl Fetched {
    /// The media type without parameters (`text/html`).
    pub fn essence(&self) -> &str {
        self.content_type.as_deref().and_then(|t| t.split(';').next()).unwrap_or_default().trim()
    }
}

pub struct Fetcher {
    http: OutboundHttp,
    max_bytes: usize,
}

/// A URL as a preview may request it: absolute, `http` or `https`, with a host.
pub fn parse_url(url: &str) -> Result<Url, PreviewError> {
    let parsed =
        Url::parse(url).map_err(|e| PreviewError::InvalidUrl(format!("{url:?} is not a URL: {e}")))?;
    check_url(&parsed)?;
    Ok(parsed)
}

fn check_url(url: &Url) -> Result<(), PreviewError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PreviewError::InvalidUrl(format!("only http and https URLs are previewed, not {url}")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(PreviewError::InvalidUrl(format!("{url} has no host")));
    }
    Ok(())
}

/// Whether `refused` is somewhere in the chain of `error`'s causes: the guarded resolver
/// refused every address of the name.
fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

impl Fetcher {
    /// `timeout` bounds each request; the caller bounds the whole preview.
    pub fn new(policy: Arc<OutboundPolicy>, timeout: std::time::Duration, max_bytes: usize) -> Self {
        Self { http: OutboundHttp::for_web_pages(policy, timeout, USER_AGENT), max_bytes }
    }

    /// GETs `url`, following up to [`MAX_REDIRECTS`] redirects, each checked like the first.
    pub async fn get(&self, url: Url) -> Result<Fetched, PreviewError> {
        let mut url = url;
        for _ in 0..=MAX_REDIRECTS {
            check_url(&url)?;
            let client = self.http.client_for(&url).map_err(|e| PreviewError::Refused(e.0))?;
            let response = client
                .get(url.clone())
                .header(header::ACCEPT, "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.8")
                .header(header::ACCEPT_LANGUAGE, "en;q=0.9, *;q=0.5")
                .send()
                .await
                .map_err(|e| match refusal(&e) {
                    Some(refused) => PreviewError::Refused(refused.0.clone()),
                    None if e.is_timeout() => PreviewError::Upstream(format!("{url} did not answer in time")),
                    None => PreviewError::Upstream(format!("{url} could not be fetched: {e}")),
                })?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| PreviewError::Upstream(format!("{url} redirects nowhere")))?;
                url = url
                    .join(location)
                    .map_err(|e| PreviewError::Upstream(format!("{url} redirects to a bad URL: {e}")))?;
                continue;
            }
            if !status.is_success() {
                return Err(PreviewError::Upstream(format!("{url} answered {status}")));
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|t| t.to_str().ok())
                .map(str::to_ascii_lowercase);
            let bytes = self.read_capped(&url, response).await?;
            return Ok(Fetched { url, content_type, bytes });
        }
        Err(PreviewError::Upstream(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The body, or an error as soon as it is known to exceed the limit: from
    /// `Content-Length` before reading, else while reading.
    async fn read_capped(&self, url: &Url, mut response: reqwest::Response) -> Result<Vec<u8>, PreviewError> {
        let too_large = || PreviewError::TooLarge(format!("{url} is larger than {} bytes", self.max_bytes));
        if response.content_length().is_some_and(|length| length > self.max_bytes as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                PreviewError::Upstream(format!("{url} did not answer in time"))
            } else {
                PreviewError::Upstream(format!("reading {url}: {e}"))
            }
        })? {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}
