#!/usr/bin/env python3
"""What durable acknowledgements cost: write.caching=false against write.caching=true.

Starts a release build through the interop suite's cluster harness (tests/interop/cluster.py),
creates one topic per mode with the same partitions and replication, and produces the same load
to each in turn (A B A B ...) with confluent-kafka (librdkafka), acks=all, idempotent. For every
run it prints one JSON line: records/s, MB/s, delivery latency percentiles (librdkafka's own
`msg.latency()`), and the brokers' own CPU seconds per million records (utime + stime of every
broker process from /proc/PID/stat). Last, the medians per mode and the ratio durable/cached.
A measurement, not a test: compare runs on the same machine only.

    cargo build --release --bin weir
    python3 bench/durability.py --nodes 3 --records 200000 --size 1024 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
os.environ.setdefault("WEIR_BIN", str(ROOT / "target" / "release" / "weir"))
os.environ.setdefault("WEIR_INTEROP_RUST_LOG", "warn")

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import Cluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def produce(bootstrap: str, topic: str, records: int, size: int) -> dict:
    payload = b"x" * size
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
    })
    latencies: list[float] = []
    failed = 0

    def on_delivery(err, msg):
        nonlocal failed
        if err is not None:
            failed += 1
        elif msg.latency() is not None:
            latencies.append(msg.latency())

    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(300)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else -1

    return {
        "records_per_s": round(records / elapsed),
        "mb_per_s": round(records * size / elapsed / 1e6, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "failed": failed,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rf = min(3, args.nodes)
    results: dict[str, list[dict]] = {"cached": [], "durable": []}
    with Cluster(args.nodes) as c:
        c.start_all()
        pids = [c.node(i).proc.pid for i in c.ids]
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        topics = {}
        for mode, caching in (("cached", "true"), ("durable", "false")):
            config = {"write.caching": caching}
            if rf > 1:
                config["min.insync.replicas"] = "2"
            for rep in range(args.reps):
                name = f"bench-{mode}-{rep}"
                topics[(mode, rep)] = name
                admin.create_topics([NewTopic(name, args.partitions, rf, config=config)])[name].result(30)
        time.sleep(2.0)  # followers start fetching
        for rep in range(args.reps):
            for mode in ("cached", "durable"):
                before = cpu_seconds(pids)
                r = produce(c.bootstrap, topics[(mode, rep)], args.records, args.size)
                r["broker_cpu_s_per_m"] = round((cpu_seconds(pids) - before) / args.records * 1e6, 2)
                r.update({"mode": mode, "rep": rep, "nodes": args.nodes, "rf": rf, "size": args.size})
                results[mode].append(r)
                print(json.dumps(r), flush=True)
    med = {m: {k: statistics.median(r[k] for r in rs) for k in
               ("records_per_s", "mb_per_s", "p50_ms", "p99_ms", "broker_cpu_s_per_m")}
           for m, rs in results.items()}
    print(json.dumps({"median": med,
                      "durable_over_cached": round(med["durable"]["records_per_s"] / med["cached"]["records_per_s"], 3)}))


if __name__ == "__main__":
    main()
