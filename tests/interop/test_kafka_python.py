"""kafka-python (pure-Python client) against Weir.  Consumers use manual
assignment with group_id=None: no coordinator is ever contacted."""

import time
from collections import defaultdict

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from interop_helpers import check_keyed, keyed_records, topic_name

TIMEOUT_MS = 15000


def kp_admin(bs):
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT_MS, client_id="weir-interop-kp")


def kp_producer(bs, **extra):
    conf = dict(
        bootstrap_servers=bs,
        acks="all",
        linger_ms=5,
        request_timeout_ms=TIMEOUT_MS,
        max_block_ms=TIMEOUT_MS,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_consumer(bs):
    return KafkaConsumer(
        bootstrap_servers=bs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )


def create(bs, topic, partitions=3):
    a = kp_admin(bs)
    try:
        a.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1}},
            timeout_ms=TIMEOUT_MS,
            wait_for_metadata=True,
        )
        assert topic in a.list_topics()
    finally:
        a.close()


def send_all(bs, topic, records, timestamps=None, partition=None, **extra):
    p = kp_producer(bs, **extra)
    try:
        futs = []
        for i, (k, v) in enumerate(records):
            kw = {}
            if timestamps is not None:
                kw["timestamp_ms"] = timestamps[i]
            if partition is not None:
                kw["partition"] = partition
            futs.append(
                p.send(
                    topic,
                    key=None if k is None else k.encode(),
                    value=None if v is None else v.encode(),
                    **kw,
                )
            )
        p.flush(timeout=60)
        return [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futs)]
    finally:
        p.close(timeout=10)


def read_all(bs, topic, partitions, timeout=60):
    c = kp_consumer(bs)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        out = defaultdict(list)
        todo = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, (
                f"timed out: got { {tp.partition: len(out[tp.partition]) for tp in tps} } of {end}"
            )
            batch = c.poll(timeout_ms=500, max_records=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset >= end[tp]:
                        continue
                    out[tp.partition].append(
                        (
                            m.offset,
                            None if m.key is None else m.key.decode(),
                            None if m.value is None else m.value.decode(),
                            m.timestamp,
                        )
                    )
                    if m.offset >= end[tp] - 1:
                        todo.discard(tp)
        return dict(out), {tp.partition: o for tp, o in end.items()}
    finally:
        c.close(autocommit=False, timeout_ms=5000)


def test_kafka_python_create_produce_consume(weir):
    bs = weir.bootstrap
    t = topic_name("kp")
    create(bs, t, 3)
    records = keyed_records(1000)
    acks = send_all(bs, t, records)
    assert {p for p, _ in acks} == {0, 1, 2}
    got, end = read_all(bs, t, range(3))
    check_keyed(records, got, acks=acks)
    assert sum(end.values()) == 1000, end

    c = kp_consumer(bs)
    try:
        tps = [TopicPartition(t, p) for p in range(3)]
        c.assign(tps)
        begin = c.beginning_offsets(tps, timeout_ms=TIMEOUT_MS)
        endo = c.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        assert all(v == 0 for v in begin.values()), begin
        assert {tp.partition: o for tp, o in endo.items()} == {
            p: len(got.get(p, [])) for p in range(3)
        }
    finally:
        c.close(autocommit=False, timeout_ms=5000)


def test_kafka_python_offsets_for_times(weir):
    bs = weir.bootstrap
    t = topic_name("kp-ts")
    create(bs, t, 3)
    n = 20
    base = (int(time.time()) - 3600) * 1000
    ts = [base + i * 1000 for i in range(n)]
    acks = send_all(bs, t, [(f"k{i}", str(i)) for i in range(n)], timestamps=ts, partition=1)
    assert acks == [(1, i) for i in range(n)]

    got, _end = read_all(bs, t, [1])
    assert [m[3] for m in got[1]] == ts

    c = kp_consumer(bs)
    try:
        tp1, tp0 = TopicPartition(t, 1), TopicPartition(t, 0)
        c.assign([tp0, tp1])

        def lookup(tp, when):
            res = c.offsets_for_times({tp: when}, timeout_ms=TIMEOUT_MS)
            r = res[tp]
            return None if r is None else (r.offset, r.timestamp)

        assert lookup(tp1, base - 5000) == (0, base)
        assert lookup(tp1, base + 5000) == (5, base + 5000)
        assert lookup(tp1, base + 5500) == (6, base + 6000)
        assert lookup(tp1, base + n * 1000) is None
        assert lookup(tp0, base) is None

        assert c.beginning_offsets([tp0, tp1], timeout_ms=TIMEOUT_MS) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=TIMEOUT_MS) == {tp0: 0, tp1: n}
    finally:
        c.close(autocommit=False, timeout_ms=5000)


def test_kafka_python_compressed(weir):
    bs = weir.bootstrap
    t = topic_name("kp-gzip")
    create(bs, t, 3)
    records = [(f"k{i % 5}", f"{i}-" + "abc" * 50) for i in range(300)]
    send_all(bs, t, records, partition=0, compression_type="gzip", linger_ms=50)
    got, _ = read_all(bs, t, [0])
    assert [m[2] for m in got[0]] == [v for _k, v in records]
