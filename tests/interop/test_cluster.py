"""A three-node cluster (cluster.py, ``cluster3`` fixture) seen through
confluent-kafka: replica placement, losing a broker, losing the active
controller, group consumption when the group coordinator is another broker
than the one bootstrapped at, and ElectLeaders; partition reassignment through
kafka-python; a cluster of three controller-only and two broker-only nodes
(``split_cluster``); and rack-aware placement on four brokers (``cluster4``).

"Broker loss" here checks metadata (fencing, leader election, ISR); producing
through a leader change is test_replication.py's.  A hung (SIGSTOPped) node
is checked too.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from interop_helpers import produce, topic_name

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 50  # weir's default offsets.topic.num.partitions

# Errors a CreateTopics may meet while the controller quorum changes leader;
# worth retrying until the deadline.
RETRIABLE_CREATE = {
    KafkaError.NOT_CONTROLLER,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD,
}


# -- helpers ------------------------------------------------------------------


def admin_at(cluster, *ids) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_of(*ids), "socket.timeout.ms": 5000})


def show_topic(md, topic):
    """A compact, readable form of one topic of a metadata response, for
    assertion messages: {partition: (leader, replicas, isr, error)}."""
    tm = md.topics.get(topic)
    if tm is None:
        return f"<{topic} absent>"
    if tm.error is not None:
        return f"<{topic} error {tm.error.name()}>"
    return {
        p.id: (p.leader, list(p.replicas), list(p.isrs), p.error.name() if p.error else None)
        for p in sorted(tm.partitions.values(), key=lambda p: p.id)
    }


def poll_until(desc: str, check, timeout: float, interval: float = 0.2):
    """Call ``check()`` until it returns (True, state) or ``timeout`` passes;
    then fail with ``desc`` and the last state.  ``check`` may raise
    KafkaException (e.g. a node not answering yet): that counts as not yet.
    Returns (state, seconds taken)."""
    start = time.monotonic()
    deadline = start + timeout
    last = None
    while True:
        try:
            ok, last = check()
            if ok:
                return last, time.monotonic() - start
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if err is not None and err.code() == KafkaError._PARTIAL:
                last = "a Metadata response listing no brokers and no topics (librdkafka: _PARTIAL)"
            else:
                last = f"KafkaException: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{desc}: not reached within {timeout}s; last state: {last}")
        time.sleep(interval)


def create_topic(cluster, via, topic: str, partitions: int, rf: int, timeout: float = 15) -> float:
    """CreateTopics through an AdminClient bootstrapped at node(s) ``via``
    only, retrying retriable errors until ``timeout``.  A TOPIC_ALREADY_EXISTS
    after a failed attempt counts as success (the earlier attempt may have
    gone through).  Returns the seconds taken."""
    via = via if isinstance(via, (list, tuple)) else [via]
    a = admin_at(cluster, *via)
    start = time.monotonic()
    deadline = start + timeout
    errors = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"creating {topic} ({partitions} partitions, RF {rf}) via node(s) {via} "
                f"did not succeed within {timeout}s; errors: {errors}"
            )
        per_try = max(1.0, min(5.0, left))
        fut = a.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=rf)],
            request_timeout=per_try,
            operation_timeout=per_try,
        )[topic]
        try:
            fut.result(timeout=per_try + 5)
            return time.monotonic() - start
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS and errors:
                return time.monotonic() - start
            if err.code() in RETRIABLE_CREATE or err.retriable():
                errors.append(err.name())
                time.sleep(0.2)
                continue
            raise AssertionError(
                f"creating {topic} ({partitions} partitions, RF {rf}) via node(s) {via} failed: "
                f"{err.name()}: {err.str()} (earlier retriable errors: {errors})"
            ) from e


def wait_topic_led(cluster, topic: str, partitions: int, via_ids=None, timeout: float = 10):
    """Wait until every node in ``via_ids`` (default: all live nodes) shows
    ``topic`` with ``partitions`` partitions, each led by a live broker.
    Returns the metadata from the last of them."""
    live = set(cluster.live_ids())

    def check():
        state = {}
        md = None
        ok = True
        for v in via_ids or cluster.live_ids():
            md = cluster.metadata(via=v, topic=topic)
            tm = md.topics.get(topic)
            state[v] = show_topic(md, topic)
            if (
                tm is None
                or tm.error is not None
                or len(tm.partitions) != partitions
                or any(p.error is not None or p.leader not in live for p in tm.partitions.values())
            ):
                ok = False
        return ok, (md if ok else state)

    md, _ = poll_until(f"{topic} with {partitions} partitions all led by live brokers {sorted(live)}",
                       check, timeout)
    return md


def java_string_hash_partition(s: str, partitions: int) -> int:
    """Kafka's group -> __consumer_offsets partition: abs(String.hashCode) %
    partitions, with Utils.abs mapping Integer.MIN_VALUE to 0."""
    b = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(b), 2):
        h = (31 * h + int.from_bytes(b[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    h = 0 if h == -(1 << 31) else abs(h)
    return h % partitions


# -- tests --------------------------------------------------------------------


def test_replica_placement(cluster3):
    c = cluster3
    topics = {topic_name("place6"): (6, 3), topic_name("place7"): (7, 2)}
    a = admin_at(c, 1)
    futs = a.create_topics(
        [NewTopic(t, num_partitions=p, replication_factor=rf) for t, (p, rf) in topics.items()],
        request_timeout=15,
        operation_timeout=15,
    )
    for t, f in futs.items():
        f.result(timeout=20)

    for t, (parts, rf) in topics.items():
        md = wait_topic_led(c, t, parts)
        assert set(md.brokers) == {1, 2, 3}, f"brokers listed: {sorted(md.brokers)}"
        shown = show_topic(md, t)
        leaders = Counter()
        for p in md.topics[t].partitions.values():
            reps = list(p.replicas)
            assert len(reps) == rf, f"{t}-{p.id}: {len(reps)} replicas {reps}, expected RF {rf}; {shown}"
            assert len(set(reps)) == rf, f"{t}-{p.id}: replicas {reps} not distinct brokers; {shown}"
            assert set(reps) <= {1, 2, 3}, f"{t}-{p.id}: replicas {reps} on unknown brokers; {shown}"
            assert p.leader in reps, f"{t}-{p.id}: leader {p.leader} not a replica {reps}; {shown}"
            assert p.leader in p.isrs, f"{t}-{p.id}: leader {p.leader} not in ISR {list(p.isrs)}; {shown}"
            assert set(p.isrs) <= set(reps), f"{t}-{p.id}: ISR {list(p.isrs)} not within replicas; {shown}"
            leaders[p.leader] += 1
        cap = math.ceil(parts / 3)
        assert max(leaders.values()) <= cap, (
            f"{t}: leaders not spread (partitions led per broker {dict(leaders)}, "
            f"at most {cap} each expected); {shown}"
        )

        # Every node serves the same assignment.
        views = {v: show_topic(c.metadata(via=v, topic=t), t) for v in c.ids}
        assert views[1] == views[2] == views[3], f"{t}: nodes disagree: {views}"

    # More replicas than brokers: refused, and nothing is created.
    bad = topic_name("place-rf4")
    fut = a.create_topics(
        [NewTopic(bad, num_partitions=3, replication_factor=4)], request_timeout=15, operation_timeout=15
    )[bad]
    with pytest.raises(KafkaException) as exc:
        fut.result(timeout=20)
    err = exc.value.args[0]
    assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR, (
        f"RF 4 on 3 brokers failed with {err.name()} ({err.str()}), expected INVALID_REPLICATION_FACTOR"
    )
    md = c.metadata(via=1)
    assert bad not in md.topics, f"{bad} exists after a refused create: {show_topic(md, bad)}"


def test_broker_loss_and_return(cluster3):
    c = cluster3
    moving, single = topic_name("moving"), topic_name("single")
    create_topic(c, 1, moving, 6, 3)
    create_topic(c, 1, single, 3, 1)
    wait_topic_led(c, moving, 6)
    md = wait_topic_led(c, single, 3)
    before = {moving: show_topic(c.metadata(topic=moving), moving), single: show_topic(md, single)}

    leads = Counter(p.leader for p in c.metadata(topic=moving).topics[moving].partitions.values())
    victim = max(leads, key=lambda b: (leads[b], -b))  # a broker leading "moving" partitions
    assert leads[victim] > 0, before
    hosted = [p.id for p in md.topics[single].partitions.values() if list(p.replicas) == [victim]]
    assert hosted, f"broker {victim} hosts no partition of {single} (RF 1, 3 partitions): {before}"
    for pid in hosted:
        assert md.topics[single].partitions[pid].leader == victim, before

    c.kill(victim)
    survivors = [i for i in c.ids if i != victim]

    def after_loss():
        state, ok = {}, True
        for v in survivors:
            md = c.metadata(via=v)
            state[v] = {
                "brokers": sorted(md.brokers),
                moving: show_topic(md, moving),
                single: show_topic(md, single),
            }
            if set(md.brokers) != set(survivors):
                ok = False
            tm = md.topics.get(moving)
            if tm is None or len(tm.partitions) != 6:
                ok = False
            else:
                for p in tm.partitions.values():
                    if (
                        p.error is not None
                        or p.leader not in survivors
                        or p.leader not in p.isrs
                        or victim in p.isrs
                    ):
                        ok = False
            ts = md.topics.get(single)
            if ts is None or len(ts.partitions) != 3:
                ok = False
            else:
                for p in ts.partitions.values():
                    if p.id in hosted:
                        if p.leader != -1 or p.error is None or p.error.code() != KafkaError.LEADER_NOT_AVAILABLE:
                            ok = False
                    elif p.error is not None or p.leader not in survivors:
                        ok = False
        return ok, state

    _, took = poll_until(
        f"after kill -9 of broker {victim}: only brokers {survivors} listed, every {moving} partition "
        f"led by a live ISR member with {victim} out of every ISR, {single} partition(s) {hosted} "
        f"LEADER_NOT_AVAILABLE (state before: {before})",
        after_loss,
        timeout=10,
    )
    print(f"broker {victim} fenced and leaders moved in {took:.1f}s")

    c.start(victim)

    def after_return():
        state, ok = {}, True
        for v in c.ids:
            md = c.metadata(via=v)
            state[v] = {"brokers": sorted(md.brokers), single: show_topic(md, single)}
            if set(md.brokers) != {1, 2, 3}:
                ok = False
            ts = md.topics.get(single)
            if ts is None or len(ts.partitions) != 3:
                ok = False
                continue
            for p in ts.partitions.values():
                want = victim if p.id in hosted else None
                if p.error is not None or (want is not None and p.leader != want) or p.leader not in (1, 2, 3):
                    ok = False
        return ok, state

    _, took = poll_until(
        f"after restarting broker {victim}: all 3 brokers listed and {single} partition(s) {hosted} "
        f"led by {victim} again",
        after_return,
        timeout=10,
    )
    print(f"broker {victim} back and leading {single}{hosted} in {took:.1f}s")


def active_controller(cluster):
    """The active controller the live nodes agree on, by DescribeQuorum; None
    when the binary does not implement DescribeQuorum (it closes the
    connection), so the tests still run against older builds."""
    try:
        cluster.quorum_leader(cluster.live_ids()[0])
    except ConnectionError:
        return None
    return cluster.wait_for_quorum_leader(timeout=10)


def test_controller_loss_elects_new_controller(cluster3):
    """Kill each node in turn (one of them is the active controller), create
    a topic through a survivor, then bring the node back.  Where the binary
    answers DescribeQuorum, also check that the survivors agree on a new
    active controller whenever the old one was killed."""
    c = cluster3
    timings = {}
    for victim in c.ids:
        c.wait_for_brokers([1, 2, 3], timeout=10)
        controller = active_controller(c)
        c.kill(victim)
        survivor = next(i for i in c.ids if i != victim)
        t = topic_name(f"ctl-loss-{victim}")
        took = create_topic(c, survivor, t, 3, 2, timeout=15)
        wait_topic_led(c, t, 3, timeout=10)
        if controller is not None:
            now = c.wait_for_quorum_leader(timeout=10, exclude=[victim])
            if controller != victim:
                assert now == controller, (
                    f"killing node {victim} moved the active controller from {controller} to {now}"
                )
        c.start(victim)
        _, back = poll_until(
            f"node {victim} listed again after restart",
            lambda: (lambda md: (set(md.brokers) == {1, 2, 3}, sorted(md.brokers)))(c.metadata(via=victim)),
            timeout=10,
        )
        timings[victim] = (round(took, 1), round(back, 1))
    c.wait_for_brokers([1, 2, 3], timeout=10)
    print(f"per victim (create seconds, rejoin seconds): {timings}")


@pytest.mark.weir_args("--group-initial-rebalance-delay-ms", "200")
def test_group_consume_with_coordinator_elsewhere(cluster3):
    c = cluster3
    t = topic_name("grp")
    create_topic(c, 1, t, 3, 1)
    md = wait_topic_led(c, t, 3)
    assert len({p.leader for p in md.topics[t].partitions.values()}) > 1, (
        f"{t} is all on one broker: {show_topic(md, t)}"
    )

    records = [(f"k{i % 7}", str(i)) for i in range(100)]
    acks = produce(c.bootstrap_of(1), t, records, conf={"acks": "all"}, timeout=30)
    per_partition = Counter(p for p, _ in acks)

    # Make __consumer_offsets exist (FindCoordinator creates it), then pick a
    # group whose coordinator is not node 1, the only node the consumer is
    # bootstrapped at.
    a = admin_at(c, 1)
    try:
        a.describe_consumer_groups(["weir-probe"], request_timeout=10)["weir-probe"].result(timeout=15)
    except KafkaException:
        pass  # only creating the offsets topic matters here
    omd = wait_topic_led(c, OFFSETS_TOPIC, OFFSETS_PARTITIONS, timeout=15)
    oleaders = {p.id: p.leader for p in omd.topics[OFFSETS_TOPIC].partitions.values()}
    group = coordinator = None
    for n in range(1000):
        g = f"weir-cluster-grp-{n}"
        leader = oleaders[java_string_hash_partition(g, OFFSETS_PARTITIONS)]
        if leader != 1:
            group, coordinator = g, leader
            break
    assert group is not None, f"no {OFFSETS_TOPIC} partition led by a node other than 1: {oleaders}"

    cons = Consumer({
        "bootstrap.servers": c.bootstrap_of(1),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "socket.timeout.ms": 5000,
        "fetch.wait.max.ms": 100,
    })
    got, errors = [], []
    try:
        cons.subscribe([t])
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            for m in cons.consume(num_messages=100, timeout=0.5):
                if m.error() is not None:
                    if m.error().fatal():
                        raise KafkaException(m.error())
                    errors.append(m.error().name())
                    continue
                got.append((m.partition(), m.offset(), m.value().decode()))
        assert len(got) == 100, (
            f"group {group} (coordinator {coordinator}) read {len(got)} of 100 records within 30s; "
            f"per partition {Counter(p for p, _, _ in got)}, expected {dict(per_partition)}; "
            f"errors {errors[:10]}"
        )
        assert sorted(int(v) for _, _, v in got) == list(range(100)), "records read back differ"
        cons.commit(asynchronous=False)
        committed = cons.committed([TopicPartition(t, p) for p in range(3)], timeout=10)
        offs = {tp.partition: tp.offset for tp in committed}
        want = {p: per_partition.get(p, 0) for p in range(3)}
        assert all(offs[p] == want[p] for p in range(3) if want[p]), (
            f"committed offsets {offs}, expected {want} (coordinator {coordinator})"
        )
    finally:
        cons.close()

    desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    assert desc.coordinator.id == coordinator, (
        f"group {group}: DescribeGroups coordinator {desc.coordinator.id}, expected {coordinator}, "
        f"the leader of its {OFFSETS_TOPIC} partition"
    )


def test_paused_node_is_fenced_and_returns(cluster3):
    """SIGSTOP each node in turn (one of them is the active controller): the
    others must fence it, and only it, within 10 s, and take it back within
    10 s of SIGCONT."""
    c = cluster3
    for victim in c.ids:
        c.wait_for_brokers([1, 2, 3], timeout=10)
        c.pause(victim)
        survivors = [i for i in c.ids if i != victim]
        c.wait_for_brokers(survivors, timeout=10)
        c.resume(victim)
        c.wait_for_brokers([1, 2, 3], timeout=10)


def elect(cluster, via, election_type, partitions):
    """ElectLeaders through confluent-kafka's admin client at node ``via``:
    {(topic, partition): error code name or None}."""
    adm = admin_at(cluster, via)  # kept alive until the answer is in
    fut = adm.elect_leaders(election_type, partitions)
    out = {}
    for tp, err in fut.result(timeout=20).items():
        code = None
        if err is not None:
            code = (err.args[0] if isinstance(err, KafkaException) else err).name()
        out[(tp.topic, tp.partition)] = code
    return out


def test_elect_leaders(cluster3):
    """ElectLeaders through a real admin client.  A partition on brokers
    [a, b] loses a (b leads, a leaves the ISR): a preferred election is
    refused (a is down) and an unclean one is not needed (b leads).  Then b
    dies and a returns out of sync: the partition is offline, since unclean
    election is off, and an unclean election makes a leader again with a
    record written before readable."""
    c = cluster3
    a, b = 1, 2
    topic, other = topic_name("elect"), topic_name("elect-other")
    adm = admin_at(c, 3)
    futs = adm.create_topics(
        [
            NewTopic(topic, num_partitions=1, replica_assignment=[[a, b]]),
            NewTopic(other, num_partitions=1, replica_assignment=[[3, a]]),
        ],
        request_timeout=15,
    )
    for f in futs.values():
        f.result(timeout=20)
    wait_topic_led(c, topic, 1)
    wait_topic_led(c, other, 1)
    acks = produce(c.bootstrap_of(a), topic, [("k", "written-by-a")], timeout=20)
    assert acks == [(0, 0)], acks

    tp, tp_other = TopicPartition(topic, 0), TopicPartition(other, 0)
    # Both partitions are led by their preferred replica: nothing to do, and
    # an unknown partition is named as such.
    got = elect(c, 3, ElectionType.PREFERRED, [tp, tp_other, TopicPartition(topic, 7)])
    assert got == {
        (topic, 0): "ELECTION_NOT_NEEDED",
        (other, 0): "ELECTION_NOT_NEEDED",
        (topic, 7): "UNKNOWN_TOPIC_OR_PART",  # librdkafka's name
    }, got

    def led_by(want, isr):
        def check():
            md = c.metadata(via=3, topic=topic)
            p = md.topics[topic].partitions.get(0) if topic in md.topics else None
            state = show_topic(md, topic)
            return p is not None and p.leader == want and sorted(p.isrs) == isr, state

        return check

    c.kill(a)
    poll_until(f"{topic} led by {b} alone after {a} died", led_by(b, [b]), timeout=10)
    # a is down: its preferred leadership cannot be given back, and b leads,
    # so no unclean election is needed.
    got = elect(c, 3, ElectionType.PREFERRED, [tp])
    assert got == {(topic, 0): "PREFERRED_LEADER_NOT_AVAILABLE"}, got
    got = elect(c, 3, ElectionType.UNCLEAN, [tp])
    assert got == {(topic, 0): "ELECTION_NOT_NEEDED"}, got

    # b dies and a returns: a is live but was never back in sync, so the
    # partition stays offline until an unclean election.
    c.kill(b)
    c.start(a)
    c.wait_for_brokers([1, 3], timeout=15)
    poll_until(f"{topic} offline (ISR [{b}]) after {b} died", led_by(-1, [b]), timeout=10)
    got = elect(c, 3, ElectionType.UNCLEAN, None)
    assert got.get((topic, 0)) is None and (topic, 0) in got, got
    poll_until(f"{topic} led by {a} after the unclean election", led_by(a, [a]), timeout=10)

    cons = Consumer({
        "bootstrap.servers": c.bootstrap_of(3),
        "group.id": topic,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        cons.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 15
        seen = []
        while not seen and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m.value())
        assert seen == [b"written-by-a"], seen
    finally:
        cons.close()


def test_separate_controllers_and_brokers(split_cluster):
    """process.roles: three controller-only nodes form the quorum and two
    broker-only nodes serve clients.  Metadata lists the brokers only; a topic
    lands on them; killing the
    active controller elects another and topic creation works again; killing
    a broker moves its leaderships to the other.  DescribeQuorum through a
    broker names the active controller (hand-encoded: confluent-kafka has no
    DescribeQuorum)."""
    c = split_cluster
    md = c.wait_for_brokers([4, 5], timeout=15)
    assert set(md.brokers) == {4, 5}, md.brokers
    topic = topic_name("split")
    create_topic(c, [4, 5], topic, 4, 2)
    md = wait_topic_led(c, topic, 4)
    for p in md.topics[topic].partitions.values():
        assert sorted(p.replicas) == [4, 5], show_topic(md, topic)
    acks = produce(c.bootstrap, topic, [(f"k{i}", str(i)) for i in range(20)], timeout=30)
    assert len(acks) == 20

    # Clients are told of a controller they can reach (a broker, which
    # forwards), as KRaft does; the nodes are the brokers.
    adm = admin_at(c, 4)
    desc = adm.describe_cluster(request_timeout=10).result(timeout=15)
    assert desc.controller is not None and desc.controller.id in (4, 5), desc.controller.id
    assert sorted(n.id for n in desc.nodes) == [4, 5], [n.id for n in desc.nodes]

    active = c.wait_for_quorum_leader(timeout=15)
    assert active in (1, 2, 3), active
    status = subprocess.run(
        [str(c.binary), "cluster", "status", "--bootstrap-server", c.bootstrap_of(5)],
        capture_output=True, text=True, timeout=30,
    )
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert f"active controller: {active}" in out, out
    for v in (1, 2, 3):
        assert any(line.startswith(f"{v}\t") for line in out.splitlines()), out
    assert "4\tlive\t" in out and "5\tlive\t" in out, out
    c.kill(active)
    new = c.wait_for_quorum_leader(timeout=15, exclude=(active,))
    assert new in (1, 2, 3) and new != active
    create_topic(c, [4, 5], topic_name("split-after"), 2, 2, timeout=20)

    c.kill(4)

    def led_by_5():
        md = c.metadata(via=5, topic=topic)
        tm = md.topics.get(topic)
        ok = (
            set(md.brokers) == {5}
            and tm is not None
            and len(tm.partitions) == 4
            and all(p.leader == 5 and p.error is None for p in tm.partitions.values())
        )
        return ok, {"brokers": sorted(md.brokers), topic: show_topic(md, topic)}

    poll_until(f"every {topic} partition led by broker 5 after broker 4 died", led_by_5, timeout=15)


@pytest.mark.weir_args("--replica-lag-time-max-ms", "2000")
def test_partition_reassignment(cluster3):
    """AlterPartitionReassignments and ListPartitionReassignments through
    kafka-python's admin client.  A move to a paused broker stays listed as
    ongoing (it cannot copy) until cancelled, which restores the replicas.  A
    move of a partition with records from [1, 2] to [2, 3] makes broker 3
    copy it and join the ISR, then broker 1 leaves and deletes its copy;
    killing broker 2 leaves broker 3 leading with every record.  Bad targets
    and a cancel with nothing to cancel are refused per partition."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP

    from interop_helpers import consume_all

    c = cluster3
    topic, stuck = topic_name("reassign"), topic_name("reassign-stuck")
    adm = admin_at(c, 3)  # kept alive until the answers are in
    futs = adm.create_topics(
        [
            NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2]]),
            NewTopic(stuck, num_partitions=1, replica_assignment=[[1, 2]]),
        ],
        request_timeout=15,
    )
    for f in futs.values():
        f.result(timeout=20)
    wait_topic_led(c, topic, 1)
    wait_topic_led(c, stuck, 1)
    records = [(f"k{i}", f"v{i}") for i in range(200)]
    assert len(produce(c.bootstrap, topic, records, conf={"acks": "all"}, timeout=30)) == 200

    def replicas_of(t, via=1):
        md = c.metadata(via=via, topic=t)
        p = md.topics[t].partitions[0]
        return list(p.replicas), sorted(p.isrs), p.leader

    # A move that cannot finish: broker 3 is paused and never copies. (The admin
    # client sends to the controller metadata names; wait until that is not 3.)
    c.pause(3)
    ka = None
    try:
        poll_until(
            "metadata to name a controller other than the paused broker 3",
            lambda: (lambda md: (md.controller_id not in (-1, 3) and 3 not in md.brokers,
                                 (md.controller_id, sorted(md.brokers))))(c.metadata(via=1)),
            timeout=20,
        )
        ka = KafkaAdminClient(bootstrap_servers=c.bootstrap_of(1), request_timeout_ms=15000)
        try:
            res = ka.alter_partition_reassignments({KTP(stuck, 0): [1, 3]})
            assert res == {KTP(stuck, 0): None}, res
            ongoing = ka.list_partition_reassignments()
            assert ongoing.get(KTP(stuck, 0)) == {
                "replicas": [1, 3, 2], "adding_replicas": [3], "removing_replicas": [2],
            }, ongoing
            res = ka.alter_partition_reassignments({KTP(stuck, 0): None})
            assert res == {KTP(stuck, 0): None}, res
            assert KTP(stuck, 0) not in ka.list_partition_reassignments()
            assert replicas_of(stuck)[0] == [1, 2]
        finally:
            c.resume(3)

        # Refusals, partition by partition.
        res = ka.alter_partition_reassignments({KTP(stuck, 0): None})
        assert res[KTP(stuck, 0)].errno == 85, res  # NO_REASSIGNMENT_IN_PROGRESS
        res = ka.alter_partition_reassignments({KTP(stuck, 0): [9]})
        assert res[KTP(stuck, 0)].errno == 39, res  # INVALID_REPLICA_ASSIGNMENT

        # The real move.
        res = ka.alter_partition_reassignments({KTP(topic, 0): [2, 3]})
        assert res == {KTP(topic, 0): None}, res
        poll_until(
            f"{topic} to move to [2, 3] with both in sync",
            lambda: (lambda s: (s[0] == [2, 3] and s[1] == [2, 3], s))(replicas_of(topic)),
            timeout=30,
        )
        assert KTP(topic, 0) not in ka.list_partition_reassignments()
        old_copy = Path(c.node(1).log_dir) / f"{topic}-0"
        poll_until(f"broker 1 to delete its copy {old_copy}",
                   lambda: (not old_copy.exists(), old_copy), timeout=15)
    finally:
        if ka is not None:
            ka.close()

    # Broker 3's copy is whole: with broker 2 gone it leads and serves everything.
    c.kill(2)
    poll_until(f"{topic} led by 3",
               lambda: (lambda s: (s[2] == 3, s))(replicas_of(topic, via=3)), timeout=15)
    got = consume_all(c.bootstrap_of(3), topic, [0], timeout=30)
    assert [v for _, _, v, _ in got[0]] == [v for _, v in records]


@pytest.mark.weir_node_args({
    1: ["--broker-rack", "east"], 2: ["--broker-rack", "east"],
    3: ["--broker-rack", "west"], 4: ["--broker-rack", "west"],
})
def test_rack_aware_placement(cluster4):
    """broker.rack set on four brokers, two racks: a topic created through
    confluent-kafka with RF 2 puts the two replicas of every partition on
    different racks, and no broker leads more than ceil(P/B) partitions."""
    c = cluster4
    racks = {1: "east", 2: "east", 3: "west", 4: "west"}
    c.wait_for_brokers([1, 2, 3, 4], timeout=15)
    topic = topic_name("racks")
    adm = admin_at(c, 1)
    adm.create_topics([NewTopic(topic, num_partitions=8, replication_factor=2)],
                      request_timeout=15)[topic].result(timeout=20)
    md = wait_topic_led(c, topic, 8)
    leaders = Counter()
    for p in md.topics[topic].partitions.values():
        assert len(p.replicas) == 2 and {racks[b] for b in p.replicas} == {"east", "west"}, show_topic(md, topic)
        leaders[p.leader] += 1
    assert max(leaders.values()) <= math.ceil(8 / 4), leaders
