"""Cooperative-sticky (KIP-429) consumer groups shared by Weir's own consumer
and librdkafka.

One ``weir consume --group`` process (weir-client, with
``--consumer-property partition.assignment.strategy=cooperative-sticky``) and
one confluent-kafka Consumer with the same assignor read a 6-partition topic
as members of one group.  Each client leads once (the first member to join
is the group leader and computes the assignment):

* confluent-kafka first: librdkafka's leader plans the incremental
  rebalance; weir-client must follow it and take over the three partitions
  librdkafka revokes, at the offsets librdkafka committed for them;
* ``weir consume`` first: weir-client's own cooperative-sticky assignor
  plans, weir-client revokes three of its six partitions (committing them)
  and the confluent member receives them through incremental assigns.

Records are produced continuously by a throttled producer thread while the
second member joins, so partitions change hands under live traffic.  Both
tests check that

(a) every produced record is read by at least one member;
(b) after the second member joined, both read records, from disjoint
    partition sets (also as DescribeGroups reports them: protocol
    cooperative-sticky, two members, disjoint assignments covering the
    topic);
(c) the confluent member's rebalances are incremental: it keeps some of its
    partitions throughout (only a subset is ever revoked) or, joining
    second, receives partitions through incremental assigns and never loses
    any;
(d) each partition changes hands at most once and cleanly: the old owner's
    reads are a head of the partition, the new owner's a tail, the old owner
    stopped reading before the new one started, and records read by both
    (duplicates) are no more than the old owner read in its last auto-commit
    interval before the handover (in practice there are none: both clients
    commit revoked partitions before giving them up);
(e) on the wire, the members' JoinGroup subscriptions are KIP-429 ones: the
    partitions a member kept are reported as owned, with its generation
    (DescribeGroups member metadata, decoded by kafka-python); and weir
    consume, stopped with SIGINT, commits everything it read and exits 0.

Every wait polls with a deadline; the weir consume process's stderr is
included in failure messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException, Producer
from kafka import KafkaAdminClient

from conftest import weir_bin
from group_helpers import (
    GROUP_ARGS,
    committed,
    group_name,
    members,  # noqa: F401 - fixture
)
from interop_helpers import admin, create_topic, produce, topic_name, watermarks

pytestmark = pytest.mark.weir_args(*GROUP_ARGS)

PARTS = 6
ALL = frozenset(range(PARTS))
KEYS = 61  # 61 keys reach all six partitions (murmur2)
ASSIGNOR = "cooperative-sticky"
RDK_CONF = {"partition.assignment.strategy": ASSIGNOR}
# weir consume: the assignor under test, and a heartbeat as quick as the
# confluent member's (group_helpers.FAST_GROUP_CONF) so rebalances are noticed
# within half a second instead of weir-client's default 3 s.
WEIR_PROPS = (
    f"partition.assignment.strategy={ASSIGNOR}",
    "heartbeat.interval.ms=500",
    "session.timeout.ms=10000",
)
# Auto-commit intervals: the confluent Member's (group_helpers) and weir
# consume's.  Bounds for duplicates after a handover.
RDK_COMMIT_S = 0.5
WEIR_COMMIT_S = 1.0
DESCRIBE_TIMEOUT = 15


def recs(start: int, n: int):
    """Keyed records whose values (the produce index) are unique."""
    return [(f"k{i % KEYS}", str(i)) for i in range(start, start + n)]


# -- the weir consume member ---------------------------------------------------


class WeirConsumer:
    """One ``weir consume --group G --format json`` process.  A reader thread
    timestamps and parses every line it prints into ``records``
    [(monotonic time, partition, offset, key, value)]."""

    name = "weir"

    def __init__(self, bootstrap: str, group: str, topic: str, stderr_path, idle_ms: int = 30000, extra=()):
        self.topic = topic
        self.stderr_path = stderr_path
        self.records: list[tuple[float, int, int, str | None, str | None]] = []
        self.bad_lines: list[str] = []
        self.started = time.monotonic()
        # WEIR_* variables are settings for the binary; keep the caller's out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env["NO_COLOR"] = "1"
        self.cmd = [
            str(weir_bin()), "consume",
            "--bootstrap-server", bootstrap,
            "--topic", topic,
            "--group", group,
            "--from-beginning",
            "--format", "json",
            # A backstop: the test stops it with SIGINT long before this.
            "--timeout-ms", str(idle_ms),
        ]
        for prop in WEIR_PROPS:
            self.cmd += ["--consumer-property", prop]
        self.cmd += list(extra)
        self._err = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            now = time.monotonic()
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                r = json.loads(line)
                assert r["topic"] == self.topic
                self.records.append((now, r["partition"], r["offset"], r["key"], r["value"]))
            except (ValueError, KeyError, TypeError, AssertionError):
                self.bad_lines.append(line)

    # -- state -------------------------------------------------------------

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def reads(self):
        """(partition, offset, key, value) in the order printed."""
        return [(p, o, k, v) for _t, p, o, k, v in list(self.records)]

    def values(self):
        return [v for *_x, v in list(self.records)]

    def partitions_since(self, since: float) -> frozenset:
        return frozenset(p for t, p, *_x in list(self.records) if t >= since)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self, tail: int = 6000) -> str:
        recs_ = list(self.records)
        last = recs_[-1][0] if recs_ else None
        err = self.stderr_text()
        if len(err) > tail:
            err = "...[truncated]...\n" + err[-tail:]
        return (
            f"  weir consume: rc={self.proc.poll()} printed={len(recs_)} "
            f"partitions={sorted({p for _t, p, *_x in recs_})} "
            f"last print {('%.2fs ago' % (time.monotonic() - last)) if last else 'never'} "
            f"bad lines={self.bad_lines[:3]}\n"
            f"  ----- weir consume stderr ({self.stderr_path}) -----\n{err}\n  ----- end -----"
        )

    # -- stopping ----------------------------------------------------------

    def stop(self, timeout: float = 20) -> int | None:
        """SIGINT (weir consume then commits, leaves the group and exits 0);
        SIGKILL if it has not exited within ``timeout``.  Returns the exit
        code of a clean exit, None when it had to be killed."""
        rc = None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                rc = None
        else:
            rc = self.proc.returncode
        self._reader.join(10)
        self._err.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._reader.join(10)
        if not self._err.closed:
            self._err.close()


@pytest.fixture
def weir_consumers(weir, tmp_path):
    """Starts ``weir consume`` members on the test's broker; kills any still
    running at teardown (before the broker and the confluent members go)."""
    started: list[WeirConsumer] = []

    def start(group: str, topic: str, *extra) -> WeirConsumer:
        wc = WeirConsumer(weir.bootstrap, group, topic, tmp_path / f"weir-consume-{len(started)}.stderr", extra=extra)
        started.append(wc)
        return wc

    try:
        yield start
    finally:
        for wc in started:
            wc.kill()


# -- a producer that keeps producing -------------------------------------------


class TrickleProducer:
    """Produces ``recs(start, ...)`` on a thread, ``per_tick`` records every
    ``tick`` seconds, until ``stop()`` (or ``limit`` records)."""

    def __init__(self, bootstrap: str, topic: str, start: int, per_tick: int = 20, tick: float = 0.05,
                 limit: int = 20000):
        self.records: list[tuple[str, str]] = []
        self.acked = 0
        self.errors: list = []
        self.exc: BaseException | None = None
        self._stop = threading.Event()
        self._args = (bootstrap, topic, start, per_tick, tick, limit)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.acked += 1

    def _run(self) -> None:
        bootstrap, topic, start, per_tick, tick, limit = self._args
        try:
            p = Producer({
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30000,
                "socket.timeout.ms": 10000,
            }, error_cb=lambda e: self.errors.append(e) if e.fatal() else None)
            i = start
            while not self._stop.is_set() and i < start + limit:
                for k, v in recs(i, per_tick):
                    p.produce(topic, key=k.encode(), value=v.encode(), on_delivery=self._on_delivery)
                    self.records.append((k, v))
                i += per_tick
                p.poll(0)
                self._stop.wait(tick)
            left = p.flush(30)
            if left:
                self.errors.append(f"{left} records undelivered after 30 s")
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.exc = e

    def stop(self):
        """Stop producing; wait for every delivery; return the records."""
        self._stop.set()
        self._t.join(60)
        assert not self._t.is_alive(), "trickle producer did not finish in time"
        if self.exc is not None:
            raise self.exc
        assert not self.errors, f"trickle producer errors: {self.errors[:10]}"
        assert self.acked == len(self.records), f"{self.acked} of {len(self.records)} trickled records acked"
        return list(self.records)


# -- driving both members --------------------------------------------------------


class Pair:
    """The confluent member ``rdk`` and the weir consume member ``wc`` (None
    until started).  ``drive`` keeps ``rdk`` polled (rebalance callbacks run
    from poll) and logs every change of its assignment with a timestamp."""

    def __init__(self, rdk):
        self.rdk = rdk
        self.wc: WeirConsumer | None = None
        self.rdk_times: list[float] = []  # parallel to rdk.records
        self.owned_log: list[tuple[float, frozenset]] = []  # rdk.assignment() changes

    def state(self) -> str:
        own = [(round(t % 1000, 2), sorted(o)) for t, o in self.owned_log[-10:]]
        out = self.rdk.describe() + f"\n    assignment changes(last 10)={own}"
        if self.wc is not None:
            out += "\n" + self.wc.describe()
        return out

    def drive(self, until, timeout: float, what: str, max_messages: int = 500, pace: float = 0.0):
        """Poll rdk (at most ``max_messages`` per round, sleeping ``pace``
        between rounds to read slowly) until ``until()``; fail if weir consume
        exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.rdk.poll(0.05, max_messages=max_messages)
            now = time.monotonic()
            self.rdk_times.extend([now] * n)
            own = self.rdk.owned()
            if not self.owned_log or self.owned_log[-1][1] != own:
                self.owned_log.append((now, own))
            if self.wc is not None and self.wc.exited():
                raise AssertionError(
                    f"weir consume exited (code {self.wc.proc.returncode}) while waiting for {what}\n" + self.state()
                )
            if until():
                return
            if now > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + self.state())
            if pace:
                time.sleep(pace)

    def rdk_timed(self):
        """(time, partition, offset, key, value) for every record rdk read."""
        return [(t, p, o, k, v) for t, (p, o, k, v) in zip(self.rdk_times, self.rdk.records)]

    def wait_split(self, since: float, timeout: float = 45, hold: float = 1.5, **drive_kw):
        """Wait until rdk owns some but not all partitions, weir consume is
        reading (in the last second) exactly the others, rdk has read from
        each of its own since ``since``, and that has held for ``hold``
        seconds.  Returns (rdk's partitions, weir's partitions)."""
        st = {"snap": None, "since": 0.0}

        def until():
            now = time.monotonic()
            own = self.rdk.owned()
            w_recent = self.wc.partitions_since(max(since, now - 1.0))
            r_read = {p for t, (p, *_x) in zip(self.rdk_times, self.rdk.records) if t >= since}
            ok = 0 < len(own) < PARTS and w_recent == ALL - own and own <= r_read
            snap = (own, w_recent) if ok else None
            if snap is None or snap != st["snap"]:
                st["snap"], st["since"] = snap, now
                return False
            return now - st["since"] >= hold

        self.drive(until, timeout, "rdk and weir consume reading disjoint partition sets", **drive_kw)
        return st["snap"]

    def wait_read(self, values, timeout: float = 45, what: str = "every record"):
        want = set(values)
        seen: set = set()

        def until():
            seen.update(self.rdk.values())
            seen.update(self.wc.values())
            return want <= seen

        try:
            self.drive(until, timeout, what)
        except AssertionError as e:
            missing = sorted(want - seen, key=int)
            raise AssertionError(f"{e}\n{len(missing)} of {len(want)} never read, e.g. {missing[:20]}") from None


