//! What a web page says about itself: its OpenGraph tags (`og:*`), with the fallbacks a
//! page without them offers (Twitter cards, `<title>`, `<meta name="description">`, a first
//! image large enough to be content), and the oEmbed document it points to.
//!
//! Bytes become text as a browser would decide: a byte-order mark, else the charset of the
//! `Content-Type` header, else a `<meta charset>` near the top, else UTF-8.

use std::collections::BTreeMap;

use encoding_rs::Encoding;
use reqwest::Url;

/// What was found in a page, before its image is fetched. Image URLs are resolved against
/// the page.
#[derive(Debug, Default)]
pub struct Page {
    /// The page's own `og:*` tags.
    pub og: BTreeMap<String, String>,
    /// `og:*` values read from elsewhere in the page (Twitter cards, `<title>`, the
    /// description, a first image), for the keys its tags leave out.
    pub fallback: BTreeMap<String, String>,
    /// The JSON oEmbed document the page advertises.
    pub oembed: Option<Url>,
}

impl Page {
    /// The page's tags, then `more` (an oEmbed document's), then the fallbacks.
    pub fn merged(self, more: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut og = self.og;
        for (key, value) in more.into_iter().chain(self.fallback) {
            og.entry(key).or_insert(value);
        }
        og
    }
}

/// How far into the page a `<meta charset>` is looked for (the HTML standard's prescan
/// looks at 1024 bytes; pages with long heads put it a little later).
const CHARSET_PRESCAN: usize = 4096;

/// The page's text in the encoding it declares.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> String {
    let declared = content_type.and_then(charset_parameter).or_else(|| meta_charset(bytes));
    let encoding =
        declared.and_then(|label| Encoding::for_label(label.as_bytes())).unwrap_or(encoding_rs::UTF_8);
    // `decode` lets a byte-order mark win over the declared encoding.
    encoding.decode(bytes).0.into_owned()
}

fn charset_parameter(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("charset").then(|| value.trim().trim_matches(['"', '\'']).to_owned())
    })
}

/// `<meta charset="...">` or `<meta http-equiv="Content-Type" content="...; charset=...">`
/// near the top of the page, read as ASCII (which every encoding a page may declare agrees
/// with for these bytes).
fn meta_charset(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(CHARSET_PRESCAN)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let value: String = head[at..]
        .trim_start_matches(['"', '\'', ' '])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!value.is_empty()).then_some(value)
}

/// The smallest side (when the page gives one) of an `<img>` taken as the page's image:
/// smaller ones are icons, spacers and tracking pixels.
const MIN_IMAGE_SIDE: u32 = 10;

/// Elements whose content is text, not markup, to a browser (up to their end tag), but
/// which `tl` would parse as markup: a script's `"<meta property=og:title ...>"` string is
/// no tag of the page.
const RAW_TEXT_ELEMENTS: [&str; 3] = ["script", "style", "noscript"];

/// `html` without the content of its raw-text elements.
fn without_raw_text(html: &str) -> String {
    // ASCII lowercasing keeps every byte where it was, so positions carry over.
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut at = 0;
    while let Some((start, name)) = RAW_TEXT_ELEMENTS
        .iter()
        .filter_map(|name| find_open_tag(&lower, at, name).map(|start| (start, *name)))
        .min()
    {
        let Some(content) = lower[start..].find('>').map(|end| start + end + 1) else { break };
        out.push_str(&html[at..content]);
        let close = format!("</{name}");
        at = lower[content..].find(&close).map_or(html.len(), |end| content + end);
    }
    out.push_str(&html[at..]);
    out
}

/// Where the next `<name` tag (not `<names...`) starts at or after `from`.
fn find_open_tag(lower: &str, from: usize, name: &str) -> Option<usize> {
    let open = format!("<{name}");
    let mut at = from;
    while let Some(found) = lower[at..].find(&open) {
        let start = at + found;
        let next = lower.as_bytes().get(start + open.len()).copied();
        if next.is_none_or(|b| b == b'>' || b == b'/' || b.is_ascii_whitespace()) {
            return Some(start);
        }
        at = start + open.len();
    }
    None
}

