"""Log compaction through the broker, seen by a real client (confluent-kafka): a compacted topic
keeps the latest value of every key at its original offset, and drops tombstoned keys once
delete.retention.ms has passed."""

import time

import pytest

from interop_helpers import consume_all, create_topic, produce, topic_name

pytestmark = pytest.mark.weir_args("--log-cleaner-backoff-ms", "200")

KEYS = [f"k{i}" for i in range(10)]
ROUNDS = 20


def read(bs, t):
    got = consume_all(bs, t, [0], timeout=30)
    return [(off, k, v) for off, k, v, _ts in got.get(0, [])]


def test_compacted_topic_keeps_latest_per_key_and_drops_tombstones(weir):
    bs = weir.bootstrap
    t = topic_name("compact")
    create_topic(
        bs,
        t,
        partitions=1,
        config={"cleanup.policy": "compact", "segment.bytes": "2048", "delete.retention.ms": "3000"},
    )
    one_per_batch = {"linger.ms": 0, "batch.num.messages": 1}
    records = [(k, f"{k}-v{r}") for r in range(ROUNDS) for k in KEYS]
    acks = produce(bs, t, records, conf=one_per_batch, partition=0)
    # Tombstones for k0 and k1, then more updates of the other keys so that the tombstones end
    # up in closed segments, which are the only ones the cleaner rewrites.
    tomb_acks = produce(bs, t, [("k0", None), ("k1", None)], conf=one_per_batch, partition=0)
    later = [(k, f"{k}-v{r}") for r in range(ROUNDS, ROUNDS + 5) for k in KEYS[2:]]
    later_acks = produce(bs, t, later, conf=one_per_batch, partition=0)

    by_offset = {}
    for (k, v), (_p, off) in zip(records + [("k0", None), ("k1", None)] + later, acks + tomb_acks + later_acks):
        by_offset[off] = (k, v)
    total = len(by_offset)
    latest = {}
    for off in sorted(by_offset):
        k, v = by_offset[off]
        latest[k] = (off, v)

    def stale_of(survivors, k):
        return [o for o, kk, _ in survivors if kk == k and o != latest[k][0]]

    def cleaned(survivors):
        # A superseded value may survive only in the active (never compacted) segment, i.e.
        # close to the end.
        return len(survivors) <= total // 2 and all(
            o > total - 60 for k in KEYS[2:] for o in stale_of(survivors, k)
        )

    # Wait for the cleaner (every 200 ms here) to clean every closed segment: the last ones
    # rolled while the records were produced and are cleaned at its next pass.
    deadline = time.monotonic() + 30
    survivors = read(bs, t)
    while not cleaned(survivors) and time.monotonic() < deadline:
        time.sleep(0.5)
        survivors = read(bs, t)
    assert len(survivors) <= total // 2, f"no compaction: {len(survivors)} of {total} records left"

    # Offsets never change: every surviving record is exactly what was acknowledged there.
    for off, k, v in survivors:
        assert by_offset[off] == (k, v), f"offset {off} now holds {(k, v)}, was {by_offset[off]}"
    offsets = [off for off, _k, _v in survivors]
    assert offsets == sorted(offsets)
    # The latest value of every live key survives, at its original offset.
    for k in KEYS[2:]:
        off, v = latest[k]
        assert (off, k, v) in survivors, f"latest {k} lost"
        stale = stale_of(survivors, k)
        assert all(o > total - 60 for o in stale), f"stale {k} values at {stale} were not compacted"

    # Tombstones outlive delete.retention.ms (3 s) only: then k0 and k1 vanish entirely.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        survivors = read(bs, t)
        if not any(k in ("k0", "k1") for _o, k, _v in survivors):
            break
        time.sleep(0.5)
    left = [(o, k, v) for o, k, v in survivors if k in ("k0", "k1")]
    assert not left, f"tombstoned keys still present: {left}"
