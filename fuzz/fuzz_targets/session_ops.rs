//! Fuzz target `session_ops`: see `net_proto::fuzzing::session_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_proto::fuzzing::session_ops(data));
