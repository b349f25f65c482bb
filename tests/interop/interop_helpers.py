"""Shared client helpers for the interop tests (confluent-kafka based).

All loops are bounded by explicit deadlines; nothing here can block forever.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

# confluent-kafka refuses to create a Consumer without group.id ("group.id must
# be set"), even for manual assignment.  We set one but never subscribe() or
# commit(), so no group membership is ever formed.
UNUSED_GROUP = "weir-interop-assign-only"


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def keyed_records(n: int = 1000, keys: int = 37):
    """(key, value) pairs: value i goes with key k{i % keys}."""
    return [(f"k{i % keys}", str(i)) for i in range(n)]


# -- admin ------------------------------------------------------------------


def admin(bootstrap: str, **extra) -> AdminClient:
    conf = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}
    conf.update(extra)
    return AdminClient(conf)


def create_topic(bootstrap: str, topic: str, partitions: int = 3, config=None, timeout: float = 30):
    a = admin(bootstrap)
    futs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    futs[topic].result(timeout=timeout)
    wait_for_partitions(bootstrap, topic, partitions, timeout=timeout)


def wait_for_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 20):
    """Wait until metadata shows ``topic`` with ``partitions`` partitions, each
    with a leader.  Returns the TopicMetadata."""
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            md = a.list_topics(topic=topic, timeout=5)
            tm = md.topics.get(topic)
            last = tm
            if (
                tm is not None
                and tm.error is None
                and len(tm.partitions) == partitions
                and all(p.leader >= 0 for p in tm.partitions.values())
            ):
                return tm
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} never showed {partitions} partitions with leaders: {last!r}")


def list_topic_names(bootstrap: str, timeout: float = 10) -> set[str]:
    a = admin(bootstrap)
    md = a.list_topics(timeout=timeout)
    return set(md.topics)


# -- produce ----------------------------------------------------------------


def produce(
    bootstrap: str,
    topic: str,
    records,
    conf=None,
    partition=None,
    timestamps=None,
    timeout: float = 60,
):
    """Produce ``records`` [(key, value)] and wait for every delivery report.

    Returns a list, in produce order, of (partition, offset) acknowledged by
    the broker.  Raises if any record failed or was not acknowledged in time.
    """
    pconf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(timeout * 1000),
        "socket.timeout.ms": 10000,
    }
    pconf.update(conf or {})
    errors = []
    p = Producer(pconf, error_cb=lambda e: errors.append(("error_cb", e)))
    acks: list = [None] * len(records)

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                acks[i] = (msg.partition(), msg.offset())

        return cb

    deadline = time.monotonic() + timeout
    for i, (k, v) in enumerate(records):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        while True:
            try:
                p.produce(
                    topic,
                    key=None if k is None else k.encode(),
                    value=None if v is None else v.encode(),
                    on_delivery=make_cb(i),
                    **kwargs,
                )
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise AssertionError("producer queue stayed full until the deadline")
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(max(1.0, deadline - time.monotonic()))
    fatal = [e for e in errors if e[0] != "error_cb" or e[1].fatal()]
    assert remaining == 0, f"{remaining} records still undelivered after {timeout}s; errors={errors[:10]}"
    assert not fatal, f"delivery errors: {fatal[:10]}"
    missing = [i for i, a in enumerate(acks) if a is None]
    assert not missing, f"{len(missing)} records never acknowledged (first {missing[:10]})"
    return acks


# -- consume ----------------------------------------------------------------


def consumer(bootstrap: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": UNUSED_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 100,
    }
    conf.update(extra)
    return Consumer(conf)


def watermarks(bootstrap: str, topic: str, partitions, timeout: float = 10):
    c = consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in partitions}
    finally:
        c.close()


def consume_all(bootstrap: str, topic: str, partitions, timeout: float = 60, expect_total=None,
                conf: dict | None = None):
    """Read every partition from the beginning up to its high watermark
    (queried first) using manual assignment; ``conf`` adds client settings
    (TLS, SASL).

    Returns {partition: [(offset, key, value, (ts_type, ts))]}.
    """
    partitions = list(partitions)
    c = consumer(bootstrap, **(conf or {}))
    out: dict[int, list] = defaultdict(list)
    soft_errors = []
    try:
        high = {}
        for p in partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            high[p] = hi
        if expect_total is not None:
            assert sum(high.values()) >= expect_total, (
                f"high watermarks {high} sum to less than the {expect_total} records expected"
            )
        todo = {p for p in partitions if high[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                got = {p: len(out[p]) for p in partitions}
                raise AssertionError(
                    f"timed out reading {topic}: got {got}, high watermarks {high}, "
                    f"errors {soft_errors[:10]}"
                )
            msgs = c.consume(num_messages=500, timeout=0.5)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    soft_errors.append(err)
                    continue
                p = m.partition()
                if p not in high or m.offset() >= high[p]:
                    continue
                key = m.key().decode() if m.key() is not None else None
                val = m.value().decode() if m.value() is not None else None
                out[p].append((m.offset(), key, val, m.timestamp()))
                if m.offset() >= high[p] - 1:
                    todo.discard(p)
        return dict(out)
    finally:
        c.close()


# -- checks -----------------------------------------------------------------


def check_keyed(records, by_partition, acks=None, partitions=3):
    """Assert the standard invariants for keyed records (values are the
    produce index): all present exactly once, offsets strictly increasing per
    partition, per-key order intact, each key on one partition, and (when
    delivery reports are given) every record at the offset it was acked at.
    """
    expected = {v: k for k, v in records}
    seen: dict[str, int] = {}
    key_part: dict[str, set] = defaultdict(set)
    order_errors = []
    for p, msgs in by_partition.items():
        assert 0 <= p < partitions, f"unexpected partition {p}"
        last_off = -1
        last_val_per_key: dict[str, int] = {}
        for off, k, v, _ts in msgs:
            assert off > last_off, f"partition {p}: offset {off} after {last_off}"
            last_off = off
            assert v in expected, f"partition {p} offset {off}: unexpected value {v!r}"
            assert k == expected[v], f"value {v} came back with key {k!r}, expected {expected[v]!r}"
            seen[v] = seen.get(v, 0) + 1
            key_part[k].add(p)
            iv = int(v)
            if k in last_val_per_key and iv <= last_val_per_key[k]:
                order_errors.append((p, off, k, last_val_per_key[k], iv))
            last_val_per_key[k] = iv
    dups = {v: n for v, n in seen.items() if n > 1}
    missing = [v for v in expected if v not in seen]
    assert not missing, f"{len(missing)} records missing, e.g. {missing[:10]}"
    assert not dups, f"{len(dups)} records duplicated, e.g. {list(dups.items())[:10]}"
    assert not order_errors, f"per-key order broken: {order_errors[:10]}"
    split = {k: sorted(ps) for k, ps in key_part.items() if len(ps) > 1}
    assert not split, f"keys on more than one partition: {split}"
    if acks is not None:
        at = {(p, off): v for p, msgs in by_partition.items() for off, _k, v, _ts in msgs}
        wrong = []
        for i, (p, off) in enumerate(acks):
            if at.get((p, off)) != records[i][1]:
                wrong.append((i, p, off, at.get((p, off))))
        assert not wrong, f"records not at their acknowledged offsets: {wrong[:10]}"
