"""The next-generation consumer group protocol (KIP-848) with librdkafka's
consumer (confluent-kafka, ``group.protocol=consumer``): the broker computes
the assignment and members move to it through ConsumerGroupHeartbeat, giving
partitions up before anyone else gets them.

- three members over six partitions; one leaves and one joins; no partition
  is ever owned by two members (checked on every poll round, from the
  clients' side, and in the broker's ConsumerGroupDescribe answers) and every
  record is read exactly once (each member commits what it read before its
  next poll, so a partition's next owner starts where the last one stopped);
- the group as the admin APIs show it: ConsumerGroupDescribe through
  confluent-kafka's AdminClient (type CONSUMER, members, assignor), ListGroups
  with the type filter, and ``weir groups describe``;
- a static member (``group.instance.id``) that leaves and comes back gets its
  partitions back without anyone else taking them meanwhile;
- the range assignor (``group.remote.assignor``), a regex subscription, and an
  unknown assignor refused with a clear, fatal error;
- a mixed group (Kafka 4's online upgrade): a classic group of two
  confluent-kafka members (eager range) becomes a consumer group when a
  consumer-protocol member joins; classic members (eager and cooperative) are
  assigned by the broker through JoinGroup and SyncGroup, leave and join
  beside new-protocol members, and still nothing is owned twice or read twice;
- weir-client (``weir consume --consumer-property group.protocol=consumer``)
  as a member beside a librdkafka member: the two split the partitions, and
  when weir's consumer leaves, the other takes over from its commits;
- a group outlives its coordinator: the broker is killed (SIGKILL) and
  restarted, the new coordinator reads the group back from
  `__consumer_offsets`, and its members carry on under the same epoch with
  the same partitions (none lost, none read twice);
- classic groups of kafka-python and confluent-kafka on the same broker and
  topic keep working beside a consumer-protocol group.
"""

import subprocess
import time
from collections import Counter

import pytest
from confluent_kafka import ConsumerGroupType, KafkaError, KafkaException, TopicPartition
from kafka import KafkaConsumer

from conftest import weir_bin
from group_helpers import (
    GROUP_ARGS,
    BackgroundProducer,
    Member,
    check_records_consistent,
    commit_sync,
    consumed_values,
    group_name,
    members,  # noqa: F401 - fixture
    pump,
    pump_for,
    wait_all_consumed,
    wait_stable,
)
from interop_helpers import admin, create_topic, keyed_records, produce, topic_name

# Heartbeats every 300 ms, so each step of a rebalance takes a fraction of a second.
KIP848_ARGS = (*GROUP_ARGS, "--group-consumer-heartbeat-interval-ms", "300")
pytestmark = pytest.mark.weir_args(*KIP848_ARGS)

CONSUMER = {"group.protocol": "consumer"}
EPOCH_RACES = (KafkaError.STALE_MEMBER_EPOCH, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS)


class CommittingMember(Member):
    """A consumer-protocol member that commits, synchronously, every record it
    read before it polls again: whoever owns a partition next starts exactly
    where this member stopped."""

    def __init__(self, bootstrap, group, topics, name, classic=None, **conf):
        # classic: None for the consumer protocol, else a classic assignor (range, ...).
        protocol = CONSUMER if classic is None else {"partition.assignment.strategy": classic}
        super().__init__(bootstrap, group, topics, name, **protocol, **{"enable.auto.commit": False}, **conf)

    def poll(self, timeout: float = 0.05, max_messages: int = 500) -> int:
        before = len(self.records)
        n = super().poll(timeout, max_messages)
        if n:
            last: dict[int, int] = {}
            for p, off, _k, _v in self.records[before:]:
                last[p] = max(last.get(p, -1), off)
            offsets = [TopicPartition(self.topics[0], p, off + 1) for p, off in last.items()]
            self._commit(offsets)
        return n

    def _commit(self, offsets):
        # A commit that raced the member's own epoch (or generation) bump is retried at the
        # new one.
        commit_sync(self, offsets, timeout=20, also_retry=EPOCH_RACES, backoff=0.05)


def describe_consumer_group(bs: str, group: str):
    adm = admin(bs)
    return adm.describe_consumer_groups([group])[group].result(timeout=15)


def broker_owners(bs: str, group: str) -> dict:
    """partition -> member ids holding it, from the broker's ConsumerGroupDescribe."""
    d = describe_consumer_group(bs, group)
    owners: dict = {}
    for m in d.members:
        for tp in m.assignment.topic_partitions:
            owners.setdefault(tp.partition, []).append(m.member_id)
    return owners