def describe_group(pair: Pair, group: str, rdk_parts: frozenset, timeout: float = 20):
    """DescribeGroups (confluent-kafka AdminClient) until it shows the group
    Stable with protocol cooperative-sticky, the two members (client ids rdk
    and weir-cli) and their disjoint assignments covering the topic, rdk's
    being ``rdk_parts``.  Keeps rdk polled in between."""
    adm = admin(pair.rdk.conf["bootstrap.servers"])
    last = {"d": None}

    def good():
        try:
            d = adm.describe_consumer_groups([group], request_timeout=DESCRIBE_TIMEOUT)[group].result(
                timeout=DESCRIBE_TIMEOUT + 5
            )
        except KafkaException as e:
            last["d"] = e
            return False
        parts = {m.client_id: frozenset(tp.partition for tp in m.assignment.topic_partitions) for m in d.members}
        last["d"] = (d.state, d.partition_assignor, parts)
        return (
            d.state == ConsumerGroupState.STABLE
            and d.partition_assignor == ASSIGNOR
            and len(d.members) == 2
            and parts == {"rdk": rdk_parts, "weir-cli": ALL - rdk_parts}
        )

    deadline = time.monotonic() + timeout
    while not good():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"DescribeGroups never showed {group} Stable/{ASSIGNOR} with rdk={sorted(rdk_parts)} and "
                f"weir-cli={sorted(ALL - rdk_parts)}; last: {last['d']!r}\n" + pair.state()
            )
        pair.drive(lambda: True, 5, "one poll")
        time.sleep(0.2)
    return last["d"]


