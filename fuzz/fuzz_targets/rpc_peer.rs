#![no_main]
//! Fuzz target: see `shardwire::fuzzing::rpc_peer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shardwire::fuzzing::rpc_peer(data));
