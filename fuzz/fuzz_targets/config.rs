//! Fuzz target `config`: see `net_cli::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| net_cli::fuzzing::config(data));
