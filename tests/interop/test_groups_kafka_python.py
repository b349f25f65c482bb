"""Consumer groups through kafka-python (pure-Python client) against Weir:
subscribe-based consumption with commits and a second member resuming from
them, and a group mixing kafka-python and librdkafka members (the broker must
pick the one assignor both support)."""

import threading
import time

import pytest
from confluent_kafka import ConsumerGroupState
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.structs import OffsetAndMetadata

from group_helpers import (
    GROUP_ARGS,
    group_name,
    members,  # noqa: F401 - fixture
    pump,
    pump_for,
)
from interop_helpers import admin, create_topic, keyed_records, produce, topic_name, watermarks

pytestmark = pytest.mark.weir_args(*GROUP_ARGS)

TIMEOUT_MS = 15000


def kp_group_consumer(bs, group, client_id, **extra):
    conf = dict(
        bootstrap_servers=bs,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        max_poll_interval_ms=60000,
        request_timeout_ms=TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def poll_until(c, records, pred, timeout, what):
    """Poll ``c`` into ``records`` [(partition, offset, key, value)] until
    ``pred()``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: read {len(records)}, "
                f"assignment {sorted(c.assignment())}"
            )
        batch = c.poll(timeout_ms=300)
        for tp, msgs in batch.items():
            for m in msgs:
                key = m.key.decode() if m.key is not None else None
                val = m.value.decode() if m.value is not None else None
                records.append((tp.partition, m.offset, key, val))


def test_kafka_python_group_commit_and_resume(weir):
    bs = weir.bootstrap
    t = topic_name("kp-grp")
    g = group_name("kp-g")
    create_topic(bs, t, partitions=3)
    first = keyed_records(500)
    produce(bs, t, first)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    tps = [KpTopicPartition(t, p) for p in range(3)]

    c1 = kp_group_consumer(bs, g, "kp-first")
    recs1: list = []
    try:
        c1.subscribe([t])
        want = {v for _k, v in first}
        poll_until(c1, recs1, lambda: want <= {r[3] for r in recs1}, 60, "the first member reading everything")
        assert c1.assignment() == set(tps), c1.assignment()
        for p in range(3):
            assert c1.position(KpTopicPartition(t, p)) == hw[p], (p, c1.position(KpTopicPartition(t, p)), hw)
        c1.commit()  # synchronous commit of the consumed positions
        for p, tp in enumerate(tps):
            assert c1.committed(tp, timeout_ms=TIMEOUT_MS) == hw[p], (p, c1.committed(tp), hw)
        # Explicit offsets with metadata round-trip too.
        c1.commit({tp: OffsetAndMetadata(hw[p], f"kp-meta-{p}", -1) for p, tp in enumerate(tps)})
        for p, tp in enumerate(tps):
            om = c1.committed(tp, metadata=True, timeout_ms=TIMEOUT_MS)
            assert om.offset == hw[p] and om.metadata == f"kp-meta-{p}", (p, om)
    finally:
        c1.close(autocommit=False)
    dups = len(recs1) - len({r[3] for r in recs1})
    assert dups == 0, f"a single member read {dups} records twice"

    second = [(f"k{i % 37}", str(i)) for i in range(500, 700)]
    produce(bs, t, second)
    c2 = kp_group_consumer(bs, g, "kp-second")
    recs2: list = []
    try:
        for p, tp in enumerate(tps):
            assert c2.committed(tp, timeout_ms=TIMEOUT_MS) == hw[p], (p, c2.committed(tp), hw)
        c2.subscribe([t])
        want = {v for _k, v in second}
        poll_until(c2, recs2, lambda: want <= {r[3] for r in recs2}, 60, "the second member reading the new records")
        c2.commit()
    finally:
        c2.close(autocommit=False)
    old = {v for _k, v in first}
    reread = [r for r in recs2 if r[3] in old]
    assert not reread, f"second member re-read {len(reread)} committed records, e.g. {reread[:5]}"
    for p in range(3):
        offs = sorted(off for pp, off, *_ in recs2 if pp == p)
        assert not offs or offs[0] == hw[p], f"partition {p}: resumed at {offs[0]}, committed {hw[p]}"
    assert len(recs2) == len(second), f"read {len(recs2)} records, {len(second)} new"


class KpMember(threading.Thread):
    """A kafka-python group member polled on its own thread."""

    def __init__(self, bs, group, topic, name, **extra):
        super().__init__(daemon=True, name=name)
        self.member_name = name
        self.records: list = []
        self.assigned: frozenset = frozenset()
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self.c = kp_group_consumer(bs, group, name, **extra)
        self.c.subscribe([topic])

    def run(self):
        try:
            while not self.stop_event.is_set():
                batch = self.c.poll(timeout_ms=200)
                for tp, msgs in batch.items():
                    for m in msgs:
                        self.records.append((tp.partition, m.offset, m.key.decode(), m.value.decode()))
                self.assigned = frozenset(tp.partition for tp in self.c.assignment())
        except BaseException as e:  # noqa: BLE001 - reported by finish()
            self.error = e
        finally:
            try:
                self.c.close(autocommit=False)
            except Exception as e:  # noqa: BLE001
                self.error = self.error or e

    def finish(self, timeout=30):
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.member_name} did not stop"
        if self.error is not None:
            raise self.error


def test_mixed_client_group_picks_common_assignor(weir, members):  # noqa: F811
    """A kafka-python member offering only roundrobin and a librdkafka member
    offering range,roundrobin: the broker must choose roundrobin, and the two
    split the partitions and read every record between them."""
    bs = weir.bootstrap
    t = topic_name("mixed-grp")
    g = group_name("mixed-g")
    create_topic(bs, t, partitions=4)
    records = keyed_records(400)
    produce(bs, t, records)

    kp = KpMember(bs, g, t, "kp-rr", partition_assignment_strategy=[RoundRobinPartitionAssignor])
    kp.start()
    try:
        ck = members.add(g, [t], "ck-range-rr", **{"partition.assignment.strategy": "range,roundrobin"})
        state = {"snap": None, "since": 0.0}

        def stable():
            snap = (kp.assigned, ck.owned())
            ok = snap[0] and snap[1] and not (snap[0] & snap[1]) and (snap[0] | snap[1]) == frozenset(range(4))
            if not ok or snap != state["snap"]:
                state["snap"], state["since"] = (snap if ok else None), time.monotonic()
                return False
            return time.monotonic() - state["since"] >= 1.5

        pump([ck], stable, 45, f"a stable split (kafka-python owns {sorted(kp.assigned)})")
        assert kp.error is None, kp.error

        adm = admin(bs)
        d = adm.describe_consumer_groups([g], request_timeout=15)[g].result(timeout=20)
        assert d.state == ConsumerGroupState.STABLE, d.state
        assert d.partition_assignor == "roundrobin", (
            f"broker chose {d.partition_assignor!r}; roundrobin is the only assignor both members support"
        )
        assert len(d.members) == 2, d.members

        want = {v for _k, v in records}
        deadline = time.monotonic() + 45
        while not want <= ({r[3] for r in kp.records} | set(ck.values())):
            assert time.monotonic() < deadline, (
                f"records never consumed: {len(want - {r[3] for r in kp.records} - set(ck.values()))}"
            )
            pump_for([ck], 0.3)
        assert {r[0] for r in kp.records} <= kp.assigned
        assert {p for p, *_ in ck.records} <= ck.owned()
    finally:
        kp.finish()
