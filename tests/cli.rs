//! The `shardwire` CLI as a user runs it: output, JSON shapes, and the exit
//! code and one-line error for bad input.

use std::process::Command;

fn shardwire(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardwire")).args(args).output().expect("run shardwire");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh scratch directory for one test (the test removes it at its end).
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardwire-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A key file `file` in `dir`, made by `shardwire keygen`.
fn keygen(dir: &std::path::Path, file: &str) -> std::path::PathBuf {
    let key = dir.join(file);
    assert_eq!(shardwire(&["keygen", "--out", key.to_str().unwrap()]).0, 0);
    key
}

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn inspect_genesis_json() {
    let file = testdata("genesis.cad3");
    let (code, out, err) =
        shardwire(&["cells", "inspect", &file, "--hash", "sha3-256", "--max-cell", "16383", "--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["top_tag"], "d5");
    assert_eq!(v["top_id"], "b0e44f2a645abfa539f5b96b7a0eabb0f902866feaff0f7c12d1213e02333f13");
    assert_eq!(v["branch_cells"], 726);
    assert_eq!(v["missing"], serde_json::json!([]));
    assert_eq!(v["bytes"], 179161);
    assert_eq!(v["min_cell"], 124);
    assert!(v["max_cell"].as_u64().unwrap() <= 16383);
}

#[test]
fn inspect_text_and_message_mode() {
    let dir = scratch("inspect");
    let msg = dir.join("status.msg");
    std::fs::write(&msg, hex::decode("0c80011109").unwrap()).unwrap();
    let (code, out, _) = shardwire(&["cells", "inspect", msg.to_str().unwrap(), "--message"]);
    assert_eq!(code, 0);
    assert!(out.contains("STATUS"), "{out}");
    assert!(out.contains("complete"), "{out}");
    // The same bytes without --message are not one multi-cell encoding.
    let (code, _, err) = shardwire(&["cells", "inspect", msg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("at byte 0: illegal tag byte 0x0c"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_2_with_offset_and_reason() {
    let dir = scratch("bad");
    let cases: &[(&[u8], &str)] = &[
        (&[0x11, 0x00], "at byte 0: integer is not in its shortest"),
        (&[0x31, 0x05, 1, 2], "at byte 2: input is truncated"),
        (&[0xff], "at byte 0: illegal tag byte 0xff"),
    ];
    for (i, (bytes, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}"));
        std::fs::write(&f, bytes).unwrap();
        let (code, out, err) = shardwire(&["cells", "inspect", f.to_str().unwrap()]);
        assert_eq!(code, 2, "{want}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{err} should contain {want}");
    }
    // Real data under the wrong hash: the map key order no longer holds.
    let (code, _, err) = shardwire(&["cells", "inspect", &testdata("genesis.cad3")]);
    assert_eq!(code, 2);
    assert!(err.contains("at byte 305") && err.contains("ascending key-hash order"), "{err}");
    let (code, _, err) = shardwire(&["cells", "inspect", "/nonexistent/file"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_its_node_id() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("keygen");
    let key = dir.join("node.key");
    let (code, out, err) = shardwire(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let node_id = out.trim();
    assert_eq!(node_id.len(), 64);
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let loaded = shardwire::handshake::Identity::load(&key).unwrap();
    assert_eq!(loaded.node_id().to_hex(), node_id);
    // Never overwrites; a clear error and exit code 2.
    let (code, _, err) = shardwire(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists") && err.contains("node.key"), "{err}");
    // JSON form.
    let key2 = dir.join("other.key");
    let (code, out, _) = shardwire(&["keygen", "--out", key2.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["node_id"].as_str().unwrap().len(), 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

mod common;

/// Starts `shardwire node` and returns the child with its first JSON line.
fn start_node(
    args: &[&str],
) -> (std::process::Child, serde_json::Value, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardwire"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (child, serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line:?}: {e}")), out)
}

fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn node_runs_echoes_serves_metrics_and_summarises_on_sigterm() {
    node_on_io_path("uring");
    node_on_io_path("glommio");
}

fn node_on_io_path(io: &str) {
    use std::io::BufRead;
    use std::time::Duration;
    let dir = scratch(&format!("node-{io}"));
    let key = keygen(&dir, "node.key");
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (mut child, hello, mut out) = start_node(&[
        "node",
        "--key",
        key.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--service",
        "echo",
        "--metrics",
        &metrics,
        "--io",
        io,
        "--ring-buffer-size",
        "64K",
    ]);
    assert_eq!(hello["shards"], 2);
    assert_eq!(hello["io"], io, "the start line names the socket path in use");
    let node_id: shardwire::handshake::NodeId = hello["node_id"].as_str().unwrap().parse().unwrap();
    let listen: std::net::SocketAddr = hello["listen"].as_str().unwrap().parse().unwrap();

    // A library node sends to the CLI node's echo engine and gets it back.
    let me = common::node(1);
    me.add_peer(node_id, listen, shardwire::proxy::Permanence::Ephemeral);
    let echo = shardwire::proxy::EngineId::named("echo");
    me.send(node_id, common::app(), echo, common::msg(77, 100), Default::default()).unwrap();
    let got = common::received(&common::collect(&me, Duration::from_secs(20), |e| !common::received(e).is_empty()));
    assert_eq!(got, vec![77]);

    let text = http_get(&metrics);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("shardwire_messages_in{shard="), "{text}");
    assert!(text.contains("shardwire_ring_bytes_joined{shard="), "{text}");

    // SIGTERM: graceful shutdown and a JSON summary line.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let summary: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(summary["received"], 1);
    assert_eq!(summary["engines"]["echo"]["received"], 1);
    assert_eq!(summary["engines"]["echo"]["sent"], 1);
    assert!(summary.get("delivered").is_some() && summary.get("expired").is_some());
    assert!(child.wait().unwrap().success());
    me.shutdown(Duration::from_secs(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn node_bad_flags_and_key_files_exit_2() {
    let (code, _, err) = shardwire(&["node", "--key", "/nonexistent/key", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/key") && err.contains("does not exist"), "{err}");
    let (code, _, err) =
        shardwire(&["node", "--key", "/tmp/x", "--listen", "127.0.0.1:0", "--peer", "nothex@1.2.3.4:5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--peer"), "{err}");
    let (code, _, _) = shardwire(&["node", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2, "missing --key");
    let (code, _, err) =
        shardwire(&["node", "--key", "/tmp/x", "--listen", "127.0.0.1:0", "--ring-buffer-size", "100"]);
    assert_eq!(code, 2);
    assert!(err.contains("--ring-buffer-size") && err.contains("outside 512 .. 1M"), "{err}");
    // A mistyped shard count is refused before any shard starts (100,000
    // shards used to run the machine out of memory, into the OOM killer).
    let dir = scratch("bad-flags");
    let key = keygen(&dir, "k");
    let (code, _, err) =
        shardwire(&["node", "--key", key.to_str().unwrap(), "--listen", "127.0.0.1:0", "--shards", "100000"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot run 100000 shards: at most"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn permanent_link_comes_back_after_the_peer_process_is_killed_and_restarted() {
    use shardwire::node::NodeEvent;
    use std::time::Duration;
    let dir = scratch("restart");
    let key = keygen(&dir, "b.key");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let args = ["node", "--key", key.to_str().unwrap(), "--listen", &listen, "--service", "echo"];
    let (mut b, hello, _out) = start_node(&args);
    let b_id: shardwire::handshake::NodeId = hello["node_id"].as_str().unwrap().parse().unwrap();

    let a = common::node(1);
    a.add_peer(b_id, listen.parse().unwrap(), shardwire::proxy::Permanence::Permanent);
    let ups = |evs: &[NodeEvent]| evs.iter().filter(|e| matches!(e, NodeEvent::LinkUp(n) if *n == b_id)).count();
    let evs = common::collect(&a, Duration::from_secs(20), |e| ups(e) >= 1);
    assert_eq!(ups(&evs), 1, "first link");

    // No goodbye, no graceful anything: the process dies.
    b.kill().unwrap();
    b.wait().unwrap();
    let evs = common::collect(&a, Duration::from_secs(20), |e| e.iter().any(|e| matches!(e, NodeEvent::LinkDown(_))));
    assert!(evs.iter().any(|e| matches!(e, NodeEvent::LinkDown(n) if *n == b_id)));
    // A message sent while the peer is gone waits for it.
    let echo = shardwire::proxy::EngineId::named("echo");
    a.send(b_id, common::app(), echo, common::msg(5, 10), Default::default()).unwrap();

    let (mut b2, _, _out2) = start_node(&args);
    let evs = common::collect(&a, Duration::from_secs(30), |e| !common::received(e).is_empty());
    assert_eq!(ups(&evs), 1, "the link came back by itself");
    assert_eq!(common::received(&evs), vec![5], "the queued message was delivered and echoed");
    b2.kill().unwrap();
    b2.wait().unwrap();
    a.shutdown(Duration::from_millis(200));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rpc_command_calls_an_rpc_echo_node_and_reports_typed_errors() {
    use std::time::Duration;
    let dir = scratch("rpc");
    let key = keygen(&dir, "node.key");
    let (mut child, hello, _out) =
        start_node(&["node", "--key", key.to_str().unwrap(), "--listen", "127.0.0.1:0", "--service", "rpc-echo"]);
    let target = format!("{}@{}", hello["node_id"].as_str().unwrap(), hello["listen"].as_str().unwrap());

    let (code, out, err) = shardwire(&["rpc", "--target", &target, "--payload-size", "1KiB", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["status"].as_str(), v["bytes"].as_u64()), (Some("ok"), Some(1024)));
    // The link's set-up and the call are timed apart.
    let (call, connect) = (v["elapsed_ms"].as_f64().unwrap(), v["connect_ms"].as_f64().unwrap());
    assert!(call > 0.0 && connect > 0.0, "{v}");

    let (code, out, err) = shardwire(&["rpc", "--target", &target, "--stream", "25", "--payload-size", "10"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: 25 items, 250 bytes in "), "{out}");
    assert!(out.contains(" ms (link up in "), "{out}");

    // Typed errors: a non-zero exit and the reason.
    let (code, out, err) = shardwire(&["rpc", "--target", &target, "--service", "nope", "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("service not supported"), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["error"], "rejected");
    let (code, _, err) = shardwire(&["rpc", "--target", &target, "--method", "77"]);
    assert_eq!(code, 1);
    assert!(err.contains("not_implemented"), "{err}");
    // The wrong NodeId for the address: stops at once, says so.
    let wrong = format!("{}@{}", "ab".repeat(32), hello["listen"].as_str().unwrap());
    let t = std::time::Instant::now();
    let (code, _, err) = shardwire(&["rpc", "--target", &wrong, "--deadline-ms", "20000"]);
    assert_eq!(code, 1);
    assert!(err.contains("not the NodeId dialed"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "did not wait for the deadline");
    // Nothing listening: no link by the deadline, said with the dial's failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nobody = format!("{}@{closed}", hello["node_id"].as_str().unwrap());
    let (code, out, err) = shardwire(&["rpc", "--target", &nobody, "--deadline-ms", "800", "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("no link to") && err.contains("last dial: connection failed: connection refused"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["error"].as_str(), v["elapsed_ms"].is_null()), (Some("deadline"), true), "{v}");
    // Bad flags: exit 2.
    assert_eq!(shardwire(&["rpc", "--target", &target, "--payload-size", "lots"]).0, 2);
    assert_eq!(shardwire(&["rpc", "--target", "nonsense"]).0, 2);

    // The node also answers QUERY and STATUS.
    let me = common::node(1);
    let id: shardwire::handshake::NodeId = hello["node_id"].as_str().unwrap().parse().unwrap();
    me.add_peer(id, hello["listen"].as_str().unwrap().parse().unwrap(), shardwire::proxy::Permanence::Ephemeral);
    let r = me.query(id, shardwire::wire::Value::Long(5), Duration::from_secs(10)).wait().unwrap();
    assert_eq!(r.value().and_then(|c| c.as_long()), Some(5));
    let r = me.status(id, Duration::from_secs(10)).wait().unwrap();
    assert!(r.error().is_none());
    me.shutdown(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loadgen_and_latency_against_a_node() {
    use std::time::Duration;
    let dir = scratch("load");
    let key = keygen(&dir, "node.key");
    let (mut child, hello, _out) = start_node(&[
        "node",
        "--key",
        key.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--service",
        "sink",
        "--service",
        "echo",
        "--service",
        "rpc-echo",
    ]);
    let target = format!("{}@{}", hello["node_id"].as_str().unwrap(), hello["listen"].as_str().unwrap());
    let json =
        |out: &str| -> serde_json::Value { serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}")) };

    for mode in ["send", "rpc", "query"] {
        let (code, out, err) = shardwire(&[
            "loadgen",
            "--target",
            &target,
            "--size",
            "1K",
            "--duration",
            "1s",
            "--rate",
            "2k",
            "--mode",
            mode,
            "--json",
        ]);
        assert_eq!(code, 0, "{mode}: {err}");
        let v = json(&out);
        assert_eq!(v["mode"], mode);
        assert_eq!(
            (v["targets"].as_u64(), v["connections"].as_u64(), v["size"].as_u64()),
            (Some(1), Some(1), Some(1024))
        );
        let (sent, acked) = (v["sent"].as_u64().unwrap(), v["acked"].as_u64().unwrap());
        assert!((1500..=2600).contains(&sent), "{mode}: open loop at 2k/s for 1 s sent {sent}");
        assert_eq!(acked, sent, "{mode}: {v}");
        assert_eq!(v["errors"], serde_json::json!({}));
        let lat = &v["latency_us"];
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(lat[k].as_f64().unwrap() > 0.0, "{mode} {k}");
        }
        assert!(lat["p50"].as_f64() <= lat["p99"].as_f64() && lat["p99"].as_f64() <= lat["max"].as_f64());
        // One progress line per second on stderr.
        assert!(err.contains("msgs/s") && err.contains("p99"), "{err}");
    }
    // Closed loop, two connections, human output.
    let (code, out, err) =
        shardwire(&["loadgen", "--target", &target, "--size", "64", "--duration", "1s", "--max", "--connections", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("closed loop") && out.contains("errors: none"), "{out}");

    // Latency: counts, files, JSON.
    let (hgrm, plot) = (dir.join("lat.hgrm"), dir.join("lat.svg"));
    let (code, out, err) = shardwire(&[
        "latency",
        "--target",
        &target,
        "--count",
        "300",
        "--warmup",
        "20",
        "--json",
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!((v["size"].as_u64(), v["count"].as_u64()), (Some(64), Some(300)));
    assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(
        text.contains("Percentile") && text.contains("#[Max") && text.contains("Total count    =          300"),
        "{text}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("percentile"));
    let (code, out, _) = shardwire(&["latency", "--target", &target, "--duration", "1s", "--rate", "500"]);
    assert_eq!(code, 0);
    assert!(out.contains("500 pings/s on schedule"), "{out}");

    // A wrong NodeId ends the tools at once; pacing is required.
    let wrong = format!("{}@{}", "cd".repeat(32), hello["listen"].as_str().unwrap());
    let t = std::time::Instant::now();
    let (code, _, err) = shardwire(&["loadgen", "--target", &wrong, "--size", "64", "--duration", "5s", "--max"]);
    assert_eq!(code, 1);
    assert!(err.contains("not the NodeId dialed"), "{err}");
    let (code, _, err) = shardwire(&["latency", "--target", &wrong]);
    assert_eq!(code, 1);
    assert!(err.contains("not the NodeId dialed"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let (code, _, err) = shardwire(&["loadgen", "--target", &target, "--size", "64", "--duration", "1s"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(shardwire(&["loadgen", "--target", &target, "--size", "x", "--duration", "1s", "--max"]).0, 2);
    // Counts that would only fill memory are refused up front.
    for (flag, value, says) in
        [("--window", "100000000", "--window 1 to 65536"), ("--shards", "100000", "cannot run 100000 shards: at most")]
    {
        let (code, _, err) =
            shardwire(&["loadgen", "--target", &target, "--size", "64", "--duration", "1s", "--max", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    // Nothing to measure is bad input, not an empty report with exit 0.
    let (code, _, err) = shardwire(&["loadgen", "--target", &target, "--size", "64", "--duration", "0s", "--max"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must be positive"), "{err}");
    for args in [["--count", "0"], ["--duration", "0s"]] {
        let (code, _, err) = shardwire(&["latency", "--target", &target, args[0], args[1]]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_runs_a_cluster_cuts_a_link_and_loses_nothing() {
    let dir = scratch("demo");
    let plot = dir.join("demo.svg");
    let (code, out, err) = shardwire(&[
        "demo",
        "--duration",
        "3s",
        "--rate",
        "500",
        "--rpc-rate",
        "200",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    for want in ["link A-B back up", "completed at C through MISSING_DATA", "delivered 1 time(s)", "nothing lost"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}
