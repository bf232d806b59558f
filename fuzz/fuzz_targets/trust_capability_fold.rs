//! Fuzz target `trust_capability_fold`: see `net_trust::fuzzing::capability_fold`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_trust::fuzzing::capability_fold(data));
