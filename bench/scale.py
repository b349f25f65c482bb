#!/usr/bin/env python3
"""How one broker holds many partitions and many idle connections.

Starts a release build of one node under an open-files limit (`prlimit`, 20,000 by default),
creates TOPICS topics of PARTITIONS partitions each with the admin API (confluent-kafka), writes
one record to every partition, opens idle client connections (each sends ApiVersions, as a client
does first, and then waits), and reports, as one JSON line per phase:

- creation time per topic (median, p99, max) and for all of them;
- RSS and open files of the broker, after creation and with the connections open;
- idle CPU: the broker's CPU seconds over a quiet interval, as a percentage of one core;
- ready-to-serve time after a clean stop and after `kill -9`: from the start of the process to
  the first answered Metadata, Produce and Fetch (not just the port listening);
- produce throughput across all partitions (confluent-kafka, acks=1, 100 B records).

A measurement, not a test: compare runs on the same machine only.

    cargo build --release --bin weir
    python3 bench/scale.py --topics 500 --partitions 100 --connections 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def emit(phase: str, **fields) -> None:
    print(json.dumps({"phase": phase, **fields}), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary: Path, nofile: int, tmp: Path):
        self.binary = binary
        self.nofile = nofile
        self.tmp = tmp
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Starts the broker; returns the monotonic time it was started at."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env["RUST_LOG"] = os.environ.get("RUST_LOG", "warn")
        err = open(self.tmp / "weir.stderr.log", "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                "prlimit", f"--nofile={self.nofile}:{self.nofile}", "--",
                str(self.binary), "server",
                "--node-id", "0",
                "--listeners", f"PLAINTEXT://{self.bootstrap}",
                "--log-dirs", str(self.tmp / "data"),
                "--offsets-topic-replication-factor", "1",
            ],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, start_new_session=True,
        )
        return started

    def stop(self, kill9: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill9 else signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stat(self) -> dict:
        pid = self.proc.pid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        rss = int(fields[21]) * PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {"cpu_s": cpu, "rss_mb": round(rss / 2**20, 1), "open_files": fds}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_topics(node: Node, topics: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": node.bootstrap, "socket.timeout.ms": 60000})
    times = []
    began = time.monotonic()
    for t in topics:
        start = time.monotonic()
        futs = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1)],
            request_timeout=120, operation_timeout=120,
        )
        futs[t].result(timeout=180)
        times.append(time.monotonic() - start)
    total = time.monotonic() - began
    emit(
        "create",
        topics=len(topics),
        partitions=len(topics) * partitions,
        per_topic_ms_median=round(statistics.median(times) * 1000, 1),
        per_topic_ms_p99=round(percentile(times, 0.99) * 1000, 1),
        per_topic_ms_max=round(max(times) * 1000, 1),
        first_10_ms_median=round(statistics.median(times[:10]) * 1000, 1),
        last_10_ms_median=round(statistics.median(times[-10:]) * 1000, 1),
        total_s=round(total, 1),
        **node.stat(),
    )


def produce_one_each(node: Node, topics: list[str], partitions: int) -> None:
    errors = []
    delivered = [0]

    def report(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    p = Producer({
        "bootstrap.servers": node.bootstrap, "acks": "all", "linger.ms": 50,
        "queue.buffering.max.messages": 2_000_000,
    })
    start = time.monotonic()
    for t in topics:
        for i in range(partitions):
            p.produce(t, value=b"x" * 100, partition=i, on_delivery=report)
            p.poll(0)
    left = p.flush(300)
    emit(
        "one_record_each",
        records=delivered[0], undelivered=left, errors=len(errors),
        seconds=round(time.monotonic() - start, 1), **node.stat(),
    )


def api_versions_request(correlation: int) -> bytes:
    client = b"scale-bench"
    body = struct.pack(">hhih", 18, 0, correlation, len(client)) + client
    return struct.pack(">i", len(body)) + body


def open_connections(node: Node, n: int) -> list[socket.socket]:
    """n idle client connections, each with one ApiVersions answered."""
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=30)
        s.sendall(api_versions_request(i))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        recv_exact(s, size)
        conns.append(s)
    return conns


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return buf


def idle_cpu(node: Node, seconds: float) -> float:
    before = node.stat()["cpu_s"]
    time.sleep(seconds)
    return round((node.stat()["cpu_s"] - before) / seconds * 100, 2)


def ready_to_serve(node: Node, started: float, topic: str, timeout: float = 600) -> float:
    """Seconds from `started` until Metadata, Produce and Fetch were all answered."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "not ready to serve in time"
        try:
            admin = AdminClient({"bootstrap.servers": node.bootstrap, "socket.timeout.ms": 2000})
            md = admin.list_topics(topic=topic, timeout=2)
            if md.topics[topic].error is not None:
                raise KafkaException(md.topics[topic].error)
            p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all",
                          "message.timeout.ms": 3000})
            errs = []
            p.produce(topic, value=b"ready", partition=0,
                      on_delivery=lambda e, _m: errs.append(e))
            p.flush(4)
            if not errs or errs[0] is not None:
                raise KafkaException(errs[0] if errs else "no delivery report")
            c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "scale-ready",
                          "enable.auto.commit": False})
            c.assign([TopicPartition(topic, 0, 0)])
            m = c.poll(3)
            c.close()
            if m is None or m.error() is not None:
                raise KafkaException(m.error() if m is not None else "no record fetched")
            return round(time.monotonic() - started, 2)
        except (KafkaException, KeyError, AssertionError):
            time.sleep(0.1)


