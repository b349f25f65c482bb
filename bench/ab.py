#!/usr/bin/env python3
"""Two broker builds side by side: produce and fetch throughput, and the broker's CPU.

For each configuration of the matrix (partitions x record size x acks) and each repetition, the
builds run in turn, each on a fresh one-node broker, under `bench/produce_fetch.py`
(confluent-kafka, so librdkafka). Reports per build and configuration the median produce and
fetch records/s, and the broker's own CPU seconds per million records (user + system, from
/proc/PID/stat, for the produce and fetch together), which is steadier than wall time on a
shared machine.

    python3 bench/ab.py --a /tmp/weir-before --b target/release/weir --reps 3

`--data-parent /dev/shm` puts the logs on tmpfs, which takes the disk's writeback out of the
figures (a 1 KB produce to disk varies by a third between identical runs here).

With `--scrape-b SECONDS`, build B serves /metrics (`--http-listeners`) and is scraped that
often during its runs, as Prometheus would (the metrics-cost comparison of issue 17). The builds
run in alternating order, A first in even repetitions.

A measurement, not a test: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the broker did not start listening")


def measure(pid: int, bootstrap: str, partitions: int, size: int, acks: str, messages: int,
            client_config: list[str] = (), timeout: float = 600) -> dict:
    """Runs `produce_fetch.py` against `bootstrap`: records/s of each phase and the CPU seconds
    the broker process `pid` spent per million records (produce and fetch together)."""
    conf = [a for kv in client_config for a in ("--client-config", kv)]
    before = cpu_seconds(pid)
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/produce_fetch.py"), "--bootstrap", bootstrap,
         "--partitions", str(partitions), "--size", str(size), "--acks", acks,
         "--messages", str(messages), *conf],
        capture_output=True, text=True, timeout=timeout, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    phases = {p["phase"]: p for p in map(json.loads, out.splitlines())}
    return {
        "produce": phases["produce"]["records_per_s"],
        "fetch": phases["fetch"]["records_per_s"],
        "cpu_s_per_m": cpu / messages * 1e6,
    }


def scraper(url: str, every: float, stop: threading.Event, counts: list) -> None:
    """GETs `url` every `every` seconds until `stop`; counts the scrapes that answered."""
    while not stop.wait(every):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
                counts.append(r.status)
        except OSError as e:
            print(f"scrape failed: {e}", file=sys.stderr)


def run_once(binary: str, partitions: int, size: int, acks: str, messages: int,
             scrape_every: float | None = None, data_parent: str | None = None) -> dict:
    data = Path(tempfile.mkdtemp(prefix="weir-ab-", dir=data_parent))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    http = []
    if scrape_every is not None:
        http_port = free_port()
        http = ["--http-listeners", f"http://127.0.0.1:{http_port}"]
    with open(data / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [binary, "server", "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
             "--log-dirs", str(data / "data"), *http],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
    stop, scrapes = threading.Event(), []
    try:
        wait_listening(port)
        if scrape_every is not None:
            threading.Thread(target=scraper, daemon=True, args=(
                f"http://127.0.0.1:{http_port}/metrics", scrape_every, stop, scrapes)).start()
        r = measure(broker.pid, f"127.0.0.1:{port}", partitions, size, acks, messages)
        if scrape_every is not None:
            r["scrapes"] = len(scrapes)
        return r
    finally:
        stop.set()
        broker.kill()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the build before")
    ap.add_argument("--b", required=True, help="the build after")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--partitions", default="1,100")
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--acks", default="1,all")
    ap.add_argument("--bytes", type=int, default=200_000_000,
                    help="bytes written per run (records = bytes / size)")
    ap.add_argument("--data-parent", default=None, metavar="DIR",
                    help="where the brokers' logs go, e.g. /dev/shm to take the disk out")
    ap.add_argument("--scrape-b", type=float, default=None, metavar="SECONDS",
                    help="serve /metrics on build B and scrape it this often")
    args = ap.parse_args()

    matrix = [(int(p), int(s), a) for p in args.partitions.split(",")
              for s in args.sizes.split(",") for a in args.acks.split(",")]
    results: dict[tuple, list[dict]] = {}
    for rep in range(args.reps):
        for partitions, size, acks in matrix:
            messages = args.bytes // size
            builds = [("a", args.a, None), ("b", args.b, args.scrape_b)]
            for name, binary, scrape in builds if rep % 2 == 0 else builds[::-1]:
                r = run_once(binary, partitions, size, acks, messages, scrape, args.data_parent)
                results.setdefault((partitions, size, acks, name), []).append(r)
                print(json.dumps({"rep": rep, "build": name, "partitions": partitions,
                                  "size": size, "acks": acks, **{k: round(v, 2) for k, v in r.items()}}),
                      file=sys.stderr, flush=True)
    for partitions, size, acks in matrix:
        row = {"partitions": partitions, "size": size, "acks": acks}
        for name in ("a", "b"):
            runs = results[(partitions, size, acks, name)]
            for key in ("produce", "fetch", "cpu_s_per_m"):
                row[f"{name}_{key}"] = round(statistics.median(r[key] for r in runs), 2)
        row["produce_b_over_a"] = round(row["b_produce"] / row["a_produce"], 3)
        row["fetch_b_over_a"] = round(row["b_fetch"] / row["a_fetch"], 3)
        row["cpu_b_over_a"] = round(row["b_cpu_s_per_m"] / row["a_cpu_s_per_m"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
