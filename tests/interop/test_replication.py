"""Partition replication on a three-node cluster (``cluster3``), seen through
confluent-kafka: an idempotent acks=all producer keeps producing through the
loss of a partition leader with no error beyond retries, a consumer then reads
every acknowledged record exactly once and in order, the killed broker catches
up and rejoins the ISR (and takes its preferred leadership back), and every
replica's log ends byte-identical.  A follower that stops fetching leaves the
ISR, and with the ISR below ``min.insync.replicas`` acks=all is refused with
NOT_ENOUGH_REPLICAS.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from interop_helpers import consume_all, topic_name

pytestmark = pytest.mark.weir_args("--replica-lag-time-max-ms", "2000")


def create_replicated(cluster, topic: str, partitions: int = 3, min_isr: int = 2, config=None):
    a = AdminClient({"bootstrap.servers": cluster.live_bootstrap(), "socket.timeout.ms": 5000})
    futs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=3,
                  config={"min.insync.replicas": str(min_isr), **(config or {})})],
        request_timeout=30,
        operation_timeout=30,
    )
    futs[topic].result(timeout=30)
    deadline = time.monotonic() + 20
    while True:
        md = cluster.metadata(topic=topic)
        tm = md.topics.get(topic)
        if tm is not None and tm.error is None and len(tm.partitions) == partitions and all(
            p.leader >= 0 and len(p.isrs) == 3 for p in tm.partitions.values()
        ):
            return {p.id: (p.leader, list(p.replicas)) for p in tm.partitions.values()}
        assert time.monotonic() < deadline, f"{topic} never had full ISRs: {tm}"
        time.sleep(0.2)


def partition_state(cluster, topic: str):
    md = cluster.metadata(topic=topic)
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in md.topics[topic].partitions.values()}


def wait_until(what, check, timeout: float = 30, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - a node may be down meanwhile
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def partition_log_bytes(cluster, node_id: int, topic: str, partition: int) -> bytes:
    """Every segment of a partition on one node, in offset order."""
    d = Path(cluster.node(node_id).log_dir) / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def test_acks_all_survives_leader_loss(cluster3):
    topic = topic_name("repl")
    placed = create_replicated(cluster3, topic)
    victim = placed[0][0]

    acked: dict[int, list[int]] = defaultdict(list)
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[msg.partition()].append(int(msg.value()))

    p = Producer({
        "bootstrap.servers": cluster3.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 5000,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    total = 6000
    for i in range(total):
        if i == total // 3:
            # Lose the leader of partition 0 in the middle of the stream.
            p.flush(30)
            cluster3.kill(victim)
        while True:
            try:
                p.produce(topic, value=str(i).encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if i % 200 == 0:
            time.sleep(0.02)
    left = p.flush(90)
    assert left == 0, f"{left} records still unacknowledged"
    assert not failed, f"delivery errors surfaced to the application: {failed[:5]}"
    n_acked = sum(len(v) for v in acked.values())
    assert n_acked == total

    # Leadership moved away from the dead broker.
    state = partition_state(cluster3, topic)
    assert all(leader >= 0 and leader != victim for leader, _, _ in state.values()), state

    # Every acknowledged record, once, in order per partition.
    got = consume_all(cluster3.live_bootstrap(), topic, range(3), expect_total=total)
    for part, recs in got.items():
        values = [int(v) for _, _, v, _ in recs]
        assert len(values) == len(set(values)), f"partition {part} has duplicates"
        assert values == sorted(values), f"partition {part} is out of order"
    seen = {int(v) for recs in got.values() for _, _, v, _ in recs}
    lost = set(range(total)) - seen
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:10]}"

    # The broker returns, catches up, rejoins every ISR, and leads its
    # preferred partitions again.
    cluster3.start(victim)
    wait_until(
        "the restarted broker to rejoin every ISR and its preferred leaderships",
        lambda: all(
            len(isr) == 3 and leader == replicas[0]
            for leader, replicas, isr in partition_state(cluster3, topic).values()
        ),
        timeout=40,
    )
    # All three replicas hold the same bytes.
    for part in range(3):
        logs = wait_until(
            f"replicas of partition {part} to converge",
            lambda part=part: (lambda l: l if len(set(l)) == 1 else None)(
                [partition_log_bytes(cluster3, n, topic, part) for n in cluster3.ids]
            ),
            timeout=20,
        )
        assert len(logs[0]) > 0


def test_lagging_follower_leaves_the_isr_and_min_isr_guards_acks_all(cluster3):
    topic = topic_name("isr")
    placed = create_replicated(cluster3, topic, partitions=1)
    leader, replicas = placed[0]
    followers = [b for b in replicas if b != leader]

    def produce_one(value: bytes):
        result = []
        p = Producer({
            "bootstrap.servers": cluster3.bootstrap_of(leader),
            "acks": "all",
            "message.timeout.ms": 10000,
            "retries": 0,
        })
        p.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: result.append(err))
        p.flush(15)
        return result[0] if result else "no answer"

    assert produce_one(b"all-in-sync") is None

    # One follower hangs: it leaves the ISR, and acks=all still works with 2.
    # (Pausing a second one would also stop two of the three controller
    # voters; raising min.insync.replicas shows the refusal instead.)
    cluster3.pause(followers[0])
    try:
        wait_until(
            "the paused follower to leave the ISR",
            lambda: partition_state(cluster3, topic)[0][2] == sorted([leader, followers[1]]),
            timeout=20,
        )
        assert produce_one(b"two-in-sync") is None
        a = AdminClient({"bootstrap.servers": cluster3.bootstrap_of(leader), "socket.timeout.ms": 5000})
        res = ConfigResource(ResourceType.TOPIC, topic, set_config={"min.insync.replicas": "3"})
        a.alter_configs([res])[res].result(timeout=30)
        err = wait_until(
            "acks=all to be refused below min.insync.replicas",
            lambda: (lambda e: e if e is not None else None)(produce_one(b"refused")),
            timeout=15,
        )
        assert err.code() in (
            KafkaError.NOT_ENOUGH_REPLICAS,
            KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ), err
    finally:
        cluster3.resume(followers[0])
    # Back: it catches up and rejoins, and acks=all with min.insync.replicas=3
    # works again.
    wait_until(
        "the follower to rejoin the ISR",
        lambda: len(partition_state(cluster3, topic)[0][2]) == 3,
        timeout=30,
    )
    assert wait_until(
        "acks=all to succeed with the full ISR",
        lambda: produce_one(b"back-in-sync") is None,
        timeout=15,
    )


def test_sarama_acks_all_through_leader_loss(cluster3, sarama_bin, tmp_path):
    """Sarama 1.22's idempotent SyncProducer (acks=all) writes 1500 keyed
    records to an RF=3 topic; after 500 the broker leading partition 0 is
    killed.  Sarama retries on its own, and then reads everything back: every
    record exactly once, in order, each key on one partition."""
    import json
    import subprocess
    import threading

    topic = topic_name("sarama-repl")
    go = tmp_path / "go"
    cmd = [
        str(sarama_bin), "-brokers", cluster3.bootstrap, "-topic", topic, "-timeout", "110s",
        "-count", "1500", "-partitions", "3", "-replication-factor", "3",
        "-idempotent", "-retries", "60", "-pause-after", "500", "-go-file", str(go),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda: out.__setitem__("stdout", proc.stdout.read()), daemon=True),
        threading.Thread(target=lambda: out.__setitem__("stderr", proc.stderr.read()), daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        wait_until("Sarama to produce its first 500 records",
                   lambda: (tmp_path / "go.ready").exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, "the Sarama program stopped before the fault"
        state = partition_state(cluster3, topic)
        victim = state[0][0]
        cluster3.kill(victim)
        go.write_text("go\n")
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(5)
    lines = [ln for ln in out.get("stdout", "").splitlines() if ln.startswith("{")]
    detail = f"stdout: {out.get('stdout')}\nsarama log (tail):\n{out.get('stderr', '')[-6000:]}"
    assert lines, f"no JSON summary (exit {proc.returncode})\n{detail}"
    s = json.loads(lines[-1])
    detail = f"summary: {json.dumps(s)}\n{detail}"
    assert proc.returncode == 0 and s["ok"], detail
    assert s["produced"] == 1500 and s["consumed"] == 1500 and s["unique"] == 1500, detail
    assert s["duplicates"] == 0 and s["missing"] == 0 and s["order_errors"] == 0, detail
    state = partition_state(cluster3, topic)
    assert all(leader >= 0 and leader != victim for leader, _, _ in state.values()), state


@pytest.mark.weir_args("--replica-lag-time-max-ms", "2000", "--offsets-topic-replication-factor", "3")
def test_committed_offsets_survive_coordinator_loss(cluster3):
    """With __consumer_offsets replicated three ways, a group's committed
    offsets survive the loss of its coordinator: the broker elected for the
    group's offsets partition loads the group from its replica, and a new
    consumer of the group resumes where the first one committed."""
    from confluent_kafka import Consumer, TopicPartition

    topic = topic_name("commit-repl")
    group = topic_name("g")
    create_replicated(cluster3, topic, partitions=1)
    p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce(topic, value=str(i).encode(), partition=0)
    assert p.flush(30) == 0

    def consumer(bootstrap):
        return Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "socket.timeout.ms": 5000,
        })

    c = consumer(cluster3.bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 60 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(int(m.value()))
    assert len(seen) >= 60, seen
    a = AdminClient({"bootstrap.servers": cluster3.bootstrap, "socket.timeout.ms": 5000})
    # A first commit creates __consumer_offsets; ListGroups then makes every
    # broker load its groups, so the next commit reaches the other brokers'
    # memory only if they load the group again when elected.
    c.commit(offsets=[TopicPartition(topic, 0, 30)], asynchronous=False)
    a.list_consumer_groups().result(timeout=30)
    c.commit(offsets=[TopicPartition(topic, 0, 60)], asynchronous=False)
    c.close()

    desc = a.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = desc.coordinator.id
    cluster3.kill(coordinator)

    survivors = [i for i in cluster3.ids if i != coordinator]
    c = consumer(cluster3.bootstrap_of(*survivors))
    try:
        committed = wait_until(
            "the new coordinator to answer with the committed offset",
            lambda: (lambda r: r if r and r[0].offset >= 0 else None)(
                c.committed([TopicPartition(topic, 0)], timeout=5)
            ),
            timeout=40,
        )
        assert committed[0].offset == 60, committed
    finally:
        c.close()
