#![no_main]
//! Fuzz target: see `shardwire::fuzzing::responder_msg1`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::responder_msg1(data));
