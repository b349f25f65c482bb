#!/usr/bin/env python3
"""Ready-to-serve time of one broker holding one big log of small batches, after a clean stop
and after `kill -9`, for one or more builds on the same data.

Writes RECORDS records of 100 B in batches of BATCH records (confluent-kafka, one partition, so
the log holds many batch headers, which is what an open without producer-state snapshots
scans), then for each build and repetition starts it, stops it (SIGTERM, then SIGKILL) and
starts it again, timing from the start of the process to the first answered Metadata, Produce
and Fetch.

    python3 bench/restart.py --records 5000000 --binary /tmp/weir-before --binary target/release/weir

A measurement, not a test: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402


def fill(node: scale.Node, topic: str, records: int, batch: int) -> None:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({
        "bootstrap.servers": node.bootstrap, "acks": "all", "linger.ms": 1,
        "batch.num.messages": batch, "enable.idempotence": True,
        "queue.buffering.max.messages": 1_000_000,
    })
    for _ in range(records):
        while True:
            try:
                p.produce(topic, b"x" * 100)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    assert p.flush(300) == 0, "records left undelivered"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", action="append", required=True)
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="weir-restart-"))
    topic = "big"
    try:
        node = scale.Node(Path(args.binary[0]), 20_000, tmp)
        node.start()
        fill(node, topic, args.records, args.batch)
        log_bytes = sum(f.stat().st_size for f in (tmp / "data" / f"{topic}-0").glob("*.log"))
        for rep in range(args.reps):
            for binary in args.binary:
                # The build under test also makes the stop: a clean one writes what its next
                # start reads (a snapshot, a marker).
                node.stop(kill9=True)
                node.binary = Path(binary)
                scale.ready_to_serve(node, node.start(), topic)
                for kill9 in (False, True):
                    node.stop(kill9=kill9)
                    started = node.start()
                    seconds = scale.ready_to_serve(node, started, topic)
                    print(json.dumps({
                        "rep": rep, "binary": binary, "after": "kill9" if kill9 else "clean_stop",
                        "ready_s": seconds, "log_mb": round(log_bytes / 2**20), **node.stat(),
                    }), flush=True)
    finally:
        node.stop(kill9=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