/// The text directly inside a tag (`<title>`), without recursing into nested tags, which a
/// hostile page could nest deep enough to exhaust the stack.
fn own_text(tag: &tl::HTMLTag<'_>, parser: &tl::Parser<'_>) -> String {
    let mut text = String::new();
    for child in tag.children().top().iter() {
        if let Some(tl::Node::Raw(raw)) = child.get(parser) {
            text.push_str(&raw.as_utf8_str());
        }
    }
    text
}

/// Reads the OpenGraph data of `html`, fetched from `base`.
pub fn parse(html: &str, base: &Url) -> Page {
    let html = without_raw_text(html);
    let Ok(dom) = tl::parse(&html, tl::ParserOptions::default()) else {
        return Page::default();
    };
    let parser = dom.parser();
    let mut og = BTreeMap::new();
    // Fallbacks, used only when the page has no `og:` value for them.
    let mut fallback: BTreeMap<&str, String> = BTreeMap::new();
    let mut oembed = None;
    for node in dom.nodes() {
        let Some(tag) = node.as_tag() else { continue };
        let name = tag.name().as_utf8_str().to_ascii_lowercase();
        let attr = |key: &str| attribute(tag, key);
        match name.as_str() {
            "meta" => {
                let Some(content) = attr("content") else { continue };
                let content = decode_entities(&content);
                let key = attr("property").or_else(|| attr("name")).map(|k| k.to_ascii_lowercase());
                match key.as_deref() {
                    Some(key) if key.starts_with("og:") => {
                        og.entry(key.to_owned()).or_insert(content);
                    }
                    Some("description") => {
                        fallback.entry("og:description").or_insert(content);
                    }
                    Some(key @ ("twitter:title" | "twitter:description" | "twitter:image")) => {
                        let og_key = match key {
                            "twitter:title" => "og:title",
                            "twitter:description" => "og:description",
                            _ => "og:image",
                        };
                        // A Twitter card beats the plain fallbacks.
                        fallback.insert(og_key, content);
                    }
                    _ if attr("itemprop").is_some_and(|p| p.eq_ignore_ascii_case("image")) => {
                        fallback.entry("og:image").or_insert(content);
                    }
                    _ => {}
                }
            }
            "title" => {
                let title = decode_entities(own_text(tag, parser).trim());
                if !title.is_empty() {
                    fallback.entry("og:title").or_insert(title);
                }
            }
            "img" => {
                let Some(src) = attr("src") else { continue };
                let side = |key: &str| attr(key).and_then(|v| v.trim().parse::<u32>().ok());
                let small = [side("width"), side("height")].into_iter().flatten().any(|s| s < MIN_IMAGE_SIDE);
                if !small && !src.starts_with("data:") {
                    fallback.entry("og:image").or_insert(decode_entities(&src));
                }
            }
            "link" if oembed.is_none() => {
                let json_oembed =
                    attr("type").is_some_and(|t| t.eq_ignore_ascii_case("application/json+oembed"));
                if json_oembed && let Some(href) = attr("href") {
                    oembed = base.join(&decode_entities(&href)).ok();
                }
            }
            _ => {}
        }
    }
    let mut fallback: BTreeMap<String, String> =
        fallback.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for values in [&mut og, &mut fallback] {
        if let Some(image) = values.get("og:image").and_then(|src| base.join(src).ok()) {
            values.insert("og:image".to_owned(), image.to_string());
        }
    }
    Page { og, fallback, oembed }
}

/// An attribute's value, whatever case its name is written in.
fn attribute(tag: &tl::HTMLTag<'_>, key: &str) -> Option<String> {
    tag.attributes()
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .and_then(|(_, value)| value.map(|v| v.into_owned()))
}

