"""Cross-client interop: Weir's own client CLI (``weir produce`` /
``weir consume``, built on weir-client) against confluent-kafka
(librdkafka) and kafka-python, all on one broker.

* Keyed records land on the same partition whichever client produced them
  (weir-client's default partitioner must be the Java client's murmur2,
  byte for byte; a Python murmur2 in this file says which side is wrong on
  a mismatch).
* What one client writes, the others read back exactly (keys, values,
  headers, per-partition order), including compressed batches (lz4 from
  librdkafka, gzip from kafka-python).
* ``weir consume --group`` commits what it read: a second run reads only the
  new records, and confluent-kafka's ``committed()`` sees the end offsets.

Every subprocess and client call is bounded in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from conftest import weir_bin
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

KP_TIMEOUT_MS = 15000


# -- Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) ----------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as an unsigned 32-bit int."""
    m = 0x5BD1E995
    r = 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        j = i * 4
        k = data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    """DefaultPartitioner / BuiltInPartitioner.partitionForKey."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _signed32(x: int) -> int:
    return x - (1 << 32) if x & 0x80000000 else x


def test_python_murmur2_matches_kafka_vectors():
    # Vectors from Kafka's UtilsTest.testMurmur2 (signed Java ints); they
    # cover every tail length (0..3 trailing bytes).
    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        "abc": 479470107,
    }
    got = {s: _signed32(murmur2(s.encode())) for s in vectors}
    assert got == vectors


# -- weir CLI ---------------------------------------------------------------


def run_weir(*args, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    # WEIR_* variables are settings for the binary (e.g. WEIR_BOOTSTRAP_SERVER);
    # never let the caller's environment leak into the command line under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_LOG", "warn")
    cmd = [str(weir_bin()), *map(str, args)]
    try:
        return subprocess.run(
            cmd,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"`{' '.join(cmd)}` timed out after {timeout}s\n"
            f"stdout (tail): {(e.stdout or '')[-2000:]!r}\nstderr (tail): {(e.stderr or '')[-2000:]!r}"
        )


def weir_create_topic(bs: str, topic: str, partitions: int) -> None:
    res = run_weir("topics", "create", "--bootstrap-server", bs, "--topic", topic,
                   "--partitions", partitions, timeout=30)
    assert res.returncode == 0, f"weir topics create failed ({res.returncode}): {res.stderr}"
    wait_for_partitions(bs, topic, partitions)


def weir_produce(bs: str, topic: str, records, *extra, timeout: float = 90) -> None:
    lines = "".join(f"{k}:{v}\n" for k, v in records)
    res = run_weir("produce", "--bootstrap-server", bs, "--topic", topic,
                   "--key-separator", ":", *extra, input=lines, timeout=timeout)
    assert res.returncode == 0, f"weir produce {extra} failed ({res.returncode}): {res.stderr}"
    assert f"Produced {len(records)} records" in res.stderr, res.stderr


def weir_consume_json(bs: str, topic: str, *extra, max_messages: int | None = None,
                      idle_ms: int = 10000, timeout: float = 90) -> list[dict]:
    """Run ``weir consume --format json`` and return the parsed records.

    ``--timeout-ms`` is always passed so a short read ends instead of
    hanging; with ``max_messages`` the caller asserts the count."""
    args = ["consume", "--bootstrap-server", bs, "--topic", topic, "--format", "json",
            "--timeout-ms", idle_ms, *extra]
    if max_messages is not None:
        args += ["--max-messages", max_messages]
    res = run_weir(*args, timeout=timeout)
    assert res.returncode == 0, f"weir consume {extra} failed ({res.returncode}): {res.stderr}"
    out = []
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise AssertionError(f"weir consume printed a non-JSON line {line!r}: {e}")
    if max_messages is not None:
        assert len(out) == max_messages, (
            f"weir consume {extra} printed {len(out)} records, wanted {max_messages}; "
            f"stderr: {res.stderr[-2000:]}"
        )
    for rec in out:
        assert rec.get("topic") == topic, rec
        assert set(rec) >= {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}, rec
    return out


def json_by_partition(recs: list[dict]) -> dict[int, list]:
    """weir consume json records -> {partition: [(offset, key, value, ts)]},
    in the order printed (must already be offset order per partition)."""
    out: dict[int, list] = defaultdict(list)
    for r in recs:
        out[r["partition"]].append((r["offset"], r["key"], r["value"], r["timestamp"]))
    return dict(out)


def strip_ts(by_partition) -> dict[int, list]:
    return {p: [(o, k, v) for o, k, v, _ts in msgs] for p, msgs in by_partition.items()}


# -- kafka-python -----------------------------------------------------------


def kp_read_all(bs: str, topic: str, partitions, timeout: float = 60):
    """kafka-python, manual assignment without a group: every record from
    the beginning to the end offsets.  {partition: [(offset, key, value, ts)]}."""
    c = KafkaConsumer(
        bootstrap_servers=bs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=KP_TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )
    try:
        tps = [KpTopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps, timeout_ms=KP_TIMEOUT_MS)
        out: dict[int, list] = defaultdict(list)
        todo = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, (
                f"kafka-python timed out: got { {tp.partition: len(out[tp.partition]) for tp in tps} } of {end}"
            )
            for tp, msgs in c.poll(timeout_ms=500, max_records=500).items():
                for m in msgs:
                    if m.offset >= end[tp]:
                        continue
                    out[tp.partition].append((
                        m.offset,
                        None if m.key is None else m.key.decode(),
                        None if m.value is None else m.value.decode(),
                        m.timestamp,
                    ))
                    if m.offset >= end[tp] - 1:
                        todo.discard(tp)
        return dict(out)
    finally:
        c.close(autocommit=False, timeout_ms=5000)


def kp_produce(bs: str, topic: str, records, headers=None, **extra):
    """kafka-python producer; returns [(partition, offset)] in produce order."""
    p = KafkaProducer(
        bootstrap_servers=bs,
        acks="all",
        linger_ms=5,
        request_timeout_ms=KP_TIMEOUT_MS,
        max_block_ms=KP_TIMEOUT_MS,
        **extra,
    )
    try:
        futs = [
            p.send(topic, key=k.encode(), value=v.encode(), headers=headers or [])
            for k, v in records
        ]
        p.flush(timeout=60)
        return [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futs)]
    finally:
        p.close(timeout=10)


# -- checks -----------------------------------------------------------------


def key_partitions(by_partition) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for p, msgs in by_partition.items():
        for _off, k, _v, _ts in msgs:
            out[k].add(p)
    return out


def check_contiguous(by_partition, high: dict[int, int], who: str) -> None:
    """Offsets printed for each partition are exactly 0..high-1, in order."""
    for p, hi in high.items():
        offs = [o for o, *_ in by_partition.get(p, [])]
        assert offs == list(range(hi)), (
            f"{who}: partition {p} offsets not 0..{hi - 1} in order: "
            f"{offs[:20]}{'...' if len(offs) > 20 else ''} ({len(offs)} records)"
        )


def compare_partitioning(records, partitions: int, weir_parts: dict, other_parts: dict, other: str):
    """Each key on exactly one partition on both sides; name the wrong side."""
    keys = sorted({k for k, _ in records}, key=lambda k: (len(k), k))
    problems = []
    for k in keys:
        expected = kafka_partition(k.encode(), partitions)
        w = sorted(weir_parts.get(k, ()))
        o = sorted(other_parts.get(k, ()))
        if w != [expected] or o != [expected]:
            problems.append(
                f"key {k!r}: weir-client -> {w}, {other} -> {o}, Kafka murmur2 -> {expected}"
                + ("  [weir wrong]" if w != [expected] else "")
                + (f"  [{other} wrong]" if o != [expected] else "")
            )
    assert not problems, (
        f"{len(problems)} of {len(keys)} keys not on the murmur2 partition:\n" + "\n".join(problems[:40])
    )


# -- 1. same keys, same partitions ------------------------------------------


@pytest.mark.parametrize("partitioner", ["default", "murmur2"])
def test_weir_and_librdkafka_murmur2_partition_keys_identically(weir, partitioner):
    bs = weir.bootstrap
    n_parts = 6
    records = [(f"k{i % 100}", str(i)) for i in range(500)]

    # A: weir CLI creates and produces.
    ta = topic_name("xc-part-weir")
    weir_create_topic(bs, ta, n_parts)
    weir_produce(bs, ta, records, "--partitioner", partitioner)

    # B: confluent-kafka with librdkafka's Java-compatible partitioner.
    tb = topic_name("xc-part-rdk")
    create_topic(bs, tb, n_parts)
    acks_b = produce(bs, tb, records, conf={"partitioner": "murmur2_random"})

    got_a = json_by_partition(weir_consume_json(bs, ta, "--from-beginning", max_messages=len(records)))
    got_b = consume_all(bs, tb, range(n_parts), expect_total=len(records))
    check_keyed(records, got_a, partitions=n_parts)
    check_keyed(records, got_b, acks=acks_b, partitions=n_parts)

    compare_partitioning(records, n_parts, key_partitions(got_a), key_partitions(got_b), "librdkafka")
    # Same keys in the same order on the same partitions: the two topics are
    # record-for-record identical.
    assert strip_ts(got_a) == strip_ts(got_b)


def test_weir_partitioner_key_lengths_and_utf8(weir):
    """Keys of every tail length (len % 4 = 0..3), longer keys and multi-byte
    UTF-8 (murmur2 runs over the UTF-8 bytes, not the characters)."""
    bs = weir.bootstrap
    n_parts = 7
    keys = ["x" * n for n in range(1, 14)] + [
        "héllo", "ключ", "日本語キー", "emoji-\U0001F600", "a-little-bit-longer-string",
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
    ]
    records = [(keys[i % len(keys)], str(i)) for i in range(len(keys) * 3)]

    ta = topic_name("xc-klen-weir")
    weir_create_topic(bs, ta, n_parts)
    weir_produce(bs, ta, records)
    tb = topic_name("xc-klen-rdk")
    create_topic(bs, tb, n_parts)
    produce(bs, tb, records, conf={"partitioner": "murmur2_random"})

    got_a = json_by_partition(weir_consume_json(bs, ta, "--from-beginning", max_messages=len(records)))
    got_b = consume_all(bs, tb, range(n_parts), expect_total=len(records))
    check_keyed(records, got_a, partitions=n_parts)
    check_keyed(records, got_b, partitions=n_parts)
    compare_partitioning(records, n_parts, key_partitions(got_a), key_partitions(got_b), "librdkafka")


# -- 2. what one client writes, the others read -----------------------------


def test_weir_cli_produces_confluent_and_kafka_python_read(weir):
    bs = weir.bootstrap
    n_parts = 3
    t = topic_name("xc-w2o")
    weir_create_topic(bs, t, n_parts)
    records = keyed_records(600, keys=37)
    weir_produce(bs, t, records)

    high = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(n_parts)).items()}
    assert sum(high.values()) == len(records), high

    via_rdk = consume_all(bs, t, range(n_parts), expect_total=len(records))
    via_kp = kp_read_all(bs, t, range(n_parts))
    via_weir = json_by_partition(weir_consume_json(bs, t, "--from-beginning", max_messages=len(records)))

    for who, got in (("confluent-kafka", via_rdk), ("kafka-python", via_kp), ("weir consume", via_weir)):
        check_keyed(records, got, partitions=n_parts)
        check_contiguous(got, high, who)
    # All three readers see the very same log: offsets, keys, values, and
    # timestamps per partition.
    assert strip_ts(via_rdk) == strip_ts(via_weir)
    assert strip_ts(via_kp) == strip_ts(via_weir)
    ts_rdk = {p: [ts for *_x, (_tt, ts) in m] for p, m in via_rdk.items()}
    ts_kp = {p: [ts for *_x, ts in m] for p, m in via_kp.items()}
    ts_weir = {p: [ts for *_x, ts in m] for p, m in via_weir.items()}
    assert ts_rdk == ts_kp == ts_weir
    # The CLI's producer partitions keys the Java way too.
    for k, parts in key_partitions(via_weir).items():
        assert parts == {kafka_partition(k.encode(), n_parts)}, (k, parts)


def _check_weir_reads(bs, topic, records, acks, n_parts, headers=None):
    high = {p: hi for p, (_lo, hi) in watermarks(bs, topic, range(n_parts)).items()}
    assert sum(high.values()) == len(records), high
    recs = weir_consume_json(bs, topic, "--from-beginning", max_messages=len(records))
    got = json_by_partition(recs)
    check_keyed(records, got, acks=acks, partitions=n_parts)
    check_contiguous(got, high, "weir consume")
    if headers is not None:
        bad = [r for r in recs if r["headers"] != headers]
        assert not bad, f"{len(bad)} records with headers other than {headers}: {bad[:5]}"
    return got


def test_confluent_lz4_produces_weir_cli_reads(weir):
    bs = weir.bootstrap
    n_parts = 3
    t = topic_name("xc-rdk2w")
    create_topic(bs, t, n_parts)
    # Values long and repetitive enough that lz4 batches really compress;
    # each starts with its produce index.
    records = [(k, f"{v}|" + "lz4-payload-" * 20) for k, v in keyed_records(800, keys=41)]
    acks = produce(bs, t, records, conf={"compression.type": "lz4", "linger.ms": 20})

    got = _check_weir_reads_raw(bs, t, records, n_parts)
    # Per-key order, one partition per key, each record at its acked offset.
    idx_records = [(k, str(i)) for i, (k, _v) in enumerate(records)]
    got_idx = {p: [(o, k, v.split("|", 1)[0], ts) for o, k, v, ts in m] for p, m in got.items()}
    check_keyed(idx_records, got_idx, acks=acks, partitions=n_parts)


def _check_weir_reads_raw(bs, topic, records, n_parts):
    """weir consume reads exactly ``records`` (as a multiset of (key, value)),
    offsets 0..high-1 per partition."""
    high = {p: hi for p, (_lo, hi) in watermarks(bs, topic, range(n_parts)).items()}
    assert sum(high.values()) == len(records), high
    recs = weir_consume_json(bs, topic, "--from-beginning", max_messages=len(records))
    got = json_by_partition(recs)
    check_contiguous(got, high, "weir consume")
    want = sorted(records)
    have = sorted((k, v) for m in got.values() for _o, k, v, _ts in m)
    assert have == want, "weir consume returned different keys/values than were produced"
    return got


def test_kafka_python_gzip_produces_weir_cli_reads(weir):
    bs = weir.bootstrap
    n_parts = 3
    t = topic_name("xc-kp2w")
    create_topic(bs, t, n_parts)
    records = keyed_records(700, keys=29)
    acks = kp_produce(bs, t, records, headers=[("src", b"kafka-python")], compression_type="gzip")
    _check_weir_reads(bs, t, records, acks, n_parts, headers={"src": "kafka-python"})


# -- 3. weir consume --group commits what it read ---------------------------


def rdk_committed(bs: str, group: str, topic: str, partitions, timeout: float = 30) -> dict[int, int]:
    """confluent-kafka committed() for ``group`` (no subscribe, so no join)."""
    c = consumer(bs, **{"group.id": group})
    deadline = time.monotonic() + timeout
    last = None
    try:
        while time.monotonic() < deadline:
            try:
                res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
                errs = [tp for tp in res if tp.error is not None]
                if not errs:
                    return {tp.partition: tp.offset for tp in res}
                last = errs
            except KafkaException as e:
                if e.args[0].code() not in (
                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError.COORDINATOR_NOT_AVAILABLE,
                    KafkaError.NOT_COORDINATOR,
                    KafkaError._TIMED_OUT,
                    KafkaError._WAIT_COORD,
                ):
                    raise
                last = e
            time.sleep(0.3)
        raise AssertionError(f"committed() kept failing for {timeout}s: {last!r}")
    finally:
        c.close()


def test_weir_cli_group_resumes_from_committed_offsets(weir):
    bs = weir.bootstrap
    n_parts = 3
    t = topic_name("xc-grp")
    g = topic_name("xc-grp-g")
    weir_create_topic(bs, t, n_parts)

    first = keyed_records(300, keys=23)
    weir_produce(bs, t, first)
    got1 = weir_consume_json(bs, t, "--group", g, "--from-beginning", max_messages=len(first))
    assert sorted(int(r["value"]) for r in got1) == list(range(300))

    # Committed right after the first run: exactly the end of the log.
    high1 = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(n_parts)).items()}
    assert rdk_committed(bs, g, t, range(n_parts)) == high1

    second = [(f"k{i % 23}", str(i)) for i in range(300, 500)]
    weir_produce(bs, t, second)
    got2 = weir_consume_json(bs, t, "--group", g, "--from-beginning", max_messages=len(second))
    values2 = sorted(int(r["value"]) for r in got2)
    old = [v for v in values2 if v < 300]
    assert not old, f"second group run re-read {len(old)} already-committed records, e.g. {old[:10]}"
    assert values2 == list(range(300, 500))
    # Only offsets past the first run's end, increasing per partition.
    for p, msgs in json_by_partition(got2).items():
        offs = [o for o, *_ in msgs]
        assert offs == list(range(high1[p], high1[p] + len(offs))), (p, offs[:10], high1)

    high2 = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(n_parts)).items()}
    assert sum(high2.values()) == 500, high2
    assert rdk_committed(bs, g, t, range(n_parts)) == high2

    # Nothing else left for the group: after one more record, a third run
    # reads exactly that record.  (An empty run with a short --timeout-ms
    # would prove nothing: the idle timer also covers the group join, which
    # takes about the broker's initial rebalance delay, 3 s by default.)
    weir_produce(bs, t, [("k-sentinel", "500")])
    got3 = weir_consume_json(bs, t, "--group", g, "--from-beginning", max_messages=1)
    assert [(r["key"], r["value"]) for r in got3] == [("k-sentinel", "500")], got3
    high3 = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(n_parts)).items()}
    assert rdk_committed(bs, g, t, range(n_parts)) == high3


def test_weir_cli_group_partial_read_commits_only_what_it_printed(weir):
    """--max-messages below the backlog: the group's committed offsets are
    the positions just past the printed records (not past everything that
    was fetched), so the next run continues with no gap and no repeat."""
    bs = weir.bootstrap
    n_parts = 3
    t = topic_name("xc-grp-part")
    g = topic_name("xc-grp-part-g")
    weir_create_topic(bs, t, n_parts)
    records = keyed_records(300, keys=31)
    weir_produce(bs, t, records)

    got1 = weir_consume_json(bs, t, "--group", g, "--from-beginning", max_messages=100)
    printed_to = {p: 0 for p in range(n_parts)}
    for p, msgs in json_by_partition(got1).items():
        offs = [o for o, *_ in msgs]
        assert offs == list(range(len(offs))), (p, offs[:10])
        printed_to[p] = len(offs)
    committed = rdk_committed(bs, g, t, range(n_parts))
    # A partition the first run never read from has no committed offset
    # (-1001, OFFSET_INVALID) or 0; either way the next run starts at 0.
    committed = {p: (0 if o < 0 else o) for p, o in committed.items()}
    assert committed == printed_to, f"committed {committed}, printed through {printed_to}"

    got2 = weir_consume_json(bs, t, "--group", g, "--from-beginning", max_messages=200)
    values = [int(r["value"]) for r in got1 + got2]
    dups = sorted(v for v in set(values) if values.count(v) > 1)
    assert not dups, f"records read twice across the two runs: {dups[:10]}"
    assert sorted(values) == list(range(300))
    check_keyed(records, json_by_partition(got1 + got2), partitions=n_parts)
    high = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(n_parts)).items()}
    assert rdk_committed(bs, g, t, range(n_parts)) == high
