#!/usr/bin/env python3
"""The cost of replication, measured with `weir perf produce` on loopback.

Runs a release build twice through the interop suite's cluster harness
(tests/interop/cluster.py): one node with a topic of replication factor 1
written with acks=1, and three nodes with replication factor 3,
min.insync.replicas=2, written with acks=all. Prints one JSON line per setup
(records/s, MB/s, latency percentiles, as `weir perf --json` reports them).
A measurement, not a test: compare runs on the same machine only.

    cargo build --release --bin weir
    python3 bench/replication.py --num-records 1000000 --record-size 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
os.environ.setdefault("WEIR_BIN", str(ROOT / "target" / "release" / "weir"))
os.environ.setdefault("WEIR_INTEROP_RUST_LOG", "warn")

from cluster import Cluster  # noqa: E402


def weir(*args: str) -> str:
    res = subprocess.run([os.environ["WEIR_BIN"], *args], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"weir {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def run(nodes: int, rf: int, acks: str, opts) -> dict:
    with Cluster(nodes) as c:
        c.start_all()
        topic = f"perf-rf{rf}"
        create = ["topics", "create", "--bootstrap-server", c.bootstrap, "--topic", topic,
                  "--partitions", str(opts.partitions), "--replication-factor", str(rf)]
        if rf > 1:
            create += ["--config", "min.insync.replicas=2"]
        weir(*create)
        time.sleep(1.0)  # let followers start fetching
        out = weir("perf", "produce", "--bootstrap-server", c.bootstrap, "--topic", topic,
                   "--num-records", str(opts.num_records), "--record-size", str(opts.record_size),
                   "--acks", acks, "--json")
        result = json.loads(out.strip().splitlines()[-1])
        result.update({"nodes": nodes, "replication_factor": rf, "acks": acks})
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-records", type=int, default=1_000_000)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    opts = ap.parse_args()
    for nodes, rf, acks in ((1, 1, "1"), (3, 3, "all")):
        print(json.dumps(run(nodes, rf, acks, opts)), flush=True)


if __name__ == "__main__":
    main()
