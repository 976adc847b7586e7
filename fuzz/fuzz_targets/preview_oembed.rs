//! The oEmbed document (JSON) a previewed page points to, from whatever server it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    myelin::fuzzing::preview_oembed(data);
});