def member_subscriptions(bootstrap: str, group: str) -> dict:
    """Each member's subscription from DescribeGroups, decoded by
    kafka-python: {client id: {"topics", "owned_partitions",
    "generation_id", ...}} (the metadata of the member's last JoinGroup)."""
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=DESCRIBE_TIMEOUT * 1000)
    try:
        d = a.describe_groups([group])[group]
    finally:
        a.close()
    assert d["error"] is None, d
    out = {}
    for m in d["members"]:
        md = m["member_metadata"]
        assert isinstance(md, dict), f"kafka-python could not decode {m['client_id']}'s subscription: {md!r}"
        out[m["client_id"]] = md
    return out


def owned(md) -> frozenset:
    return frozenset(p for tp in md["owned_partitions"] for p in tp["partitions"])


# -- checks ----------------------------------------------------------------------


def check_reads(produced, rdk_timed, weir_timed, moved, old_owner: str, commit_window: float):
    """(a) and (d): returns the number of duplicates.

    ``produced`` [(key, value)]; ``*_timed`` [(time, partition, offset, key,
    value)]; ``moved`` the partitions expected to change hands, from
    ``old_owner`` ("rdk" or "weir") to the other member.
    """
    expected = dict((v, k) for k, v in produced)
    by = {"rdk": rdk_timed, "weir": weir_timed}
    at: dict[tuple[int, int], tuple] = {}
    for who, reads in by.items():
        seen_here: Counter = Counter()
        for _t, p, off, k, v in reads:
            assert v in expected, f"{who} read unexpected value {v!r} at p{p}@{off}"
            assert k == expected[v], f"{who}: value {v} came back with key {k!r}, expected {expected[v]!r}"
            prev = at.setdefault((p, off), (k, v))
            assert prev == (k, v), f"p{p}@{off} read as {prev} and as {(k, v)}"
            seen_here[(p, off)] += 1
        again = [po for po, n in seen_here.items() if n > 1]
        assert not again, f"{who} read {len(again)} records more than once itself, e.g. {sorted(again)[:10]}"

    # (a) nothing lost
    read = {v for _pk, (_k, v) in at.items()}
    missing = sorted(set(expected) - read, key=int)
    assert not missing, f"{len(missing)} of {len(expected)} produced records never read, e.g. {missing[:20]}"

    # (d) clean handovers, bounded duplicates
    new_owner = "weir" if old_owner == "rdk" else "rdk"
    dups = 0
    for p in range(PARTS):
        offs = {who: sorted(off for _t, pp, off, *_x in reads if pp == p) for who, reads in by.items()}
        readers = {who for who, o in offs.items() if o}
        if p not in moved:
            assert len(readers) <= 1, (
                f"partition {p} did not move but both members read it: "
                f"rdk {len(offs['rdk'])} records ({offs['rdk'][:1]}..{offs['rdk'][-1:]}), "
                f"weir {len(offs['weir'])} ({offs['weir'][:1]}..{offs['weir'][-1:]})"
            )
            continue
        old, new = offs[old_owner], offs[new_owner]
        assert new, f"moved partition {p}: the new owner ({new_owner}) never read from it"
        if not old:
            continue
        # The old owner read a head of the partition, the new owner a tail.
        assert old == list(range(old[0], old[-1] + 1)), f"p{p}: {old_owner}'s offsets have gaps"
        assert new == list(range(new[0], new[-1] + 1)), f"p{p}: {new_owner}'s offsets have gaps"
        assert new[0] <= old[-1] + 1, f"p{p}: {old_owner} stopped at {old[-1]}, {new_owner} started at {new[0]}"
        assert new[-1] >= old[-1], f"p{p}: {old_owner} read up to {old[-1]}, past {new_owner}'s last {new[-1]}"
        assert new[0] > old[0], (
            f"p{p}: {new_owner} started at offset {new[0]}, not at what {old_owner} (which read "
            f"{old[0]}..{old[-1]}) committed"
        )
        # The old owner stopped reading before the new owner started (small
        # allowance: weir consume's lines are timestamped by a reader thread).
        old_last_t = max(t for t, pp, *_x in by[old_owner] if pp == p)
        new_first_t = min(t for t, pp, *_x in by[new_owner] if pp == p)
        assert old_last_t <= new_first_t + 0.25, (
            f"p{p}: {old_owner} still read it {old_last_t - new_first_t:.2f}s after {new_owner} started: "
            "both owned it at once"
        )
        # Duplicates: only what the old owner read since its last commit.
        d = max(0, old[-1] - new[0] + 1)
        recent = sum(1 for t, pp, *_x in by[old_owner] if pp == p and t >= old_last_t - commit_window - 0.5)
        assert d <= recent, (
            f"p{p}: {d} records read by both {old_owner} (up to offset {old[-1]}) and {new_owner} "
            f"(from offset {new[0]}), more than the {recent} {old_owner} read in its last "
            f"{commit_window}s auto-commit interval (+0.5 s)"
        )
        dups += d
    return dups


