#![no_main]
//! Fuzz target: see `shardwire::fuzzing::multicell`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::multicell(data));
