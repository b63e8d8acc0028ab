//! 10,000 idle authenticated links on one node: memory per link, and
//! handshakes accepted per second (per core of the node's CPU time).
//!
//! `cargo bench --bench links [-- N]` (N links, default 10000)
//!
//! The node is a separate `shardwire node` process (2 shards), so its
//! resident memory is measured alone (`VmRSS` from `/proc`). Client threads
//! here dial with blocking std sockets, complete the Noise handshake with
//! the library's pure handshake layer, send HELLO, then keep each link alive
//! with a PING every few seconds (an idle link that hears nothing for 20 s
//! is closed by design).

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardwire::handshake::{HandshakeConfig, Identity, Initiator, Link, NodeId};
use shardwire::proxy::frames;
use shardwire::wire::{FrameDecoder, write_frame};

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: reads and writes one rlimit we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let want = lim.rlim_max.max(1 << 20);
        let r = libc::rlimit { rlim_cur: want, rlim_max: want };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
            let r = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn connect(addr: SocketAddr, server: NodeId, me: &Identity) -> std::io::Result<(TcpStream, Link)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let (init, m1) = Initiator::start(me, server, 0, 0, &HandshakeConfig::default(), now)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut out = BytesMut::new();
    write_frame(&mut out, &m1);
    s.write_all(&out)?;
    let mut dec = FrameDecoder::new(256);
    let mut buf = BytesMut::new();
    let m2 = loop {
        if let Ok(Some(f)) = dec.decode(&mut buf) {
            break f;
        }
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let est = init.read_reply(&m2, now).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut link = est.link;
    let mut frames_out: Vec<Bytes> = Vec::new();
    frames::hello(&mut frames_out, 1 + rand_u64() % 1_000_000, 0, 1, 0);
    let mut out = BytesMut::new();
    link.send_frames(frames_out.iter().map(|f| f.as_ref()), &mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    s.write_all(&out)?;
    s.set_nonblocking(true)?;
    Ok((s, link))
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: fills 8 bytes we own.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    u64::from_le_bytes(b)
}

fn ping(s: &mut TcpStream, link: &mut Link, drain: &mut [u8]) {
    // Discard what the node sent (its HELLO, ACKs, PINGs): not needed here.
    while let Ok(n) = s.read(drain) {
        if n == 0 {
            break;
        }
    }
    let mut frames_out: Vec<Bytes> = Vec::new();
    frames::ping(&mut frames_out, false, 7);
    let mut out = BytesMut::new();
    if link.send_frames(frames_out.iter().map(|f| f.as_ref()), &mut out).is_ok() {
        let _ = s.write_all(&out);
    }
}

/// (utime + stime in seconds, VmRSS in KiB) of a process.
fn usage(pid: u32) -> (f64, u64) {
    // SAFETY: sysconf takes no pointers.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu: f64 = [11, 12].iter().filter_map(|&i| f.get(i)?.parse::<f64>().ok()).sum::<f64>() / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

fn links_up(metrics: &str) -> usize {
    let Ok(mut s) = TcpStream::connect(metrics) else { return 0 };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("shardwire_links_up{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .sum()
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    raise_nofile();
    let dir = std::env::temp_dir().join(format!("shardwire-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("node.key");
    let bin = env!("CARGO_BIN_EXE_shardwire");
    assert!(Command::new(bin).args(["keygen", "--out", key.to_str().unwrap()]).output().unwrap().status.success());
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut node = Command::new(bin)
        .args(["node", "--key", key.to_str().unwrap(), "--listen", "127.0.0.1:0", "--shards", "2"])
        .args(["--metrics", &metrics])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(node.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let hello: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let server: NodeId = hello["node_id"].as_str().unwrap().parse().unwrap();
    let addr: SocketAddr = hello["listen"].as_str().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (cpu0, rss0) = usage(node.id());

    let workers = 8;
    let made = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (made, failed, stop) = (made.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mine = n / workers + usize::from(w < n % workers);
                let mut links = Vec::with_capacity(mine);
                let mut drain = vec![0u8; 4096];
                let mut last_ping = Instant::now();
                while links.len() < mine && !stop.load(Ordering::Relaxed) {
                    // One identity per link: a node keeps one link per NodeId.
                    match connect(addr, server, &Identity::generate()) {
                        Ok(l) => {
                            links.push(l);
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    if last_ping.elapsed() > Duration::from_secs(4) {
                        for (s, l) in links.iter_mut() {
                            ping(s, l, &mut drain);
                        }
                        last_ping = Instant::now();
                    }
                }
                while !stop.load(Ordering::Relaxed) {
                    if last_ping.elapsed() > Duration::from_secs(4) {
                        for (s, l) in links.iter_mut() {
                            ping(s, l, &mut drain);
                        }
                        last_ping = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                links.len()
            })
        })
        .collect();
    // Every handshake done and every link up at the node.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (made.load(Ordering::Relaxed) < n || links_up(&metrics) < n) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, _) = usage(node.id());
    let up = links_up(&metrics);
    // Let allocations settle, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let (_, rss1) = usage(node.id());
    stop.store(true, Ordering::Relaxed);
    let held: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!(
        "links: {held} held by the clients, {up} up at the node ({} dial retries)",
        failed.load(Ordering::Relaxed)
    );
    let per_link = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / up.max(1) as f64;
    println!(
        "node RSS {:.1} MiB idle -> {:.1} MiB with {up} links: {:.1} KiB per link (goal: at most 32 KiB)",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        per_link / 1024.0
    );
    let cpu = cpu1 - cpu0;
    println!(
        "handshakes: {n} in {elapsed:.1} s = {:.0}/s wall; node CPU {cpu:.1} s = {:.0} handshakes per node-CPU-second",
        n as f64 / elapsed,
        n as f64 / cpu.max(0.01)
    );
}
