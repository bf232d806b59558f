//! Fuzz target `trust_announcement`: see `net_trust::fuzzing::announcement`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_trust::fuzzing::announcement(data));
