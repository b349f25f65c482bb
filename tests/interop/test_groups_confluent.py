"""Consumer groups through confluent-kafka-python (librdkafka) against Weir:
subscribe-based consumption with the range, roundrobin and cooperative-sticky
assignors, more members than partitions, independent groups on one topic,
committed offsets surviving broker restarts, a member process killed without
leaving (session timeout), and a live group riding out a broker crash.

Several consumers are driven from the test thread (see group_helpers.py);
every wait has a deadline and every check on a group's assignment is made
once it has held still for a while, never after a fixed sleep.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import TopicPartition

from group_helpers import (
    GROUP_ARGS,
    BackgroundProducer,
    check_records_consistent,
    commit_consumed,
    commit_sync,
    committed,
    consumed_values,
    group_name,
    members,  # noqa: F401 - fixture
    pump,
    wait_all_consumed,
    wait_caught_up,
    wait_stable,
)
from interop_helpers import (
    create_topic,
    keyed_records,
    produce,
    topic_name,
    wait_for_partitions,
    watermarks,
)

pytestmark = pytest.mark.weir_args(*GROUP_ARGS)

# -- 2. assignment strategies ----------------------------------------------------


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_group_assignor_balances_and_loses_nothing(weir, members, strategy):  # noqa: F811
    """Two members split six partitions 3/3, records produced before and while
    they consume all arrive; a third member joins (for cooperative-sticky:
    an incremental rebalance where the first two only give partitions up,
    keeping the rest), the split becomes 2/2/2, and still nothing is lost."""
    bs = weir.bootstrap
    t = topic_name(f"grp-{strategy}")
    g = group_name(f"g-{strategy}")
    create_topic(bs, t, partitions=6)
    records = keyed_records(900, keys=61)
    before, during, after = records[:400], records[400:650], records[650:]
    acks = produce(bs, t, before)
    assert {p for p, _ in acks} == set(range(6)), "61 keys should reach all 6 partitions"

    conf = {"partition.assignment.strategy": strategy}
    a = members.add(g, [t], "a", **conf)
    b = members.add(g, [t], "b", **conf)
    wait_stable([a, b], range(6), sizes=[3, 3], what="two members sharing six partitions")

    # Produce while both keep consuming.
    bg = BackgroundProducer(bs, t, during)
    pump([a, b], bg.done, 90, "the background producer")
    bg.join()

    owned_before = {m.name: m.owned() for m in (a, b)}
    marks = {m.name: len(m.events) for m in (a, b)}
    c = members.add(g, [t], "c", **conf)
    snap = wait_stable([a, b, c], range(6), sizes=[2, 2, 2], what="three members sharing six partitions")

    for m in (a, b):
        evs = m.events[marks[m.name]:]
        lost = [e for e in evs if e[1] == "lost"]
        assert not lost, f"{m.name} lost partitions (session/generation trouble): {evs}"
        revoked = set().union(*[set(p) for _t, kind, p in evs if kind == "revoke"])
        if strategy == "cooperative-sticky":
            # Incremental: give up only what moves to the newcomer, keep the rest.
            assert revoked, f"{m.name} revoked nothing when c joined: {evs}"
            assert revoked < owned_before[m.name], (
                f"{m.name} owned {sorted(owned_before[m.name])} and revoked {sorted(revoked)}: "
                f"not an incremental rebalance; events {evs}"
            )
            assert snap[m.name] <= owned_before[m.name], (
                f"{m.name} went from {sorted(owned_before[m.name])} to {sorted(snap[m.name])}: "
                "cooperative-sticky should only take partitions away here"
            )
            assert snap[m.name] == owned_before[m.name] - revoked, (m.name, evs, snap)
        else:
            # Eager: everything is revoked before the group re-forms.
            assert revoked >= owned_before[m.name], (
                f"{m.name} (eager) revoked {sorted(revoked)} of {sorted(owned_before[m.name])}; events {evs}"
            )
    assert snap["c"] == frozenset(range(6)) - snap["a"] - snap["b"]

    bg = BackgroundProducer(bs, t, after)
    pump([a, b, c], bg.done, 90, "the background producer")
    bg.join()

    wait_all_consumed([a, b, c], [v for _k, v in records], timeout=60)
    check_records_consistent([a, b, c], records)
    # c only ever read what it was given.
    assert {p for p, *_ in c.records} <= snap["c"]
    counts = consumed_values([a, b, c])
    assert set(counts) == {v for _k, v in records}


# -- 3. more members than partitions ----------------------------------------------


def test_group_more_members_than_partitions(weir, members):  # noqa: F811
    """Four members, two partitions: two members get one partition each, the
    other two get nothing (and read nothing)."""
    bs = weir.bootstrap
    t = topic_name("grp-idle")
    g = group_name("g-idle")
    create_topic(bs, t, partitions=2)
    ms = [members.add(g, [t], f"m{i}") for i in range(4)]
    snap = wait_stable(ms, range(2), sizes=[0, 0, 1, 1], what="2 busy and 2 idle members")

    records = keyed_records(200, keys=20)
    acks = produce(bs, t, records)
    assert {p for p, _ in acks} == {0, 1}
    wait_all_consumed(ms, [v for _k, v in records])
    check_records_consistent(ms, records)

    idle = [m for m in ms if not snap[m.name]]
    busy = [m for m in ms if snap[m.name]]
    assert len(idle) == 2 and len(busy) == 2, snap
    for m in idle:
        assert m.records == [], f"idle member {m.name} read {len(m.records)} records"
        assert m.owned() == frozenset(), f"idle member {m.name} now owns {sorted(m.owned())}"
    for m in busy:
        assert {p for p, *_ in m.records} == set(snap[m.name]), (m.name, snap)
        assert m.owned() == snap[m.name], f"{m.name}'s assignment changed: {snap} -> {sorted(m.owned())}"


# -- 4. independent groups ----------------------------------------------------------


@pytest.mark.weir_args(*GROUP_ARGS, "--offsets-topic-num-partitions", "1")
def test_two_groups_consume_independently(weir, members):  # noqa: F811
    """Group A reads and commits everything; group B then still reads every
    record from offset 0; afterwards both resume from their own offsets.
    (All groups share the single __consumer_offsets partition here.)"""
    bs = weir.bootstrap
    t = topic_name("grp-two")
    ga, gb = group_name("g-a"), group_name("g-b")
    create_topic(bs, t, partitions=3)
    records = keyed_records(500)
    produce(bs, t, records)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    no_auto = {"enable.auto.commit": False}

    a1 = members.add(ga, [t], "a1", **no_auto)
    a2 = members.add(ga, [t], "a2", **no_auto)
    wait_stable([a1, a2], range(3), what="group A's assignment")
    wait_all_consumed([a1, a2], [v for _k, v in records], what="group A reading every record")
    wait_stable([a1, a2], range(3), what="group A's assignment after reading")
    wait_caught_up([a1, a2], hw)
    commit_consumed(a1, t)
    commit_consumed(a2, t)
    got = committed(a1, t, range(3))
    assert {p: tp.offset for p, tp in got.items()} == hw, f"group A committed {got}, high watermarks {hw}"
    a1.close()
    a2.close()

    b1 = members.add(gb, [t], "b1", **no_auto)
    got = committed(b1, t, range(3))
    assert all(tp.offset < 0 for tp in got.values()), f"group B sees offsets it never committed: {got}"
    wait_all_consumed([b1], [v for _k, v in records], what="group B reading every record")
    for p in range(3):
        offs = [off for pp, off, *_ in b1.records if pp == p]
        assert offs and min(offs) == 0, f"group B started partition {p} at {min(offs, default=None)}, not 0"
    check_records_consistent([b1], records)

    # Both groups live at once: A resumes from its commit, B keeps going.
    a3 = members.add(ga, [t], "a3", **no_auto)
    wait_stable([a3], range(3), what="group A's new member owning everything")
    more = [(f"k{i % 37}", str(i)) for i in range(500, 600)]
    produce(bs, t, more)
    wait_all_consumed([a3], [v for _k, v in more], what="group A reading the new records")
    wait_all_consumed([b1], [v for _k, v in more], what="group B reading the new records")
    old = {v for _k, v in records}
    reread = [v for v in a3.values() if v in old]
    assert not reread, f"group A re-read {len(reread)} records before its commit, e.g. {reread[:10]}"
    check_records_consistent([a3, b1], records + more)

    hw2 = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    wait_caught_up([a3], hw2)
    wait_caught_up([b1], hw2)
    commit_consumed(a3, t)
    commit_consumed(b1, t)
    ca = committed(a3, t, range(3))
    cb = committed(b1, t, range(3))
    assert {p: tp.offset for p, tp in ca.items()} == hw2, ca
    assert {p: tp.offset for p, tp in cb.items()} == hw2, cb


# -- 5. committed offsets across restarts --------------------------------------------


@pytest.mark.parametrize("kill9", [False, True], ids=["sigterm", "sigkill"])
def test_committed_offsets_survive_restart(weir, members, kill9):  # noqa: F811
    """Read the first half of each partition with synchronous commits, stop
    the consumer, restart the broker; a new member of the group gets the
    committed offsets and metadata back from committed() and resumes exactly
    at them: nothing before re-read, nothing after skipped."""
    bs = weir.bootstrap
    t = topic_name("grp-restart")
    g = group_name("g-restart")
    create_topic(bs, t, partitions=3)
    records = keyed_records(600)
    produce(bs, t, records)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    half = {p: hw[p] // 2 for p in range(3)}
    assert all(h > 0 for h in half.values()), hw
    no_auto = {"enable.auto.commit": False}

    first = members.add(g, [t], "first", **no_auto)
    # Consume, committing (synchronously) as we go, up to each half mark.
    progress = {p: 0 for p in range(3)}  # next offset to read, capped at half
    commits = 0

    def until():
        nonlocal commits
        changed = {}
        for p, off, _k, _v in first.records:
            if off < half[p] and off + 1 > progress[p]:
                progress[p] = off + 1
                changed[p] = off + 1
        if changed:
            commit_sync(first, [TopicPartition(t, p, o) for p, o in changed.items()])
            commits += 1
        return progress == half

    pump([first], until, 60, "the first consumer reaching the half marks")
    assert commits >= 1
    # Final commit, with metadata, of exactly the half marks.
    meta = {p: f"weir-interop p{p} half={half[p]}" for p in range(3)}
    commit_sync(first, [TopicPartition(t, p, half[p], meta[p]) for p in range(3)])
    got = committed(first, t, range(3))
    assert {p: tp.offset for p, tp in got.items()} == half, got
    assert {p: tp.metadata for p, tp in got.items()} == meta, got
    first.close()

    rc = weir.restart(kill9=kill9)
    if not kill9:
        assert rc == 0, f"graceful shutdown (SIGTERM) exited with {rc}, expected 0"
    wait_for_partitions(bs, t, 3)

    second = members.add(g, [t], "second", **no_auto)
    got = committed(second, t, range(3))
    assert {p: tp.offset for p, tp in got.items()} == half, (
        f"committed offsets after {'SIGKILL' if kill9 else 'SIGTERM'} restart: {got}, expected {half}"
    )
    assert {p: tp.metadata for p, tp in got.items()} == meta, got

    def caught_up():
        last = {}
        for p, off, _k, _v in second.records:
            last[p] = max(last.get(p, -1), off)
        return all(last.get(p, -1) >= hw[p] - 1 for p in range(3))

    pump([second], caught_up, 60, "the second consumer reaching the high watermarks")
    for p in range(3):
        offs = [off for pp, off, *_ in second.records if pp == p]
        assert offs == list(range(half[p], hw[p])), (
            f"partition {p}: resumed reading {offs[:5]}...{offs[-5:]} ({len(offs)} records), "
            f"expected offsets {half[p]}..{hw[p] - 1}"
        )
    check_records_consistent([second], records)


# -- a member that dies without leaving ------------------------------------------------

CHILD_CONSUMER = r"""
import json, os, sys, time
from confluent_kafka import Consumer
bs, group, topic, out = sys.argv[1:5]
c = Consumer({
    "bootstrap.servers": bs, "group.id": group, "client.id": "doomed",
    "auto.offset.reset": "earliest", "enable.auto.commit": True,
    "auto.commit.interval.ms": 500, "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 100,
})
c.subscribe([topic])
last = None
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    c.poll(0.1)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        with open(out + ".tmp", "w") as f:
            json.dump(now, f)
        os.replace(out + ".tmp", out)
        last = now