# -- the tests -------------------------------------------------------------------


def test_cooperative_confluent_leads_weir_follows(weir, members, weir_consumers):  # noqa: F811
    """librdkafka leads: alone it owns all six partitions; when weir consume
    joins it revokes only three (keeping the others throughout) and weir
    consume takes those over at the offsets librdkafka committed."""
    bs = weir.bootstrap
    t = topic_name("coop-rdk-leads")
    g = group_name("g-coop-rdk-leads")
    create_topic(bs, t, partitions=PARTS)
    phase_a = recs(0, 3000)
    acks = produce(bs, t, phase_a)
    assert {p for p, _ in acks} == set(ALL), f"{KEYS} keys should reach all {PARTS} partitions"

    rdk = members.add(g, [t], "rdk", **RDK_CONF)
    pair = Pair(rdk)
    # Read slowly (about 500 records/s), so that part of every partition is
    # still unread, and uncommitted, when weir consume joins.
    slow = {"max_messages": 10, "pace": 0.02}
    pair.drive(lambda: rdk.owned() == ALL and len(rdk.records) >= 500, 30,
               "rdk (the leader) owning all partitions and reading", **slow)
    assert [e[1:] for e in rdk.events] == [("assign", sorted(ALL))], rdk.events
    mark = len(rdk.events)

    trickle = TrickleProducer(bs, t, start=len(phase_a))
    try:
        joined_at = time.monotonic()
        pair.wc = weir_consumers(g, t)
        rdk_parts, weir_parts = pair.wait_split(joined_at, **slow)
        describe_group(pair, g, rdk_parts)
        subs = member_subscriptions(bs, g)
        # The split holds while rdk reads at full speed.
        rdk_parts2, _ = pair.wait_split(joined_at, hold=1.0)
        assert rdk_parts2 == rdk_parts, f"assignment changed again: rdk {sorted(rdk_parts)} -> {sorted(rdk_parts2)}"
    finally:
        phase_b = trickle.stop()
    phase_c = recs(len(phase_a) + len(phase_b), 1200)
    produce(bs, t, phase_c)
    pair.wait_read([v for _k, v in phase_c], what="every record of the last batch")

    # (b) both read the last batch, each from its own partitions only.
    c_vals = {v for _k, v in phase_c}
    rdk_c = {p for p, _o, _k, v in rdk.records if v in c_vals}
    weir_c = {p for p, _o, _k, v in pair.wc.reads() if v in c_vals}
    assert rdk_c == rdk_parts and weir_c == weir_parts, (
        f"last batch read by rdk from {sorted(rdk_c)} (owns {sorted(rdk_parts)}), "
        f"by weir from {sorted(weir_c)} (should own {sorted(weir_parts)})\n" + pair.state()
    )
    assert rdk.owned() == rdk_parts, f"rdk's assignment changed: {sorted(rdk_parts)} -> {sorted(rdk.owned())}"

    # (c) incremental on librdkafka's side: a subset revoked, the rest kept.
    evs = [(k, p) for _t, k, p in rdk.events[mark:]]
    assert not [e for e in evs if e[0] == "lost"], f"rdk lost partitions: {evs}"
    revoked = set().union(*[set(p) for k, p in evs if k == "revoke"])
    assigned = set().union(*[set(p) for k, p in evs if k == "assign"])
    assert revoked and revoked < ALL, f"rdk revoked {sorted(revoked)} when weir joined: not incremental; events {evs}"
    assert not assigned, f"rdk was assigned {sorted(assigned)} after weir joined (it should only give up): {evs}"
    assert rdk_parts == ALL - revoked and len(rdk_parts) == PARTS // 2, (rdk_parts, evs)
    during = [o for t_, o in pair.owned_log if t_ >= joined_at]
    assert all(o and o >= rdk_parts for o in during), (
        f"rdk's assignment went through {[sorted(o) for o in during]}: it should keep {sorted(rdk_parts)} throughout"
    )
    # On the wire (DescribeGroups' member metadata): librdkafka's last
    # JoinGroup reported the partitions it kept as owned; weir consume's
    # reported the generation it had been part of (KIP-429 subscription v2).
    assert owned(subs["rdk"]) == rdk_parts, f"rdk's subscription: {subs['rdk']}"
    assert owned(subs["weir-cli"]) <= weir_parts and subs["weir-cli"]["generation_id"] > 0, (
        f"weir consume's subscription: {subs['weir-cli']}"
    )
    # weir consume only ever read what rdk gave up.
    weir_all = {p for p, *_x in pair.wc.reads()}
    assert weir_all == weir_parts == frozenset(revoked), (sorted(weir_all), sorted(weir_parts), sorted(revoked))

    # weir consume commits and leaves on SIGINT; it committed everything it read.
    rc = pair.wc.stop()
    assert rc == 0, f"weir consume exited with {rc}\n" + pair.state()
    n = len(pair.wc.records)
    assert f"Processed a total of {n} messages" in pair.wc.stderr_text(), pair.state()
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(PARTS)).items()}
    got = {p: tp.offset for p, tp in committed(rdk, t, sorted(weir_parts)).items()}
    assert got == {p: hw[p] for p in weir_parts}, f"weir consume's final commits {got}, high watermarks {hw}"

    # (a) and (d)
    produced = phase_a + phase_b + phase_c
    wtimed = list(pair.wc.records)
    dups = check_reads(produced, pair.rdk_timed(), wtimed, weir_parts, "rdk", RDK_COMMIT_S)
    print(
        f"\nconfluent leads: {len(produced)} records ({len(phase_b)} trickled during the join); "
        f"rdk read {len(rdk.records)}, weir {n}; duplicates {dups}; rdk keeps {sorted(rdk_parts)}, "
        f"weir took {sorted(weir_parts)}; rdk events {evs}"
    )


