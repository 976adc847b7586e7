//! An HTTP request from any client or server, after the router matched its path: the
//! first byte picks the endpoint; then three lines of path parameters, a line of query
//! string, and the body. Parsed by ruma through the router's `parse_request`, a failure
//! turned into the Matrix error the caller gets.
//!
//! The router catches a panic of ruma's parser and answers 400 (some ruma deserialisers
//! panic on input they did not expect), so this target does the same: libFuzzer's
//! abort-on-panic hook is replaced by a silent one. Set `MYELIN_FUZZ_PANICS=1` to keep it
//! and hunt those panics instead.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        if std::env::var_os("MYELIN_FUZZ_PANICS").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
    },
    |data: &[u8]| {
        let Some((&endpoint, rest)) = data.split_first() else { return };
        let mut lines = rest.splitn(5, |&b| b == b'\n');
        let mut text = || lines.next().and_then(|line| std::str::from_utf8(line).ok()).unwrap_or("");
        let args = [text(), text(), text()];
        let query = text();
        let body = lines.next().unwrap_or(b"");
        myelin::fuzzing::http_request(endpoint, &args, query, body);
    }
);
