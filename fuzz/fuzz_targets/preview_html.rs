//! A web page a user asks a link preview of: any site's bytes, in any charset. The first
//! byte picks the `Content-Type` header the site sent; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("text/html"),
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=ISO-8859-1"),
    Some("text/html; charset=\"shift_jis\""),
    Some("text/html;charset=utf-16le"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    myelin::fuzzing::preview_html(body, content_type);
});
