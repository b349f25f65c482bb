#!/usr/bin/env python3
"""Produce and fetch throughput of a running broker, measured with confluent-kafka (librdkafka).

    python3 bench/produce_fetch.py --bootstrap 127.0.0.1:9092 --messages 1000000 --size 100

Prints one JSON line per phase: records/s and MB/s. Produce waits for every delivery report, so
the figure is acknowledged throughput; fetch reads everything back with manual assignment.
"""

import argparse
import json
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--client-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a librdkafka setting for every client (security.protocol=SSL, ...)")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.client_config)

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **extra})
    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)

    payload = b"x" * args.size
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": args.compression,
        "queue.buffering.max.messages": 1_000_000,
        **extra,
    })
    failed = 0

    def on_delivery(err, _msg):
        nonlocal failed
        if err is not None:
            failed += 1

    start = time.perf_counter()
    for _ in range(args.messages):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "phase": "produce", "records": args.messages, "record_bytes": args.size, "acks": args.acks,
        "compression": args.compression, "seconds": round(elapsed, 3),
        "records_per_s": round(args.messages / elapsed), "mb_per_s": round(args.messages * args.size / elapsed / 1e6, 1),
        "failed": failed,
    }))

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "bench",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        **extra,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])
    got = 0
    start = time.perf_counter()
    deadline = start + 300
    while got < args.messages and time.perf_counter() < deadline:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    print(json.dumps({
        "phase": "fetch", "records": got, "seconds": round(elapsed, 3),
        "records_per_s": round(got / elapsed), "mb_per_s": round(got * args.size / elapsed / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
