//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same harnesses the fuzz targets run, so every CI run re-checks the inputs
//! the fuzzers found interesting.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        harness(&data);
        n += 1;
    }
    assert!(n >= 5, "corpus for {target} has only {n} inputs");
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", shardwire::fuzzing::frame_decoder);
}

#[test]
fn multicell_corpus() {
    replay("multicell", shardwire::fuzzing::multicell);
}

#[test]
fn responder_msg1_corpus() {
    replay("responder_msg1", shardwire::fuzzing::responder_msg1);
}

#[test]
fn record_open_corpus() {
    replay("record_open", shardwire::fuzzing::record_open);
}
