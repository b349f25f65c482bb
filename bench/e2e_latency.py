#!/usr/bin/env python3
"""End-to-end latency at half the maximum rate on a three-broker cluster.

Starts three brokers through the interop suite's cluster harness
(tests/interop/cluster.py), creates a topic with replication factor 3 and
min.insync.replicas=2, measures the maximum acks=all produce rate with
`weir perf produce`, then runs `weir perf e2e --throughput` at half that rate
and prints the latency percentiles (produce to consume, from the records'
timestamps) as `weir perf --json` reports them. Each of the --reps rounds
runs on a fresh topic; the medians are printed last.
A measurement, not a test: compare runs on the same machine only.

    cargo build --release --bin weir
    python3 bench/e2e_latency.py --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
os.environ.setdefault("WEIR_BIN", str(ROOT / "target" / "release" / "weir"))
os.environ.setdefault("WEIR_INTEROP_RUST_LOG", "warn")

from cluster import Cluster  # noqa: E402


def weir(*args: str) -> dict:
    res = subprocess.run([os.environ["WEIR_BIN"], *args], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"weir {' '.join(args)} failed: {res.stderr.strip()}")
    lines = res.stdout.strip().splitlines()
    return json.loads(lines[-1]) if "--json" in args and lines else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-records", type=int, default=1_000_000, help="records for the maximum-rate run")
    ap.add_argument("--e2e-seconds", type=float, default=30, help="length of each fixed-rate run")
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=6)
    opts = ap.parse_args()
    rows = []
    with Cluster(3) as c:
        c.start_all()
        for rep in range(opts.reps):
            topic = f"e2e-{rep}-{int(time.time())}"
            weir("topics", "create", "--bootstrap-server", c.bootstrap, "--topic", topic,
                 "--partitions", str(opts.partitions), "--replication-factor", "3",
                 "--config", "min.insync.replicas=2")
            time.sleep(1.0)  # followers start fetching
            top = weir("perf", "produce", "--bootstrap-server", c.bootstrap, "--topic", topic,
                       "--num-records", str(opts.max_records), "--record-size", str(opts.record_size),
                       "--acks", "all", "--json")
            rate = int(top["records_per_sec"] / 2)
            n = int(rate * opts.e2e_seconds)
            e2e = weir("perf", "e2e", "--bootstrap-server", c.bootstrap, "--topic", topic,
                       "--num-records", str(n), "--warmup-records", str(rate * 2),
                       "--throughput", str(rate), "--record-size", str(opts.record_size),
                       "--acks", "all", "--json")
            lat = e2e.get("latency_ms", {})
            row = {"rep": rep, "max_records_per_sec": top["records_per_sec"], "target_rate": rate,
                   "e2e_records_per_sec": e2e.get("records_per_sec"),
                   **{f"{k}_ms": v for k, v in lat.items()}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    keys = [k for k in rows[0] if k != "rep" and all(r.get(k) is not None for r in rows)]
    print(json.dumps({"median": {k: statistics.median(r[k] for r in rows) for k in keys}}))


if __name__ == "__main__":
    main()
