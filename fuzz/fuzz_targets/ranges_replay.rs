//! Fuzz target `ranges_replay`: see `net_proto::fuzzing::ranges_and_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_proto::fuzzing::ranges_and_replay(data));
