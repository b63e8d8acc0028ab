#![no_main]
//! Fuzz target: see `shardwire::fuzzing::link_frames`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::link_frames(data));
