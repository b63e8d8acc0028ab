#![no_main]
//! Fuzz target: see `shardwire::fuzzing::frame_decoder`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::frame_decoder(data));
