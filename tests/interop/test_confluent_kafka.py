"""confluent-kafka-python (librdkafka) against Weir."""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TopicPartition,
)

from interop_helpers import (
    check_keyed,
    consume_all,
    consumer,
    create_topic,
    keyed_records,
    produce,
    topic_name,
    wait_for_partitions,
    watermarks,
)


def test_confluent_admin_create_produce_consume(weir):
    bs = weir.bootstrap
    t = topic_name("ck")
    create_topic(bs, t, partitions=3)
    records = keyed_records(1000)
    acks = produce(bs, t, records, conf={"acks": "all"})
    assert {p for p, _ in acks} == {0, 1, 2}, "37 keys should spread over all 3 partitions"
    got = consume_all(bs, t, range(3), expect_total=1000)
    check_keyed(records, got, acks=acks)
    wm = watermarks(bs, t, range(3))
    assert sum(hi for _lo, hi in wm.values()) == 1000, wm
    assert all(lo == 0 for lo, _hi in wm.values()), wm


@pytest.mark.parametrize("acks_level", ["0", "1"])
def test_confluent_acks_levels(weir, acks_level):
    bs = weir.bootstrap
    t = topic_name(f"ck-acks{acks_level}")
    create_topic(bs, t, partitions=3)
    records = keyed_records(300)
    produce(bs, t, records, conf={"acks": acks_level})
    # acks=0 has no response to wait for; give the broker a moment to append.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sum(hi for _lo, hi in watermarks(bs, t, range(3)).values()) >= 300:
            break
        time.sleep(0.2)
    got = consume_all(bs, t, range(3), expect_total=300)
    check_keyed(records, got)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_confluent_compression(weir, codec):
    bs = weir.bootstrap
    t = topic_name(f"ck-{codec}")
    create_topic(bs, t, partitions=3)
    # Compressible values, batched (linger) so batches hold many records.
    records = [(f"k{i % 7}", f"{i}-" + ("weir-" * 40)) for i in range(500)]
    produce(
        bs,
        t,
        records,
        partition=0,
        conf={"compression.type": codec, "linger.ms": 50, "batch.num.messages": 100},
    )
    got = consume_all(bs, t, [0], expect_total=500)
    values = [v for _off, _k, v, _ts in got.get(0, [])]
    assert values == [v for _k, v in records]
    keys = [k for _off, k, _v, _ts in got.get(0, [])]
    assert keys == [k for k, _v in records]
    assert [off for off, *_ in got[0]] == list(range(500))


def test_confluent_headers_null_key_and_tombstone(weir):
    from confluent_kafka import Producer

    bs = weir.bootstrap
    t = topic_name("ck-hdr")
    create_topic(bs, t, partitions=1)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "message.timeout.ms": 30000})
    errs = []
    cb = lambda err, msg: errs.append(err) if err else None  # noqa: E731
    p.produce(t, key=b"a", value=b"v1", headers=[("h1", b"x"), ("h2", None), ("h1", b"y")], on_delivery=cb)
    p.produce(t, key=None, value=b"no-key", on_delivery=cb)
    p.produce(t, key=b"a", value=None, on_delivery=cb)  # tombstone
    p.produce(t, key=b"", value=b"", on_delivery=cb)
    assert p.flush(30) == 0 and not errs, errs

    c = consumer(bs)
    try:
        c.assign([TopicPartition(t, 0, OFFSET_BEGINNING)])
        msgs = []
        deadline = time.monotonic() + 30
        while len(msgs) < 4 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                msgs.append(m)
    finally:
        c.close()
    assert len(msgs) == 4, f"read {len(msgs)} of 4"
    assert msgs[0].key() == b"a" and msgs[0].value() == b"v1"
    assert msgs[0].headers() == [("h1", b"x"), ("h2", None), ("h1", b"y")]
    assert msgs[1].key() is None and msgs[1].value() == b"no-key"
    assert msgs[1].headers() is None
    assert msgs[2].key() == b"a" and msgs[2].value() is None
    assert msgs[3].key() == b"" and msgs[3].value() == b""


def test_confluent_timestamps_and_offsets_for_times(weir):
    bs = weir.bootstrap
    t = topic_name("ck-ts")
    create_topic(bs, t, partitions=3)
    n = 20
    base = (int(time.time()) - 3600) * 1000  # an hour ago, well within retention
    records = [(f"k{i}", str(i)) for i in range(n)]
    ts = [base + i * 1000 for i in range(n)]
    acks = produce(bs, t, records, partition=0, timestamps=ts)
    assert acks == [(0, i) for i in range(n)]

    got = consume_all(bs, t, [0], expect_total=n)
    assert [m[3] for m in got[0]] == [(TIMESTAMP_CREATE_TIME, x) for x in ts]

    c = consumer(bs)
    try:
        def lookup(partition, when):
            res = c.offsets_for_times([TopicPartition(t, partition, when)], timeout=10)
            assert len(res) == 1 and res[0].error is None, res
            return res[0].offset

        assert lookup(0, base - 10_000) == 0
        assert lookup(0, base) == 0
        assert lookup(0, base + 1) == 1
        assert lookup(0, base + 5000) == 5
        assert lookup(0, base + 5500) == 6
        assert lookup(0, base + (n - 1) * 1000) == n - 1
        # Nothing at or after this timestamp: Kafka answers offset -1.
        assert lookup(0, base + (n - 1) * 1000 + 1) == -1
        # Empty partition.
        assert lookup(1, base) == -1

        assert c.get_watermark_offsets(TopicPartition(t, 0), timeout=10) == (0, n)
        assert c.get_watermark_offsets(TopicPartition(t, 1), timeout=10) == (0, 0)
        assert c.get_watermark_offsets(TopicPartition(t, 2), timeout=10) == (0, 0)
    finally:
        c.close()


def test_confluent_admin_list_offsets(weir):
    from confluent_kafka.admin import OffsetSpec

    from interop_helpers import admin

    bs = weir.bootstrap
    t = topic_name("ck-lo")
    create_topic(bs, t, partitions=3)
    base = (int(time.time()) - 600) * 1000
    produce(bs, t, [(None, str(i)) for i in range(10)], partition=2, timestamps=[base + i * 10 for i in range(10)])
    a = admin(bs)
    tp = TopicPartition(t, 2)
    specs = {
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "ts": OffsetSpec.for_timestamp(base + 35),
    }
    out = {}
    for name, spec in specs.items():
        fut = a.list_offsets({tp: spec}, request_timeout=10)[tp]
        out[name] = fut.result(timeout=15).offset
    assert out == {"earliest": 0, "latest": 10, "ts": 4}, out


def test_confluent_idempotent_producer(weir):
    bs = weir.bootstrap
    t = topic_name("ck-idem")
    create_topic(bs, t, partitions=3)
    records = keyed_records(1000)
    acks = produce(
        bs,
        t,
        records,
        conf={"enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5},
    )
    got = consume_all(bs, t, range(3), expect_total=1000)
    check_keyed(records, got, acks=acks)
    wm = watermarks(bs, t, range(3))
    assert sum(hi for _lo, hi in wm.values()) == 1000, f"log holds extra records: {wm}"


def test_confluent_autocreate_on_produce(weir):
    """Producer metadata request auto-creates the topic with
    --num-partitions (3) partitions."""
    bs = weir.bootstrap
    t = topic_name("ck-auto")
    records = keyed_records(100)
    acks = produce(bs, t, records)
    wait_for_partitions(bs, t, 3)
    got = consume_all(bs, t, range(3), expect_total=100)
    check_keyed(records, got, acks=acks)
