"""Consumer-group helpers for the interop tests (confluent-kafka based).

Several ``Member`` consumers are driven from one thread: ``pump`` polls each
in turn with a short timeout (rebalance callbacks are served from poll), so a
group of N consumers behaves like N independent applications.  Every wait is a
polling loop with a deadline; a timeout raises AssertionError with a
description of every member (assignment, callbacks seen, errors).

``pump`` also checks the basic safety property of group membership on every
round: no partition is ever owned by two members at the same moment (with
eager and cooperative rebalancing alike, a partition is only handed to its new
owner after the old owner has given it up).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from interop_helpers import produce

# Server arguments for every group test: a short initial rebalance delay so
# a new group forms in ~0.2 s instead of Kafka's default 3 s.
GROUP_ARGS = ("--group-initial-rebalance-delay-ms", "200")

# librdkafka settings that keep rebalances quick.  session.timeout.ms must
# stay >= the broker's group.min.session.timeout.ms (6000 by default).
FAST_GROUP_CONF = {
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 500,
    "socket.timeout.ms": 10000,
    "fetch.wait.max.ms": 100,
    "topic.metadata.refresh.interval.ms": 5000,
}


# Settings librdkafka accepts only with group.protocol=classic.
CLASSIC_ONLY_CONF = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
)


def group_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Member:
    """One subscribed confluent-kafka consumer plus a log of what it saw."""

    def __init__(self, bootstrap: str, group: str, topics, name: str, **conf):
        self.name = name
        self.group = group
        self.topics = list(topics)
        self.records: list[tuple[int, int, str | None, str | None]] = []  # (partition, offset, key, value)
        self.events: list[tuple[float, str, list[int]]] = []  # (time, assign|revoke|lost, partitions)
        self.errors: list = []  # error_cb errors (informational; clients log transient ones)
        self.msg_errors: list = []  # errors delivered as messages
        self.closed = False
        cfg = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 500,
        }
        cfg.update(FAST_GROUP_CONF)
        cfg.update(conf)
        if cfg.get("group.protocol") == "consumer":
            # KIP-848: the broker sets the session and heartbeat and assigns; librdkafka
            # refuses the classic protocol's settings for them.
            for key in CLASSIC_ONLY_CONF:
                cfg.pop(key, None)
        self.conf = cfg
        self.c = Consumer(cfg, error_cb=self._on_error)
        self.c.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- callbacks ---------------------------------------------------------

    def _on_error(self, err):
        self.errors.append(err)

    def _on_assign(self, consumer, parts):
        self.events.append((time.monotonic(), "assign", sorted(p.partition for p in parts)))

    def _on_revoke(self, consumer, parts):
        self.events.append((time.monotonic(), "revoke", sorted(p.partition for p in parts)))

    def _on_lost(self, consumer, parts):
        self.events.append((time.monotonic(), "lost", sorted(p.partition for p in parts)))

    # -- state -------------------------------------------------------------

    def owned(self) -> frozenset:
        if self.closed:
            return frozenset()
        return frozenset(tp.partition for tp in self.c.assignment())

    def assign_calls(self) -> int:
        return sum(1 for _t, kind, _p in self.events if kind == "assign")

    def values(self) -> list[str]:
        return [v for _p, _o, _k, v in self.records]

    def poll(self, timeout: float = 0.05, max_messages: int = 500) -> int:
        if self.closed:
            return 0
        msgs = self.c.consume(num_messages=max_messages, timeout=timeout)
        n = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                self.msg_errors.append(err)
                continue
            key = m.key().decode() if m.key() is not None else None
            val = m.value().decode() if m.value() is not None else None
            self.records.append((m.partition(), m.offset(), key, val))
            n += 1
        return n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.c.close()

    def describe(self) -> str:
        evs = [(round(t % 1000, 2), k, p) for t, k, p in self.events[-12:]]
        errs = [str(e) for e in (self.errors + self.msg_errors)[-8:]]
        return (
            f"  {self.name}: owned={sorted(self.owned())} consumed={len(self.records)} "
            f"closed={self.closed}\n    events(last 12)={evs}\n    errors(last 8)={errs}"
        )


def describe_members(members) -> str:
    return "\n".join(m.describe() for m in members)


class Overlap(AssertionError):
    pass


def check_no_overlap(members) -> None:
    owners: dict[int, str] = {}
    for m in members:
        for p in m.owned():
            if p in owners:
                raise Overlap(
                    f"partition {p} owned by {owners[p]} and {m.name} at the same time\n"
                    + describe_members(members)
                )
            owners[p] = m.name


def pump(members, until, timeout: float, what: str, poll_timeout: float = 0.05):
    """Poll every open member round-robin until ``until()`` is true.

    Checks on every round that no partition has two owners.  Raises
    AssertionError (with every member's state) when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.poll(poll_timeout)
        check_no_overlap(members)
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + describe_members(members))