/// Replaces the character references pages use in titles and descriptions: numeric ones
/// and the few named ones common in text. An unknown name is left as written.
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest[1..].find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &rest[1..=end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    Some(char::from_u32(code).unwrap_or('\u{fffd}'))
                }
            }?;
            Some((c, end + 2))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://example.org/articles/1").unwrap()
    }

    #[test]
    fn opengraph_tags_win_over_fallbacks() {
        let page = parse(
            r#"<html><head><title>Plain title</title>
            <meta property="og:title" content="Tom &amp; Jerry">
            <META NAME="description" CONTENT="plain description">
            <meta property="og:image" content="/img/cover.png">
            <meta property="og:site_name" content="Example">
            <link rel="alternate" type="application/json+oembed" href="/oembed?url=x&amp;format=json">
            </head><body><img src="other.png"></body></html>"#,
            &base(),
        );
        assert_eq!(page.oembed.as_ref().unwrap().as_str(), "https://example.org/oembed?url=x&format=json");
        let og = page.merged(BTreeMap::from([
            ("og:title".to_owned(), "oEmbed title".to_owned()),
            ("og:description".to_owned(), "oEmbed description".to_owned()),
        ]));
        assert_eq!(og["og:title"], "Tom & Jerry");
        assert_eq!(og["og:description"], "oEmbed description", "oEmbed beats the fallbacks");
        assert_eq!(og["og:image"], "https://example.org/img/cover.png");
        assert_eq!(og["og:site_name"], "Example");
    }

    #[test]
    fn a_page_without_opengraph_falls_back() {
        let page = parse(
            r#"<title> Just a title &#8212; here </title>
            <img src="pixel.gif" width="1" height="1"><img src="data:image/png;base64,xx">
            <img src="photo.jpg" width="640">"#,
            &base(),
        );
        assert!(page.oembed.is_none());
        let og = page.merged(BTreeMap::new());
        assert_eq!(og["og:title"], "Just a title \u{2014} here");
        assert_eq!(og["og:image"], "https://example.org/articles/photo.jpg");
        assert!(!og.contains_key("og:description"));
    }

    #[test]
    fn charsets_come_from_the_header_then_the_page() {
        let latin1 = b"<meta charset=\"iso-8859-1\"><title>caf\xe9</title>";
        assert!(decode(latin1, None).contains("café"));
        assert!(decode(latin1, Some("text/html; charset=windows-1252")).contains("café"));
        let utf8 = "<title>café</title>".as_bytes();
        assert!(decode(utf8, Some("text/html")).contains("café"));
        let shift_jis =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">\x93\xfa\x96\x7b";
        assert!(decode(shift_jis, None).contains("日本"));
    }

    #[test]
    fn scripts_and_styles_are_not_markup() {
        let page = parse(
            r#"<script type="module">const t = '<meta property="og:title" content="from a script">';</script>
            <SCRIPT>if (a<b) x = "<img src=bad.png>"</SCRIPT><scripts><style>p{}</style>
            <noscript><img src="pixel.gif"></noscript><title>Real</title><img src="good.png">"#,
            &base(),
        );
        let og = page.merged(BTreeMap::new());
        assert_eq!(og["og:title"], "Real");
        assert_eq!(og["og:image"], "https://example.org/articles/good.png");
        assert_eq!(without_raw_text("<script>never closed <meta"), "<script>");
    }

    #[test]
    fn deep_nesting_is_no_danger() {
        let html = format!("<title>deep{}</title>", "<b>".repeat(200_000));
        assert_eq!(parse(&html, &base()).fallback["og:title"], "deep");
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &lt;b&gt; &#x41;&#66; &unknown; & done"), "a <b> AB &unknown; & done");
        assert_eq!(decode_entities("&#99999999;"), "\u{fffd}");
    }
}