"""


def test_group_member_crash_expires_after_session_timeout(weir, members, tmp_path):  # noqa: F811
    """A member in another process is SIGKILLed (no LeaveGroup): once its
    6 s session times out the broker rebalances and the survivor takes over
    its partitions and reads every record."""
    bs = weir.bootstrap
    t = topic_name("grp-crash")
    g = group_name("g-crash")
    create_topic(bs, t, partitions=4)
    records = keyed_records(400)
    produce(bs, t, records[:200])
    state_file = tmp_path / "child-assignment.json"
    with open(tmp_path / "child.stderr", "wb") as child_err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_CONSUMER, bs, g, t, str(state_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=child_err,
        )
    try:
        survivor = members.add(g, [t], "survivor")

        def child_owned():
            try:
                return frozenset(json.loads(state_file.read_text()))
            except (OSError, ValueError):
                return None

        st = {"snap": None, "since": 0.0}

        def split():
            co, so = child_owned(), survivor.owned()
            ok = co is not None and len(co) == 2 and len(so) == 2 and co | so == frozenset(range(4))
            snap = (co, so) if ok else None
            if snap is None or snap != st["snap"]:
                st["snap"], st["since"] = snap, time.monotonic()
                return False
            return time.monotonic() - st["since"] >= 1.5

        pump([survivor], split, 45, "a 2/2 split between the child process and the survivor")
        assert child.poll() is None, f"child consumer exited early with {child.returncode}"
        child_parts = sorted(st["snap"][0])
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed_at = time.monotonic()
        # What the dead member committed (final: it is dead, and the survivor
        # cannot commit these partitions before it is given them).
        dead = {p: tp.offset for p, tp in committed(survivor, t, child_parts).items()}
        mark = len(survivor.records)

        produce(bs, t, records[200:])
        hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(4)).items()}
        wait_stable([survivor], range(4), sizes=[4], timeout=45, hold=0.5,
                    what="the survivor owning every partition after the crash")
        took = time.monotonic() - killed_at
        wait_caught_up([survivor], hw)
        check_records_consistent([survivor], records)
        # The survivor resumed each of the dead member's partitions exactly at
        # its committed offset (or from 0 if it had committed none), and read
        # its own partitions from 0: together, every record.
        for p in range(4):
            offs = sorted({off for pp, off, *_ in survivor.records[mark:] if pp == p} if p in dead
                          else {off for pp, off, *_ in survivor.records if pp == p})
            start = max(dead.get(p, 0), 0)
            assert offs == list(range(start, hw[p])), (
                f"partition {p} ({'taken over' if p in dead else 'own'}): survivor read "
                f"{offs[:3]}...{offs[-3:]} ({len(offs)}), expected {start}..{hw[p] - 1}; dead member committed {dead}"
            )
        # Kafka keeps a silent member until its session times out (not on
        # disconnect), so this can't be much faster than 6 s; nor should it
        # take much longer.
        assert took < 6 + 20, f"takeover took {took:.1f}s after the kill (session.timeout.ms=6000)"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# -- a live group across a broker crash ------------------------------------------------


def test_live_group_survives_broker_crash(weir, members):  # noqa: F811
    """Two members with synchronously committed offsets stay subscribed while
    the broker is SIGKILLed and restarted: the group carries on without a
    rebalance, new records are all read, and nothing before the commit is read
    again."""
    bs = weir.bootstrap
    t = topic_name("grp-live-restart")
    g = group_name("g-live-restart")
    create_topic(bs, t, partitions=4)
    first = keyed_records(400)
    second = [(f"k{i % 37}", str(i)) for i in range(400, 600)]
    produce(bs, t, first)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(4)).items()}
    conf = {"enable.auto.commit": False}
    a = members.add(g, [t], "a", **conf)
    b = members.add(g, [t], "b", **conf)
    wait_stable([a, b], range(4), sizes=[2, 2])
    wait_all_consumed([a, b], [v for _k, v in first])
    wait_caught_up([a, b], hw)
    commit_consumed(a, t)
    commit_consumed(b, t)
    got = committed(a, t, range(4))
    assert {p: tp.offset for p, tp in got.items()} == hw, got
    mark = {m.name: len(m.records) for m in (a, b)}
    events = {m.name: len(m.events) for m in (a, b)}

    weir.restart(kill9=True)
    wait_for_partitions(bs, t, 4)
    produce(bs, t, second)
    wait_all_consumed([a, b], [v for _k, v in second], timeout=60, what="the records produced after the crash")
    wait_stable([a, b], range(4), sizes=[2, 2], what="the group re-formed after the crash")
    # The restarted coordinator loads the members from __consumer_offsets: they carry on in
    # their generation, without losing or moving a partition.
    moved = [(m.name, e) for m in (a, b) for e in m.events[events[m.name]:]]
    assert not moved, f"the group rebalanced across the coordinator's restart: {moved}"
    old = {v for _k, v in first}
    reread = [(m.name, r) for m in (a, b) for r in m.records[mark[m.name]:] if r[3] in old]
    assert not reread, f"{len(reread)} records before the committed offsets were read again, e.g. {reread[:5]}"
    check_records_consistent([a, b], first + second)
    got = committed(a, t, range(4))
    assert {p: tp.offset for p, tp in got.items()} == hw, f"committed offsets changed across the crash: {got}"
