//! The registration file of an application service (a bridge), as a server admin installs
//! it from the bridge's own output: YAML (or JSON) text, read and checked at startup.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        myelin::fuzzing::appservice_registration(text);
    }
});
