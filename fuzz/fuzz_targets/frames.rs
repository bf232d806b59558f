//! Fuzz target `frames`: see `net_proto::fuzzing::frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_proto::fuzzing::frames(data));
