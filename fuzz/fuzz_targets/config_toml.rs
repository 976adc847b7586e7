//! The server's config file (TOML), as the admin writes it: not hostile, but a typo must
//! end in an error message, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        myelin::fuzzing::config_toml(text);
    }
});
