//! oEmbed (<https://oembed.com>): the JSON document a page can point to with
//! `<link type="application/json+oembed">`, read into the same `og:*` keys a page's own
//! tags use.

use std::{collections::BTreeMap, time::Duration};

use reqwest::Url;
use serde::Deserialize;

/// The fields of an oEmbed response a preview uses; the others are ignored.
#[derive(Deserialize)]
struct Response {
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    author_name: Option<String>,
    provider_name: Option<String>,
    thumbnail_url: Option<String>,
    /// The image itself, for `"type": "photo"`.
    url: Option<String>,
    /// Seconds the provider says the answer may be cached.
    cache_age: Option<serde_json::Value>,
}

/// What an oEmbed document says.
#[derive(Debug, Default)]
pub struct OEmbed {
    pub og: BTreeMap<String, String>,
    pub cache_age: Option<Duration>,
}

/// Reads an oEmbed document fetched from `base`; `None` when it is not one.
pub fn parse(json: &[u8], base: &Url) -> Option<OEmbed> {
    let response: Response = serde_json::from_slice(json).ok()?;
    let mut og = BTreeMap::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            og.insert(key.to_owned(), value);
        }
    };
    // An author stands in for a missing title (a photo or a post has one, not a title).
    set("og:title", response.title.or(response.author_name));
    set("og:site_name", response.provider_name);
    let image = match response.kind.as_deref() {
        Some("photo") => response.url.or(response.thumbnail_url),
        _ => response.thumbnail_url,
    };
    set("og:image", image.and_then(|image| base.join(&image).ok()).map(String::from));
    let cache_age = match response.cache_age {
        // The spec says a number; some providers send it as a string.
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Some(OEmbed { og, cache_age: cache_age.map(Duration::from_secs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_video_and_a_photo() {
        let base = Url::parse("https://example.org/oembed").unwrap();
        let video = parse(
            br#"{"version":"1.0","type":"video","title":"A talk","provider_name":"Tube",
                "thumbnail_url":"/thumb.jpg","cache_age":"600","html":"<iframe>"}"#,
            &base,
        )
        .unwrap();
        assert_eq!(video.og["og:title"], "A talk");
        assert_eq!(video.og["og:site_name"], "Tube");
        assert_eq!(video.og["og:image"], "https://example.org/thumb.jpg");
        assert_eq!(video.cache_age, Some(Duration::from_secs(600)));

        let photo = parse(
            br#"{"type":"photo","author_name":"Ann","url":"https://img.example.org/p.png","width":1,"height":1}"#,
            &base,
        )
        .unwrap();
        assert_eq!(photo.og["og:title"], "Ann");
        assert_eq!(photo.og["og:image"], "https://img.example.org/p.png");
        assert!(parse(b"not json", &base).is_none());
    }
}
