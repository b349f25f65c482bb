#!/usr/bin/env python3
"""What transactions cost: records/s of a transactional producer committing every 1,000
records, beside an idempotent (non-transactional) producer, against the same broker build, in
turn (A B A B ...), each run on a fresh one-node broker. Measured with confluent-kafka
(librdkafka); acks=all either way (transactions need it). Also the read_committed fetch of what
was written.

Reports per record size the median produce and fetch records/s of each mode, their ratio, and
the broker's own CPU seconds per million records (produce and fetch together, /proc/PID/stat).

    cargo build --release --bin weir
    python3 bench/transactions.py --reps 5 --messages 500000

With `--baseline OTHER_BINARY`, each repetition also runs the transactional producer against
that build, in the same turn, and the report adds "transactional: baseline → this build".

A measurement, not a test: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from ab import cpu_seconds, free_port, wait_listening  # noqa: E402


def produce(bootstrap: str, topic: str, messages: int, size: int, per_txn: int) -> float:
    """Writes `messages` records; with `per_txn` > 0 in transactions of that many. Records/s."""
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
    }
    if per_txn:
        conf["transactional.id"] = f"bench-{uuid.uuid4().hex[:8]}"
    p = Producer(conf)
    if per_txn:
        p.init_transactions(30)
    payload = b"x" * size
    start = time.monotonic()
    sent = 0
    while sent < messages:
        n = min(per_txn or messages, messages - sent)
        if per_txn:
            p.begin_transaction()
        for i in range(n):
            while True:
                try:
                    p.produce(topic, payload)
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 1000 == 999:
                p.poll(0)
        if per_txn:
            p.commit_transaction(60)
        sent += n
    assert p.flush(120) == 0
    return messages / (time.monotonic() - start)


def fetch(bootstrap: str, topic: str, partitions: int, messages: int) -> float:
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-unused",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    start = time.monotonic()
    got = 0
    deadline = start + 300
    while got < messages and time.monotonic() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error() is None:
                got += 1
    elapsed = time.monotonic() - start
    c.close()
    assert got == messages, f"read {got} of {messages}"
    return messages / elapsed


def run_once(binary: str, per_txn: int, size: int, partitions: int, messages: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="weir-txn-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    with open(data / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [binary, "server", "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
             "--log-dirs", str(data / "data")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
    try:
        wait_listening(port)
        bs = f"127.0.0.1:{port}"
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
        cpu0 = cpu_seconds(broker.pid)
        produce_rate = produce(bs, topic, messages, size, per_txn)
        fetch_rate = fetch(bs, topic, partitions, messages)
        cpu = cpu_seconds(broker.pid) - cpu0
        return {"produce": produce_rate, "fetch": fetch_rate, "cpu_per_m": cpu / messages * 1e6}
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "target/release/weir"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--per-txn", type=int, default=1000)
    ap.add_argument("--baseline", help="another build: its transactional runs go beside these")
    args = ap.parse_args()
    rows = []
    baselines = []
    for size in map(int, args.sizes.split(",")):
        runs = {0: [], args.per_txn: []}
        base = []
        for _ in range(args.reps):
            for per_txn in (0, args.per_txn):
                runs[per_txn].append(run_once(args.binary, per_txn, size, args.partitions,
                                              args.messages))
            if args.baseline:
                base.append(run_once(args.baseline, args.per_txn, size, args.partitions,
                                     args.messages))
        if base:
            b = {f: statistics.median(r[f] for r in base) for f in ("produce", "fetch", "cpu_per_m")}
            baselines.append((size, b))
            print(json.dumps({"size": size, "baseline_transactional": b}), flush=True)
        med = {k: {f: statistics.median(r[f] for r in v) for f in ("produce", "fetch", "cpu_per_m")}
               for k, v in runs.items()}
        row = {
            "size": size,
            "idempotent": med[0],
            "transactional": med[args.per_txn],
            "produce_ratio": med[args.per_txn]["produce"] / med[0]["produce"],
            "fetch_ratio": med[args.per_txn]["fetch"] / med[0]["fetch"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| size | produce rec/s idempotent → transactional (ratio) | read_committed fetch rec/s (ratio) | broker CPU s/M |")
    print("|---|---|---|---|")
    for r in rows:
        i, t = r["idempotent"], r["transactional"]
        print(f"| {r['size']} B | {i['produce']:,.0f} → {t['produce']:,.0f} ({r['produce_ratio']:.2f}) "
              f"| {i['fetch']:,.0f} → {t['fetch']:,.0f} ({r['fetch_ratio']:.2f}) "
              f"| {i['cpu_per_m']:.2f} → {t['cpu_per_m']:.2f} |")
    if baselines:
        print()
        print("| size | transactional produce rec/s: baseline → this build | broker CPU s/M |")
        print("|---|---|---|")
        for (size, b), r in zip(baselines, rows):
            t = r["transactional"]
            print(f"| {size} B | {b['produce']:,.0f} → {t['produce']:,.0f} ({t['produce'] / b['produce']:.2f}) "
                  f"| {b['cpu_per_m']:.2f} → {t['cpu_per_m']:.2f} |")


if __name__ == "__main__":
    main()
