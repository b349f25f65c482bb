"""Durability across broker restarts: graceful (SIGTERM) and crash
(SIGKILL), reusing the same --log-dirs and port."""

from interop_helpers import (
    check_keyed,
    consume_all,
    create_topic,
    keyed_records,
    produce,
    topic_name,
    wait_for_partitions,
    watermarks,
)


def test_restart_sigterm_then_sigkill_keeps_acknowledged_records(weir):
    bs = weir.bootstrap
    t = topic_name("restart")
    create_topic(bs, t, partitions=3)

    first = keyed_records(1000)
    acks = produce(bs, t, first, conf={"acks": "all"})

    rc = weir.restart()  # SIGTERM
    assert rc == 0, f"graceful shutdown (SIGTERM) exited with {rc}, expected 0"
    wait_for_partitions(bs, t, 3)
    got = consume_all(bs, t, range(3), expect_total=1000)
    check_keyed(first, got, acks=acks)

    # Append more after the restart: offsets must continue, not restart.
    second = [(f"k{i % 37}", str(i)) for i in range(1000, 2000)]
    acks2 = produce(bs, t, second, conf={"acks": "all"})
    last_first = {}
    for p, off in acks:
        last_first[p] = max(last_first.get(p, -1), off)
    for p, off in acks2:
        assert off > last_first.get(p, -1), f"partition {p}: offset {off} reused after restart"

    weir.restart(kill9=True)  # crash
    wait_for_partitions(bs, t, 3)
    everything = first + second
    got = consume_all(bs, t, range(3), expect_total=2000)
    check_keyed(everything, got, acks=acks + acks2)
    wm = watermarks(bs, t, range(3))
    assert sum(hi for _lo, hi in wm.values()) == 2000, wm

    # The broker keeps working after crash recovery.
    third = [(f"k{i % 37}", str(i)) for i in range(2000, 2100)]
    acks3 = produce(bs, t, third, conf={"acks": "all"})
    got = consume_all(bs, t, range(3), expect_total=2100)
    check_keyed(everything + third, got, acks=acks + acks2 + acks3)


def test_restart_sigkill_with_idempotent_producer_and_autocreated_topic(weir):
    """Auto-created topic + idempotent producer survive a SIGKILL, and a new
    idempotent producer can write after recovery."""
    bs = weir.bootstrap
    t = topic_name("restart-idem")
    recs = keyed_records(500)
    acks = produce(bs, t, recs, conf={"enable.idempotence": True})
    weir.restart(kill9=True)
    wait_for_partitions(bs, t, 3)
    more = [(f"k{i % 37}", str(i)) for i in range(500, 1000)]
    acks2 = produce(bs, t, more, conf={"enable.idempotence": True})
    got = consume_all(bs, t, range(3), expect_total=1000)
    check_keyed(recs + more, got, acks=acks + acks2)