def test_cooperative_weir_leads_confluent_follows(weir, members, weir_consumers):  # noqa: F811
    """weir-client leads: weir consume owns all six partitions and is
    reading; when the confluent member joins, weir-client's
    cooperative-sticky plan moves three partitions, which weir consume gives
    up (committing them) while it keeps reading the other three, and the
    confluent member receives them through incremental assigns."""
    bs = weir.bootstrap
    t = topic_name("coop-weir-leads")
    g = group_name("g-coop-weir-leads")
    create_topic(bs, t, partitions=PARTS)
    phase_a = recs(0, 3000)
    acks = produce(bs, t, phase_a)
    assert {p for p, _ in acks} == set(ALL), f"{KEYS} keys should reach all {PARTS} partitions"

    trickle = TrickleProducer(bs, t, start=len(phase_a))
    try:
        wc = weir_consumers(g, t)
        # weir consume alone: the leader, owning everything.  Wait until it
        # has read every partition and is following the trickle.
        deadline = time.monotonic() + 30
        while not (len(wc.records) >= len(phase_a) and wc.partitions_since(time.monotonic() - 1.0) == ALL):
            if wc.exited() or time.monotonic() > deadline:
                raise AssertionError("weir consume never read all six partitions alone\n" + wc.describe())
            time.sleep(0.05)

        joined_at = time.monotonic()
        rdk = members.add(g, [t], "rdk", **RDK_CONF)
        pair = Pair(rdk)
        pair.wc = wc
        rdk_parts, weir_parts = pair.wait_split(joined_at)
        describe_group(pair, g, rdk_parts)
        subs = member_subscriptions(bs, g)
    finally:
        phase_b = trickle.stop()
    phase_c = recs(len(phase_a) + len(phase_b), 1200)
    produce(bs, t, phase_c)
    pair.wait_read([v for _k, v in phase_c], what="every record of the last batch")

    # (b) both read the last batch, each from its own partitions only.
    c_vals = {v for _k, v in phase_c}
    rdk_c = {p for p, _o, _k, v in rdk.records if v in c_vals}
    weir_c = {p for p, _o, _k, v in wc.reads() if v in c_vals}
    assert rdk_c == rdk_parts and weir_c == weir_parts, (
        f"last batch read by rdk from {sorted(rdk_c)} (owns {sorted(rdk_parts)}), "
        f"by weir from {sorted(weir_c)} (should own {sorted(weir_parts)})\n" + pair.state()
    )
    assert rdk.owned() == rdk_parts, f"rdk's assignment changed: {sorted(rdk_parts)} -> {sorted(rdk.owned())}"
    assert len(rdk_parts) == PARTS // 2, f"weir-client's plan gave rdk {sorted(rdk_parts)}: not balanced"
    assert {p for p, *_x in rdk.records} == rdk_parts, "rdk read partitions it was never given"

    # (c) the confluent member only ever received partitions, incrementally.
    evs = [(k, p) for _t, k, p in rdk.events]
    assert not [e for e in evs if e[0] in ("revoke", "lost") and e[1]], f"rdk gave partitions up: {evs}"
    assigns = [p for k, p in evs if k == "assign"]
    assert [p for p in assigns if p], f"rdk got no partitions through on_assign: {evs}"
    flat = [p for ps in assigns for p in ps]
    assert sorted(flat) == sorted(rdk_parts), (
        f"rdk's incremental assigns {assigns} do not add up to its assignment {sorted(rdk_parts)}"
    )
    assert all(len(o) <= len(rdk_parts) for _t, o in pair.owned_log), (
        f"rdk's assignment went through {[sorted(o) for _t, o in pair.owned_log]}"
    )
    # weir-client rebalanced cooperatively: its JoinGroup for the final
    # generation reported the partitions it kept as owned, with its previous
    # generation (an eager member reports none, generation -1).  Usually rdk's
    # first assign is also empty (weir-client's plan withheld the moving
    # partitions until weir consume had revoked them), but not always: when
    # weir consume revokes and rejoins before rdk's SyncGroup for that
    # generation arrives, the broker answers it REBALANCE_IN_PROGRESS and rdk
    # first hears of an assignment in the next generation.
    assert owned(subs["weir-cli"]) == weir_parts and subs["weir-cli"]["generation_id"] > 0, (
        f"weir consume's subscription {subs['weir-cli']}: not a cooperative (KIP-429) member owning "
        f"{sorted(weir_parts)}"
    )
    # weir consume kept its other three partitions through the rebalance: it
    # read them before rdk got its first partitions and after.
    first_assign = min(t_ for t_, o in pair.owned_log if o)
    w = list(wc.records)
    before = {p for t_, p, *_x in w if t_ < first_assign}
    after = {p for t_, p, *_x in w if t_ > first_assign}
    assert before == ALL and after == weir_parts, (
        f"weir consume read {sorted(before)} before rdk's first assign and {sorted(after)} after; "
        f"expected all, then {sorted(weir_parts)}\n" + pair.state()
    )

    rc = wc.stop()
    assert rc == 0, f"weir consume exited with {rc}\n" + pair.state()
    n = len(wc.records)
    assert f"Processed a total of {n} messages" in wc.stderr_text(), pair.state()
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(PARTS)).items()}
    got = {p: tp.offset for p, tp in committed(rdk, t, sorted(weir_parts)).items()}
    assert got == {p: hw[p] for p in weir_parts}, f"weir consume's final commits {got}, high watermarks {hw}"

    # (a) and (d)
    produced = phase_a + phase_b + phase_c
    dups = check_reads(produced, pair.rdk_timed(), list(wc.records), rdk_parts, "weir", WEIR_COMMIT_S)
    print(
        f"\nweir leads: {len(produced)} records ({len(phase_b)} trickled during the join); "
        f"rdk read {len(rdk.records)}, weir {n}; duplicates {dups}; weir keeps {sorted(weir_parts)}, "
        f"rdk got {sorted(rdk_parts)} via assigns {assigns}"
    )
