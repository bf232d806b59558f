#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_proto::fuzzing::handshake_responder(data));
