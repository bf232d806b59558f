//! Fuzz target `config`: see `net::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net::fuzzing::config(data));
