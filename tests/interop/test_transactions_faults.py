"""Exactly-once under faults (KIP-98, KIP-447) on a three-broker cluster with confluent-kafka.

A consume-transform-produce service (``eos/service.py``) reads N keyed input records under
read_committed and writes one output per input, committing its input offsets inside each
transaction. While it runs, it is killed with ``kill -9`` and restarted again and again with
the same transactional id (each new instance fences the last), and brokers are killed with
``kill -9`` and restarted, the transaction coordinator of that id among them.

Read back with read_committed, the output must hold every input exactly once, each key's
records in input order, and nothing from an aborted transaction (the service's aborted
attempts are re-done, so one would show as a duplicate). The group's committed offsets must
be the input's ends. ``WEIR_EOS_SEED`` picks the fault schedule (default 1).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from interop_helpers import admin, consume_all, consumer, produce, topic_name
from test_transactions import read_values

SERVICE = Path(__file__).resolve().parent / "eos" / "service.py"
N = 3000
KEYS = 40


def java_hash(s: str) -> int:
    h = 0
    for ch in s.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_of(cluster, txn_id: str, partitions: int = 50) -> int | None:
    index = abs(java_hash(txn_id)) % partitions
    md = admin(cluster.live_bootstrap()).list_topics(topic="__transaction_state", timeout=10)
    t = md.topics.get("__transaction_state")
    if t is None or index not in t.partitions:
        return None
    leader = t.partitions[index].leader
    return leader if leader >= 0 else None


def start_service(cluster, txn_id, group, src, dst, log):
    return subprocess.Popen(
        [sys.executable, str(SERVICE), cluster.bootstrap, txn_id, group, src, dst],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def committed_count(bs, dst) -> int:
    return sum(len(v) for v in read_values(bs, dst, range(3), "read_committed", settle=1.0).values())


@pytest.mark.weir_timeout(600)
@pytest.mark.weir_args(
    "--offsets-topic-replication-factor", "3",
    "--override", "transaction.state.log.min.isr=2",
    "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
)
def test_exactly_once_through_service_and_broker_kills(cluster3, tmp_path):
    rng = random.Random(int(os.environ.get("WEIR_EOS_SEED", "1")))
    bs = cluster3.bootstrap
    src, dst = topic_name("eos-in"), topic_name("eos-out")
    a = admin(bs)
    from confluent_kafka.admin import NewTopic

    for t in (src, dst):
        futures = a.create_topics(
            [NewTopic(t, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})]
        )
        futures[t].result(30)
    values = [f"k{i % KEYS}:{i // KEYS}" for i in range(N)]
    produce(bs, src, [(v.split(":")[0], v) for v in values], conf={"enable.idempotence": True})
    txn_id, group = topic_name("eos-txn"), topic_name("eos-group")
    log = open(tmp_path / "service.log", "wb")
    service = start_service(cluster3, txn_id, group, src, dst, log)
    service_kills = broker_kills = coordinator_kills = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.5, 4.0))
            fault = rng.random()
            if fault < 0.55:
                service.kill()
                service.wait()
                service_kills += 1
                service = start_service(cluster3, txn_id, group, src, dst, log)
            else:
                target = coordinator_of(cluster3, txn_id) if fault < 0.8 else None
                if target is None:
                    target = rng.choice(cluster3.broker_ids)
                else:
                    coordinator_kills += 1
                cluster3.kill(target)
                broker_kills += 1
                time.sleep(rng.uniform(0.5, 2.0))
                cluster3.start(target)
            if service_kills >= 8 and broker_kills >= 4 and coordinator_kills >= 2:
                break
        # Faults over: the service finishes the input.
        finish = time.monotonic() + 180
        while committed_count(bs, dst) < N:
            assert time.monotonic() < finish, (
                f"the service did not finish: {committed_count(bs, dst)} of {N}\n"
                + (tmp_path / "service.log").read_text()[-3000:]
            )
            if service.poll() is not None:
                service = start_service(cluster3, txn_id, group, src, dst, log)
            time.sleep(2)
    finally:
        service.kill()
        service.wait()
        log.close()
    assert service_kills >= 4 and broker_kills >= 2, (service_kills, broker_kills)

    out = read_values(bs, dst, range(3), "read_committed", settle=3.0)
    seen = [v for part in out.values() for v in part]
    counts = defaultdict(int)
    for v in seen:
        counts[v] += 1
    dupes = {v: c for v, c in counts.items() if c > 1}
    missing = [v for v in values if counts.get(f"out:{v}", 0) == 0]
    strays = [v for v in counts if not v.startswith("out:") or v[4:] not in set(values)]
    assert not dupes, f"{len(dupes)} outputs more than once (an aborted or repeated write): {list(dupes.items())[:10]}"
    assert not missing, f"{len(missing)} inputs never in the output: {missing[:10]}"
    assert not strays, strays[:10]
    for part, vs in out.items():
        last = {}
        for v in vs:
            key, seq = v[4:].split(":")
            assert int(seq) > last.get(key, -1), f"key {key} out of order in partition {part}: {vs[:50]}"
            last[key] = int(seq)
    # The aborted attempts are there under read_uncommitted, filtered under read_committed.
    raw = read_values(bs, dst, range(3), "read_uncommitted", settle=2.0)
    aborted = sum(len(v) for v in raw.values()) - len(seen)
    # The committed input offsets are the input's ends.
    ends = consume_all(bs, src, range(3))
    c = consumer(bs, **{"group.id": group})
    try:
        committed = c.committed([TopicPartition(src, p) for p in range(3)], timeout=20)
    finally:
        c.close()
    for tp in committed:
        assert tp.offset == len(ends.get(tp.partition, [])), (committed, {p: len(v) for p, v in ends.items()})
    print(
        f"service kills {service_kills}, broker kills {broker_kills} "
        f"(coordinator {coordinator_kills}), aborted records filtered {aborted}"
    )
