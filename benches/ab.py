#!/usr/bin/env python3
"""Interleaved A/B runs of the baseline bench's profile modes.

This machine's speed swings by up to 2x from minute to minute, so two
builds are compared by running them in turn, several rounds, and comparing
medians (docs/performance.md, section 4). Each variant is a bench binary
(copy target/release/deps/baseline-* aside after `cargo bench --bench
baseline --no-run`), optionally preceded by VAR=value settings:

    benches/ab.py --rounds 4 --mode 64 /tmp/before /tmp/after
    benches/ab.py --mode pingpong /tmp/before /tmp/after
    benches/ab.py --mode 65536 SHARDWIRE_RING_BUFFER_SIZE=16384:/tmp/b \\
                               SHARDWIRE_RING_BUFFER_SIZE=131072:/tmp/b

`--mode SIZE` runs `-- profile-SIZE` (four shardwire/tokio pairs per
invocation); `--mode pingpong` runs `-- profile-pingpong` (three shardwire
runs, each beside busy-polling std sockets).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

ONEWAY = re.compile(
    r": ([\d.]+) M/s ([\d.]+) GB/s(?: \((\d+)% of bytes joined[^)]*\))?; "
    r"tokio\+AEAD ([\d.]+) M/s: ratio ([\d.]+)"
)
PINGPONG = re.compile(
    r"p50 ([\d.]+) us, p99 ([\d.]+) us; std busy-poll p50 ([\d.]+) us: ratio ([\d.]+)"
)


def parse_variant(v):
    """`A=1:B=2:/path` -> (env additions, path)."""
    *assigns, path = v.split(":")
    env = dict(a.split("=", 1) for a in assigns)
    return env, path


def run(variant, mode):
    env, path = parse_variant(variant)
    out = subprocess.run(
        [path, f"profile-{mode}"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pat = PINGPONG if mode == "pingpong" else ONEWAY
    return [tuple(float(x or 0) for x in m.groups()) for m in map(pat.search, out.splitlines()) if m]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mode", default="64", help="a message size, or pingpong")
    p.add_argument("variants", nargs="+")
    a = p.parse_args()
    got = {v: [] for v in a.variants}
    for r in range(a.rounds):
        for v in a.variants:
            got[v] += run(v, a.mode)
        print(f"round {r + 1} of {a.rounds} done", file=sys.stderr)
    for v, rows in got.items():
        if not rows:
            print(f"{v}: no results")
            continue
        col = lambda i: statistics.median(x[i] for x in rows)
        ratios = [x[-1] for x in rows]
        if a.mode == "pingpong":
            print(
                f"{v}: n={len(rows)} p50 {col(0):.1f} us (std busy-poll {col(2):.1f} us), "
                f"p99 {col(1):.1f} us, ratio median {col(3):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            )
        else:
            print(
                f"{v}: n={len(rows)} {col(0):.2f} M/s {col(1):.2f} GB/s, joined {col(2):.0f}%, "
                f"tokio {col(3):.2f} M/s, ratio median {col(4):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            )


if __name__ == "__main__":
    main()
