//! Fuzz target `trust_token`: see `net_trust::fuzzing::token`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_trust::fuzzing::token(data));