def pump_for(members, seconds: float):
    """Keep every member polled for ``seconds`` (overlap-checked)."""
    end = time.monotonic() + seconds
    pump(members, lambda: time.monotonic() >= end, seconds + 30, f"{seconds}s of polling")


def wait_stable(
    members,
    partitions,
    sizes=None,
    timeout: float = 45,
    hold: float = 1.5,
    what: str = "a stable assignment",
):
    """Wait until the open members' assignments are disjoint, together cover
    exactly ``partitions``, every open member has had at least one assign
    callback, the multiset of assignment sizes equals ``sizes`` (if given),
    and all of that has stayed unchanged for ``hold`` seconds.

    Returns {member name: frozenset(partitions)}.
    """
    want = frozenset(partitions)
    want_sizes = sorted(sizes) if sizes is not None else None
    state = {"snap": None, "since": 0.0}

    def good_snapshot():
        live = [m for m in members if not m.closed]
        if any(m.assign_calls() == 0 for m in live):
            return None
        snap = {m.name: m.owned() for m in live}
        union = frozenset().union(*snap.values()) if snap else frozenset()
        if union != want or sum(len(s) for s in snap.values()) != len(want):
            return None
        if want_sizes is not None and sorted(len(s) for s in snap.values()) != want_sizes:
            return None
        return snap

    def until():
        snap = good_snapshot()
        now = time.monotonic()
        if snap is None or snap != state["snap"]:
            state["snap"], state["since"] = snap, now
            return False
        return now - state["since"] >= hold

    pump(members, until, timeout, f"{what} (partitions {sorted(want)}, sizes {want_sizes})")
    return state["snap"]


def consumed_values(members) -> Counter:
    c: Counter = Counter()
    for m in members:
        c.update(m.values())
    return c


def wait_all_consumed(members, expected_values, timeout: float = 45, what: str = "every record"):
    expected = set(expected_values)

    def until():
        seen = set()
        for m in members:
            seen.update(m.values())
        return expected <= seen

    try:
        pump(members, until, timeout, what)
    except AssertionError as e:
        seen = set()
        for m in members:
            seen.update(m.values())
        missing = sorted(expected - seen, key=lambda v: int(v) if v.isdigit() else 0)
        raise AssertionError(f"{e}\n{len(missing)} of {len(expected)} records never consumed, e.g. {missing[:20]}")


def wait_caught_up(members, hw, timeout: float = 45, what: str = "owners to reach the high watermarks"):
    """Wait until every open member has read, on each partition it owns, up
    to that partition's high watermark ``hw[p]`` (exclusive)."""

    def until():
        for m in members:
            if m.closed:
                continue
            owned = m.owned()
            last: dict[int, int] = {}
            for p, off, _k, _v in m.records:
                if p in owned:
                    last[p] = max(last.get(p, -1), off)
            if any(last.get(p, -1) < hw.get(p, 0) - 1 for p in owned):
                return False
        return True

    pump(members, until, timeout, what)