def produce_throughput(node: Node, topics: list[str], partitions: int, records: int) -> None:
    p = Producer({
        "bootstrap.servers": node.bootstrap, "acks": "1", "linger.ms": 20,
        "batch.size": 65536, "queue.buffering.max.messages": 2_000_000,
    })
    payload = b"y" * 100
    cpu_before = node.stat()["cpu_s"]
    start = time.monotonic()
    n = 0
    while n < records:
        for t in topics:
            for i in range(partitions):
                try:
                    p.produce(t, value=payload, partition=i)
                except BufferError:
                    p.poll(0.05)
                    p.produce(t, value=payload, partition=i)
                n += 1
                if n >= records:
                    break
            if n >= records:
                break
        p.poll(0)
    left = p.flush(600)
    seconds = time.monotonic() - start
    cpu = node.stat()["cpu_s"] - cpu_before
    emit(
        "produce_all_partitions",
        records=records - left, seconds=round(seconds, 1),
        records_per_s=round((records - left) / seconds),
        broker_cpu_s_per_m=round(cpu / max(1, records - left) * 1e6, 2),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--nofile", type=int, default=20_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--binary", default=os.environ.get("WEIR_BIN", ROOT / "target/release/weir"))
    args = ap.parse_args()

    # This process holds the idle connections: it needs descriptors of its own.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.connections + 1000) if hard != resource.RLIM_INFINITY else args.connections + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    tmp = Path(tempfile.mkdtemp(prefix="weir-scale-"))
    node = Node(Path(args.binary), args.nofile, tmp)
    topics = [f"scale-{i:04}" for i in range(args.topics)]
    try:
        started = node.start()
        # Ready to serve an empty broker: a first topic is needed to produce to.
        create_topics(node, topics, args.partitions)
        produce_one_each(node, topics, args.partitions)
        conns = open_connections(node, args.connections)
        time.sleep(5)
        emit("idle", connections=len(conns), cpu_percent_of_one_core=idle_cpu(node, 20),
             **node.stat())
        for s in conns:
            s.close()
        for kill9 in (False, True):
            node.stop(kill9=kill9)
            started = node.start()
            emit("ready_after_" + ("kill9" if kill9 else "clean_stop"),
                 seconds=ready_to_serve(node, started, topics[-1]), **node.stat())
        emit("idle_after_restart", cpu_percent_of_one_core=idle_cpu(node, 20), **node.stat())
        produce_throughput(node, topics, args.partitions, args.records)
    finally:
        node.stop(kill9=True)
        if os.environ.get("WEIR_SCALE_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
