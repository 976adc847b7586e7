//! A PDU another homeserver sends over federation (in `/send`, `/send_join`, `/invite`,
//! backfill): the first byte picks the room version, the rest is the event's JSON. Runs
//! the checks `federation::verify` does before any key is fetched, then `Pdu::from_raw`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&version, json)) = data.split_first() else { return };
    if let Ok(json) = std::str::from_utf8(json) {
        myelin::fuzzing::incoming_pdu(version, json);
    }
});
