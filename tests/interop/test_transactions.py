"""Transactions (KIP-98, KIP-447) with confluent-kafka (librdkafka) against one broker:
commits and aborts seen through read_committed, an open transaction holding the last stable
offset back, a zombie fenced by a new instance, a hanging transaction aborted at its timeout,
and consume-transform-produce with the offsets sent inside the transaction."""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from interop_helpers import consume_all, consumer, create_topic, produce, topic_name


def txn_producer(bs, txn_id, **extra):
    conf = {
        "bootstrap.servers": bs,
        "transactional.id": txn_id,
        "linger.ms": 5,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Producer(conf)


def send(p, topic, values, partition=None):
    for i, v in enumerate(values):
        kwargs = {} if partition is None else {"partition": partition}
        p.produce(topic, key=f"k{i % 7}".encode(), value=v.encode(), **kwargs)
        p.poll(0)
    assert p.flush(30) == 0


def read_values(bs, topic, partitions, isolation, settle=3.0, conf=None):
    """Every value readable from the start under `isolation`, read until nothing new comes
    for `settle` seconds: {partition: [values in offset order]}."""
    c = consumer(bs, **{"isolation.level": isolation, **(conf or {})})
    out = {p: [] for p in partitions}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            msgs = c.consume(num_messages=500, timeout=0.3)
            for m in msgs:
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                out[m.partition()].append(m.value().decode())
                quiet_since = time.monotonic()
        return out
    finally:
        c.close()


def test_read_committed_sees_commits_and_never_aborts(weir):
    bs = weir.bootstrap
    t = topic_name("txn")
    create_topic(bs, t, partitions=3)
    p = txn_producer(bs, "txn-basic")
    p.init_transactions(30)
    p.begin_transaction()
    send(p, t, [f"c1-{i}" for i in range(150)])
    p.commit_transaction(30)
    p.begin_transaction()
    send(p, t, [f"a-{i}" for i in range(150)])
    p.abort_transaction(30)
    p.begin_transaction()
    send(p, t, [f"c2-{i}" for i in range(150)])
    p.commit_transaction(30)

    committed = read_values(bs, t, range(3), "read_committed")
    values = [v for part in committed.values() for v in part]
    assert sorted(values) == sorted([f"c1-{i}" for i in range(150)] + [f"c2-{i}" for i in range(150)])
    assert not [v for v in values if v.startswith("a-")]
    # Order within each partition: the first transaction's records before the second's.
    for part in committed.values():
        firsts = [i for i, v in enumerate(part) if v.startswith("c1-")]
        seconds = [i for i, v in enumerate(part) if v.startswith("c2-")]
        assert not firsts or not seconds or max(firsts) < min(seconds), part
    uncommitted = read_values(bs, t, range(3), "read_uncommitted")
    assert sum(len(v) for v in uncommitted.values()) == 450
    # ListOffsets(latest) under read_committed: every marker written, the LSO is the end.
    c = consumer(bs, **{"isolation.level": "read_committed"})
    try:
        for part in range(3):
            lo, hi = c.get_watermark_offsets(TopicPartition(t, part), timeout=10)
            assert hi > 0 and lo == 0
    finally:
        c.close()


def test_an_open_transaction_holds_read_committed_back(weir):
    bs = weir.bootstrap
    t = topic_name("txn-open")
    create_topic(bs, t, partitions=1)
    produce(bs, t, [("k", "before")])
    p = txn_producer(bs, "txn-open")
    p.init_transactions(30)
    p.begin_transaction()
    send(p, t, [f"open-{i}" for i in range(20)], partition=0)
    # A non-transactional record after the open transaction's first is held back too.
    produce(bs, t, [("k", "after")])
    held = read_values(bs, t, [0], "read_committed", settle=2.0)
    assert held[0] == ["before"]
    seen = read_values(bs, t, [0], "read_uncommitted", settle=2.0)
    assert len(seen[0]) == 22
    p.commit_transaction(30)
    done = read_values(bs, t, [0], "read_committed", settle=2.0)
    assert done[0] == ["before"] + [f"open-{i}" for i in range(20)] + ["after"]


def test_a_new_instance_fences_the_zombie(weir):
    bs = weir.bootstrap
    t = topic_name("txn-zombie")
    create_topic(bs, t, partitions=2)
    zombie = txn_producer(bs, "txn-zombie")
    zombie.init_transactions(30)
    zombie.begin_transaction()
    send(zombie, t, [f"zombie-{i}" for i in range(30)])
    # The new instance aborts the zombie's open transaction and takes a newer epoch.
    fresh = txn_producer(bs, "txn-zombie")
    fresh.init_transactions(30)
    fresh.begin_transaction()
    send(fresh, t, [f"fresh-{i}" for i in range(30)])
    fresh.commit_transaction(30)
    with pytest.raises(KafkaException) as refused:
        zombie.commit_transaction(30)
    err = refused.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    values = [v for part in read_values(bs, t, range(2), "read_committed").values() for v in part]
    assert sorted(values) == sorted(f"fresh-{i}" for i in range(30))


@pytest.mark.weir_args(
    "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=200"
)
def test_a_hanging_transaction_is_aborted_at_its_timeout(weir):
    bs = weir.bootstrap
    t = topic_name("txn-timeout")
    create_topic(bs, t, partitions=1)
    p = txn_producer(bs, "txn-slow", **{"transaction.timeout.ms": 2000, "socket.timeout.ms": 2000})
    p.init_transactions(30)
    p.begin_transaction()
    send(p, t, [f"slow-{i}" for i in range(10)], partition=0)
    time.sleep(4)
    produce(bs, t, [("k", "later")])
    # The coordinator aborted it: read_committed moves past it without its records.
    assert read_values(bs, t, [0], "read_committed", settle=2.0)[0] == ["later"]
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_a_timeout_above_the_maximum_is_refused(weir):
    p = txn_producer(weir.bootstrap, "txn-too-long", **{"transaction.timeout.ms": 3_600_000})
    with pytest.raises(KafkaException) as refused:
        p.init_transactions(20)
    assert refused.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT


def test_consume_transform_produce_commits_offsets_with_outputs(weir):
    bs = weir.bootstrap
    src, dst = topic_name("txn-in"), topic_name("txn-out")
    create_topic(bs, src, partitions=2)
    create_topic(bs, dst, partitions=2)
    n = 400
    produce(bs, src, [(f"k{i % 11}", str(i)) for i in range(n)])
    group = topic_name("txn-group")
    c = consumer(
        bs,
        **{
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        },
    )
    p = txn_producer(bs, "txn-ctp")
    p.init_transactions(30)
    c.subscribe([src])
    done = 0
    deadline = time.monotonic() + 60
    try:
        while done < n:
            assert time.monotonic() < deadline, f"only {done} of {n} processed"
            msgs = [m for m in c.consume(num_messages=100, timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, key=m.key(), value=b"out-" + m.value())
            p.send_offsets_to_transaction(
                c.position(c.assignment()), c.consumer_group_metadata(), 30
            )
            p.commit_transaction(30)
            done += len(msgs)
        # The committed offsets are the ends of the input.
        committed = c.committed([TopicPartition(src, 0), TopicPartition(src, 1)], timeout=10)
        ends = consume_all(bs, src, range(2))
        for tp in committed:
            assert tp.offset == len(ends.get(tp.partition, [])), committed
    finally:
        c.close()
    outputs = [v for part in read_values(bs, dst, range(2), "read_committed").values() for v in part]
    assert sorted(outputs) == sorted(f"out-{i}" for i in range(n))


def run_weir(bs, *args, timeout=120):
    import subprocess

    from conftest import weir_bin

    res = subprocess.run([str(weir_bin()), *args, "--bootstrap-server", bs],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_weir_tools_and_librdkafka_read_each_others_transactions(weir):
    bs = weir.bootstrap
    # confluent-kafka writes; weir consume --isolation-level read_committed reads.
    t = topic_name("txn-x")
    create_topic(bs, t, partitions=2)
    p = txn_producer(bs, "txn-x-writer")
    p.init_transactions(30)
    for prefix, commit in (("c1", True), ("a", False), ("c2", True)):
        p.begin_transaction()
        send(p, t, [f"{prefix}-{i}" for i in range(100)])
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    out = run_weir(bs, "consume", "--topic", t, "--from-beginning", "--isolation-level",
                   "read_committed", "--max-messages", "200", "--timeout-ms", "10000")
    assert sorted(out.split()) == sorted([f"c1-{i}" for i in range(100)] + [f"c2-{i}" for i in range(100)])
    # weir-client (weir perf) writes in transactions; confluent-kafka reads read_committed.
    u = topic_name("txn-y")
    create_topic(bs, u, partitions=3)
    run_weir(bs, "perf", "produce", "--topic", u, "--num-records", "3000", "--record-size", "32",
             "--transactional-id", "txn-y-writer", "--records-per-transaction", "500", "--json")
    got = read_values(bs, u, range(3), "read_committed")
    assert sum(len(v) for v in got.values()) == 3000
    listed = run_weir(bs, "transactions", "list")
    assert "txn-y-writer" in listed and "txn-x-writer" in listed, listed
