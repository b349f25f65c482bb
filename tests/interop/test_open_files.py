"""More partitions than the broker may open files, seen through confluent-kafka.

The broker runs under an open-files limit of 256 (``prlimit``) and serves 550
partitions: two topics of 250 and the 50 of ``__consumer_offsets``. Each
partition's segment has three files, so a broker that kept them all open would
need 1,650 descriptors and fail with EMFILE at the first topic. Its logs share
a cache of open files (``log.max.open.files``, a quarter of the limit by
default) instead.

A producer writes one record to every partition, a group consumer reads them
all back and commits, and the broker is stopped cleanly and then killed with
``kill -9``; after each restart, still under the same limit, every record and
every committed offset is read again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import Broker, weir_bin
from interop_helpers import create_topic, topic_name

NOFILE = 256
PARTITIONS = 250


class LimitedBroker(Broker):
    """A broker started under ``prlimit --nofile``."""

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", *super().command()]


@pytest.fixture
def limited_broker(tmp_path: Path):
    broker = LimitedBroker(weir_bin(), tmp_path, extra_args=["--offsets-topic-replication-factor", "1"])
    try:
        broker.start()
        yield broker
        assert broker.proc.poll() is None, "the broker died\n" + broker.stderr_tail()
    finally:
        broker.close()


def open_files(broker: Broker) -> int:
    return len(os.listdir(f"/proc/{broker.proc.pid}/fd"))


def nofile_limit(broker: Broker) -> int:
    with open(f"/proc/{broker.proc.pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files limit in /proc/PID/limits")


def produce_one_each(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """One record per partition, acks=all; returns the offset of each."""
    offsets: dict[tuple[str, int], int] = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets[(msg.topic(), msg.partition())] = msg.offset()

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for t in topics:
        for i in range(PARTITIONS):
            p.produce(t, value=f"{t}/{i}".encode(), partition=i, on_delivery=report)
    assert p.flush(60) == 0, "records still undelivered after 60 s"
    assert errors == [], f"delivery errors: {errors[:5]}"
    return offsets


def read_all(bootstrap: str, topics: list[str], group: str, want: int, commit: bool) -> dict:
    """Reads with a group consumer until ``want`` records arrived; returns
    {(topic, partition): [values]}."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    got: dict[tuple[str, int], list[str]] = {}
    try:
        c.subscribe(topics)
        deadline = time.monotonic() + 90
        n = 0
        while n < want:
            assert time.monotonic() < deadline, f"read {n} of {want} records in 90 s"
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is not None:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                got.setdefault((m.topic(), m.partition()), []).append(m.value().decode())
                n += 1
        if commit:
            c.commit(asynchronous=False)
        return got
    finally:
        c.close()


def committed(bootstrap: str, topics: list[str], group: str) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(t, i) for t in topics for i in range(PARTITIONS)]
        return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
    finally:
        c.close()


def test_more_partitions_than_open_files_are_all_served(limited_broker):
    b = limited_broker
    assert nofile_limit(b) == NOFILE
    topics = [topic_name("fd-a"), topic_name("fd-b")]
    for t in topics:
        create_topic(b.bootstrap, t, partitions=PARTITIONS, timeout=60)

    first = produce_one_each(b.bootstrap, topics)
    assert all(offset == 0 for offset in first.values()), first
    want = {(t, i): [f"{t}/{i}"] for t in topics for i in range(PARTITIONS)}
    assert read_all(b.bootstrap, topics, "fd-group", len(want), commit=True) == want
    fds = open_files(b)
    print(f"{fds} descriptors open for {2 * PARTITIONS + 50} partitions, limit {NOFILE}")
    assert fds < NOFILE, f"{fds} descriptors open"

    # Every partition takes a second record; the committed offsets stand at 1.
    second = produce_one_each(b.bootstrap, topics)
    assert all(offset == 1 for offset in second.values()), second
    assert set(committed(b.bootstrap, topics, "fd-group").values()) == {1}

    for kill9 in (False, True):
        b.restart(kill9=kill9)
        assert nofile_limit(b) == NOFILE
        both = {(t, i): [f"{t}/{i}", f"{t}/{i}"] for t in topics for i in range(PARTITIONS)}
        group = f"fd-reader-{kill9}"
        assert read_all(b.bootstrap, topics, group, 2 * len(want), commit=False) == both
        assert set(committed(b.bootstrap, topics, "fd-group").values()) == {1}
        assert b.proc.poll() is None, "the broker died\n" + b.stderr_tail()
    assert "Too many open files" not in b.stderr_text(), b.stderr_tail()