def test_members_leave_and_join_nothing_read_twice(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848")
    g = group_name("g-kip848")
    create_topic(bs, t, partitions=6)
    records = keyed_records(1500, keys=61)
    before, during, after = records[:600], records[600:1000], records[1000:]
    acks = produce(bs, t, before)
    assert {p for p, _ in acks} == set(range(6))

    def add(name):
        m = CommittingMember(bs, g, [t], name)
        members.append(m)
        return m

    a, b, c = add("a"), add("b"), add("c")
    snap = wait_stable([a, b, c], range(6), sizes=[2, 2, 2], what="three members over six partitions")

    # The broker's view agrees, and no partition is held twice there either.
    d = describe_consumer_group(bs, g)
    assert d.type == ConsumerGroupType.CONSUMER, d.type
    assert d.partition_assignor == "uniform", d.partition_assignor
    assert str(d.state).upper().endswith("STABLE"), d.state
    assert sorted(m.client_id for m in d.members) == ["a", "b", "c"]
    owners = broker_owners(bs, g)
    assert sorted(owners) == list(range(6)) and all(len(v) == 1 for v in owners.values()), owners

    bg = BackgroundProducer(bs, t, during)
    pump([a, b, c], bg.done, 90, "the background producer")
    bg.join()

    # b leaves: a and c take its partitions; nobody else's move.
    b.close()
    snap2 = wait_stable([a, c], range(6), sizes=[3, 3], what="two members after b left")
    for m in (a, c):
        assert snap[m.name] <= snap2[m.name], f"{m.name} lost partitions when b left: {snap} -> {snap2}"
        lost = [e for e in m.events if e[1] == "lost"]
        assert not lost, f"{m.name} was fenced: {m.events}"

    # d joins: it gets two partitions, each given up by a or c first.
    d_member = add("d")
    snap3 = wait_stable([a, c, d_member], range(6), sizes=[2, 2, 2], what="three members after d joined")
    assert snap3["a"] <= snap2["a"] and snap3["c"] <= snap2["c"], (snap2, snap3)
    owners = broker_owners(bs, g)
    assert all(len(v) == 1 for v in owners.values()), owners

    produce(bs, t, after)
    everyone = [a, b, c, d_member]
    wait_all_consumed([a, c, d_member], [v for _k, v in after], timeout=60, what="the records after d joined")
    wait_all_consumed(everyone, [v for _k, v in records], timeout=60)
    check_records_consistent(everyone, records)
    counts = consumed_values(everyone)
    twice = {v: n for v, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} records read more than once, e.g. {list(twice.items())[:10]}"
    assert set(counts) == {v for _k, v in records}

    # The group as the tools show it.
    adm = admin(bs)  # kept: a dropped AdminClient fails its pending requests
    listed = adm.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=15)
    assert g in {x.group_id for x in listed.valid}, (listed.valid, listed.errors)
    classic = adm.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(timeout=15)
    assert g not in {x.group_id for x in classic.valid}
    out = subprocess.run(
        [str(weir_bin()), "groups", "describe", "--bootstrap-server", bs, "--group", g],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "a consumer group (assignor uniform" in out.stdout, out.stdout
    listed = subprocess.run(
        [str(weir_bin()), "groups", "list", "--bootstrap-server", bs],
        capture_output=True, text=True, timeout=30,
    )
    assert f"{g}\tStable\tconsumer" in listed.stdout, listed.stdout


def test_static_member_comes_back_to_its_partitions(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848-static")
    g = group_name("g-static")
    create_topic(bs, t, partitions=4)
    s1 = members.add(g, [t], "s1", **CONSUMER, **{"group.instance.id": "i1"})
    s2 = members.add(g, [t], "s2", **CONSUMER, **{"group.instance.id": "i2"})
    snap = wait_stable([s1, s2], range(4), sizes=[2, 2], what="two static members")
    # s2 leaves for a while (epoch -2): its partitions stay its own, nobody takes them.
    s2.close()
    pump_for([s1], 2.0)
    assert s1.owned() == snap["s1"], f"s1 took s2's partitions while s2 was away: {sorted(s1.owned())}"
    owners = broker_owners(bs, g)
    assert sorted(owners) == list(range(4)), owners
    # Back under the same instance id (a new member id): the same partitions.
    s2b = members.add(g, [t], "s2b", **CONSUMER, **{"group.instance.id": "i2"})
    snap2 = wait_stable([s1, s2b], range(4), sizes=[2, 2], what="s2 back")
    assert snap2["s2b"] == snap["s2"], (snap, snap2)


def test_range_assignor_regex_subscription_and_unknown_assignor(weir, members):  # noqa: F811
    bs = weir.bootstrap
    prefix = topic_name("kip848-rx")
    ta, tb = f"{prefix}-a", f"{prefix}-b"
    create_topic(bs, ta, partitions=4)
    create_topic(bs, tb, partitions=4)
    g = group_name("g-range")
    conf = {**CONSUMER, "group.remote.assignor": "range"}
    m1 = members.add(g, [f"^{prefix}-.*"], "r1", **conf)
    m2 = members.add(g, [f"^{prefix}-.*"], "r2", **conf)

    def both_topics_split():
        owned = [{(tp.topic, tp.partition) for tp in m.c.assignment()} for m in (m1, m2)]
        return (
            len(owned[0]) == 4 and len(owned[1]) == 4 and not owned[0] & owned[1]
            and all({t for t, _ in o} == {ta, tb} for o in owned)
        )

    pump([m1, m2], both_topics_split, 45, "range over two topics matched by a pattern")
    d = describe_consumer_group(bs, g)
    assert d.partition_assignor == "range"
    for m in d.members:
        # Range: the same contiguous partitions of both topics (co-partitioned).
        by_topic: dict = {}
        for tp in m.assignment.topic_partitions:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        assert by_topic[ta] == by_topic[tb] and by_topic[ta] in ({0, 1}, {2, 3}), by_topic

    bad = Member(bs, group_name("g-bad"), [ta], "bad", **CONSUMER, **{"group.remote.assignor": "bogus"})
    try:
        deadline = time.monotonic() + 30
        fatal = None
        while fatal is None and time.monotonic() < deadline:
            try:
                bad.poll(0.2)
            except KafkaException as e:
                fatal = e.args[0]
            # librdkafka hands the fatal error over as a message error (_FATAL) or to error_cb.
            fatal = fatal or next(
                (e for e in bad.errors + bad.msg_errors if e.fatal() or e.code() == KafkaError._FATAL),
                None,
            )
        assert fatal is not None, f"no fatal error for an unknown assignor: {bad.errors} {bad.msg_errors}"
        assert "assignor" in str(fatal).lower(), str(fatal)
    finally:
        bad.close()


def test_classic_groups_unaffected_beside_a_consumer_group(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848-mixed")
    create_topic(bs, t, partitions=3)
    records = keyed_records(300, keys=17)
    produce(bs, t, records)
    values = [v for _k, v in records]

    modern = members.add(group_name("g-modern"), [t], "modern", **CONSUMER)
    classic = members.add(group_name("g-classic"), [t], "classic")
    wait_all_consumed([modern], values, what="the consumer-protocol group")
    wait_all_consumed([classic], values, what="the classic confluent-kafka group")

    kp = KafkaConsumer(
        t, bootstrap_servers=bs, group_id=group_name("g-kp"), auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
    )
    try:
        seen = Counter()
        for msg in kp:
            seen[msg.value.decode()] += 1
            if len(seen) == len(values):
                break
        assert set(seen) == set(values), f"kafka-python read {len(seen)} of {len(values)}"
    finally:
        kp.close()


def test_mixed_group_upgrades_online(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848-mixed-group")
    g = group_name("g-mixed")
    create_topic(bs, t, partitions=6)
    records = keyed_records(1500, keys=61)
    before, during, after = records[:600], records[600:1000], records[1000:]
    produce(bs, t, before)

    def add(name, classic=None):
        m = CommittingMember(bs, g, [t], name, classic=classic)
        members.append(m)
        return m

    c1 = add("c1", classic="range")
    c2 = add("c2", classic="range")
    snap = wait_stable([c1, c2], range(6), sizes=[3, 3], what="a classic group of two")
    adm = admin(bs)
    classic = adm.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(timeout=15)
    assert g in {x.group_id for x in classic.valid}, classic.valid

    # A consumer-protocol member joins: the group is upgraded, the classic members keep
    # most of what they had and give the newcomer its share.
    n1 = add("n1")
    snap2 = wait_stable([c1, c2, n1], range(6), sizes=[2, 2, 2], what="the upgraded group of three")
    assert snap2["c1"] <= snap["c1"], (snap, snap2)
    d = describe_consumer_group(bs, g)
    assert d.type == ConsumerGroupType.CONSUMER, d.type
    assert sorted(m.client_id for m in d.members) == ["c1", "c2", "n1"]

    bg = BackgroundProducer(bs, t, during)
    pump([c1, c2, n1], bg.done, 90, "the background producer")
    bg.join()

    # A classic member leaves; a cooperative classic member (which a classic group of eager
    # members could not take) and a second consumer-protocol member join.
    c2.close()
    wait_stable([c1, n1], range(6), sizes=[3, 3], what="c1 and n1 after c2 left")
    c3 = add("c3", classic="cooperative-sticky")
    n2 = add("n2")
    wait_stable([c1, n1, c3, n2], range(6), sizes=[1, 1, 2, 2], what="c1, n1, c3 and n2")
    owners = broker_owners(bs, g)
    assert sorted(owners) == list(range(6)) and all(len(v) == 1 for v in owners.values()), owners

    produce(bs, t, after)
    everyone = [c1, c2, n1, c3, n2]
    wait_all_consumed(everyone, [v for _k, v in records], timeout=60)
    check_records_consistent(everyone, records)
    counts = consumed_values(everyone)
    twice = {v: n for v, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} records read more than once, e.g. {list(twice.items())[:10]}"
    for m in (c1, n1):
        lost = [e for e in m.events if e[1] == "lost"]
        assert not lost, f"{m.name} was fenced: {m.events}"


def test_weir_client_speaks_the_consumer_protocol(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848-weir")
    g = group_name("g-weir")
    create_topic(bs, t, partitions=4)
    records = keyed_records(800, keys=41)
    produce(bs, t, records)
    n1 = CommittingMember(bs, g, [t], "n1")
    members.append(n1)
    wait_stable([n1], range(4), sizes=[4], what="n1 alone")
    weir_consumer = subprocess.Popen(
        [str(weir_bin()), "consume", "--bootstrap-server", bs, "--topic", t, "--group", g,
         "--from-beginning", "--timeout-ms", "6000", "--format", "json",
         "--consumer-property", "group.protocol=consumer",
         "--consumer-property", "auto.commit.interval.ms=200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The broker splits the partitions between the two, and n1 gives two up first.
        def split():
            if len(n1.owned()) != 2:
                return False
            owners = broker_owners(bs, g)
            return sorted(owners) == list(range(4)) and all(len(v) == 1 for v in owners.values())

        pump([n1], split, 45, "n1 and weir's consumer sharing four partitions")
        d = describe_consumer_group(bs, g)
        assert len(d.members) == 2, d.members
        weir_parts = {tp.partition for m in d.members if m.client_id != "n1" for tp in m.assignment.topic_partitions}
        assert weir_parts == set(range(4)) - n1.owned(), (weir_parts, n1.owned())
        more = [(f"k{i % 41}", f"more-{i}") for i in range(300)]
        produce(bs, t, more)
        # weir's consumer stops after 6 s without records, commits and leaves; n1 takes over.
        pump([n1], lambda: weir_consumer.poll() is not None, 60, "weir's consumer to finish")
        out, err = weir_consumer.communicate(timeout=10)
        assert weir_consumer.returncode == 0, err
    finally:
        if weir_consumer.poll() is None:
            weir_consumer.kill()
            weir_consumer.wait()
    import json

    weir_values = [json.loads(line)["value"] for line in out.splitlines() if line.strip()]
    assert weir_values, "weir's consumer read nothing"
    wait_stable([n1], range(4), sizes=[4], what="n1 alone again")
    everything = records + more
    pump([n1], lambda: len(set(n1.values()) | set(weir_values)) >= len(everything), 45, "every record")
    seen = Counter(n1.values()) + Counter(weir_values)
    assert set(seen) == {v for _k, v in everything}
    twice = {v: n for v, n in seen.items() if n > 1}
    assert not twice, f"{len(twice)} records read twice, e.g. {list(twice.items())[:10]}"


def test_group_outlives_its_coordinator(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("kip848-restart")
    g = group_name("g-restart")
    create_topic(bs, t, partitions=4)
    records = keyed_records(600, keys=23)
    produce(bs, t, records)
    a = CommittingMember(bs, g, [t], "a")
    b = CommittingMember(bs, g, [t], "b")
    members.extend([a, b])
    snap = wait_stable([a, b], range(4), sizes=[2, 2], what="two members")
    before = describe_consumer_group(bs, g)
    epochs = {m.member_id: m.member_epoch for m in before.members} if hasattr(before.members[0], "member_epoch") else None
    marks = {m.name: len(m.events) for m in (a, b)}
    weir.restart(kill9=True)
    more = [(f"k{i % 23}", f"after-{i}") for i in range(400)]
    produce(bs, t, more)
    everything = records + more
    wait_all_consumed([a, b], [v for _k, v in everything], timeout=60)
    for m in (a, b):
        lost = [e for e in m.events[marks[m.name]:] if e[1] in ("lost", "revoke")]
        assert not lost, f"{m.name} lost or gave up partitions across the restart: {m.events}"
        assert m.owned() == snap[m.name], (m.name, sorted(m.owned()), snap)
    after = describe_consumer_group(bs, g)
    assert sorted(m.member_id for m in after.members) == sorted(m.member_id for m in before.members)
    if epochs is not None:
        assert {m.member_id: m.member_epoch for m in after.members} == epochs
    counts = consumed_values([a, b])
    twice = {v: n for v, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} records read twice, e.g. {list(twice.items())[:10]}"
