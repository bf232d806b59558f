//! Fuzz target `trust_reservation`: see `net_trust::fuzzing::reservation`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_trust::fuzzing::reservation(data));