def check_records_consistent(members, records) -> None:
    """Every consumed (partition, offset) always carries the same record, and
    that record is one we produced with its key."""
    expected = {v: k for k, v in records}
    at: dict[tuple[int, int], tuple] = {}
    for m in members:
        for p, off, k, v in m.records:
            assert v in expected, f"{m.name} consumed unexpected value {v!r} at p{p}@{off}"
            assert k == expected[v], f"{m.name}: value {v} came with key {k!r}, expected {expected[v]!r}"
            prev = at.setdefault((p, off), (k, v))
            assert prev == (k, v), f"p{p}@{off} read as {prev} and as {(k, v)}"


# -- commits -------------------------------------------------------------------

RETRIABLE = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._WAIT_COORD,
}


def committed(member, topic, partitions, timeout: float = 30):
    """Consumer.committed() with retries for coordinator-not-ready errors
    (expected right after a broker restart).  Returns {p: TopicPartition}."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = member.c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            errs = [tp for tp in res if tp.error is not None]
            if not errs:
                return {tp.partition: tp for tp in res}
            last = errs
        except KafkaException as e:
            if e.args[0].code() not in RETRIABLE:
                raise
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"committed() kept failing for {timeout}s: {last!r}")
        time.sleep(0.3)


def commit_sync(member, offsets, timeout: float = 30, also_retry=(), backoff: float = 0.3):
    """Synchronous commit of explicit offsets [TopicPartition], retried on
    coordinator-not-ready errors (and the codes in ``also_retry``); asserts no
    partition-level error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = member.c.commit(offsets=offsets, asynchronous=False)
            bad = [tp for tp in res if tp.error is not None]
            assert not bad, f"{member.name}: commit returned partition errors {bad}"
            return res
        except KafkaException as e:
            code = e.args[0].code()
            if (code not in RETRIABLE and code not in also_retry) or time.monotonic() > deadline:
                raise
        time.sleep(backoff)


def commit_consumed(member, topic):
    """Commit, for every partition the member owns and has read from, the
    offset after the last record it read."""
    last: dict[int, int] = {}
    owned = member.owned()
    for p, off, _k, _v in member.records:
        if p in owned:
            last[p] = max(last.get(p, -1), off)
    if last:
        commit_sync(member, [TopicPartition(topic, p, off + 1) for p, off in last.items()])
    return {p: off + 1 for p, off in last.items()}


class BackgroundProducer:
    """Produce records on a thread (while the main thread keeps consumers
    polled).  ``join()`` re-raises the producer's failure, if any."""

    def __init__(self, bootstrap: str, topic: str, records, timeout: float = 60):
        self.acks = None
        self.exc: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(bootstrap, topic, records, timeout), daemon=True)
        self._t.start()

    def _run(self, bootstrap, topic, records, timeout):
        try:
            self.acks = produce(bootstrap, topic, records, timeout=timeout)
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.exc = e

    def done(self) -> bool:
        return not self._t.is_alive()

    def join(self, timeout: float = 90):
        self._t.join(timeout)
        if self._t.is_alive():
            raise AssertionError("background producer did not finish in time")
        if self.exc is not None:
            raise self.exc
        return self.acks


def close_all(members) -> None:
    errors = []
    for m in members:
        try:
            m.close()
        except Exception as e:  # noqa: BLE001 - close every member regardless
            errors.append((m.name, e))
    if errors:
        raise AssertionError(f"closing consumers failed: {errors}")


class MemberSet(list):
    """The members a test created; the ``members`` fixture closes them all
    at teardown (before the broker goes away)."""

    def __init__(self, bootstrap: str):
        super().__init__()
        self.bootstrap = bootstrap

    def add(self, group: str, topics, name: str, **conf) -> Member:
        m = Member(self.bootstrap, group, topics, name, **conf)
        self.append(m)
        return m


@pytest.fixture
def members(weir):
    """Factory/registry of ``Member`` consumers on the test's broker.  Import
    it into a test module to use it.  Depends on ``weir`` so that consumers
    are closed while the broker is still up."""
    ms = MemberSet(weir.bootstrap)
    try:
        yield ms
    finally:
        close_all(ms)
