#![no_main]
//! Fuzz target: see `shardwire::fuzzing::record_open`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::record_open(data));
