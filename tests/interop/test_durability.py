"""Durability when a whole cluster crashes and logs lose their unsynced
tails, seen through confluent-kafka on a three-node cluster (``cluster3``).

Durable mode (``write.caching=false``, the default): every broker is killed
while the producer writes, and then every replica loses what a power cut
could take from it, a tail past the last acknowledged batch (acknowledged
records were fsynced on every ISR member), a different amount on each.  Every
acknowledged record must be read back and the replicas must end identical.

Without durable mode (``write.caching=true``), a power cut may take
acknowledged records from a replica; the tests below cut them from the leader
only:

A topic with one partition, three replicas and ``min.insync.replicas=2``
takes records from an idempotent acks=all producer.  Then every broker is
killed with SIGKILL at once, and while they are down the leader's lost page
cache is simulated by cutting the last 64 KiB off its last segment file, so
that it lacks acknowledged records the two followers still hold.  The
damaged leader is started first, then the others.  Since no broker shut down
cleanly, the ISR empties and the controller must elect from the replicas'
reported logs (latest leader epoch, then the longest log): a follower, not
the first broker back.  The test checks the outcome: every acknowledged
record must be in the log exactly once, at the offset it was acknowledged at
and in order, and the three replicas must end byte-identical.  (Which broker
led at which epoch after the restart, from the nodes' logs, is printed and
goes into failure messages.)

Two variants: every record acknowledged before the crash (the producer
flushed), and the crash in the middle of the stream (only the records
acknowledged before it count).
"""

from __future__ import annotations

import os
import re
import signal
import struct
import time
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from interop_helpers import consume_all, topic_name, watermarks
from test_replication import create_replicated, partition_log_bytes, partition_state, wait_until

TOTAL = 20_000
CUT = 64 * 1024


def segments(cluster, node: int, topic: str, partition: int = 0) -> list[Path]:
    d = Path(cluster.node(node).log_dir) / f"{topic}-{partition}"
    return sorted(d.glob("*.log"))


def complete_batches(data: bytes):
    """(start byte, end byte, base offset, last offset) of every whole record
    batch in ``data`` (a partition's segments back to back); a torn batch at
    the end is left out."""
    out, at = [], 0
    while at + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, at)
        delta = struct.unpack_from(">i", data, at + 23)[0]
        if length <= 0 or at + 12 + length > len(data):
            break
        out.append((at, at + 12 + length, base, base + delta))
        at += 12 + length
    return out


def last_offset_on_disk(cluster, node: int, topic: str) -> int:
    batches = complete_batches(partition_log_bytes(cluster, node, topic, 0))
    return batches[-1][3] if batches else -1


def since_restart(cluster, i: int) -> list[str]:
    """Node ``i``'s stderr lines since its last start."""
    lines = cluster.node(i).stderr_text().splitlines()
    starts = [k for k, ln in enumerate(lines) if ln.startswith("=====") and ": start #" in ln]
    return lines[starts[-1]:] if starts else lines


def stderr_lines(cluster, topic: str) -> str:
    """What every node logged since its restart about the topic, recovery,
    registration and elections, and any warning or error of Weir's own (for
    failure messages)."""
    out = []
    for i in cluster.ids:
        lines = [ln for ln in since_restart(cluster, i)
                 if ln.startswith("=====") or topic in ln or "panick" in ln
                 or (("WARN weir" in ln or "ERROR weir" in ln) and "closing connection" not in ln)]
        out.append(f"--- node {i} since its restart ({len(lines)} lines) ---")
        out.extend(ln[:400] for ln in lines[:60])
    return "\n".join(out)


def leaderships_since_restart(cluster, topic: str) -> list:
    """(time, node, epoch) of every "leading" line for the partition in the
    nodes' logs since their restart, in time order."""
    pat = re.compile(r"^(\S+)\s+INFO .*leading topic=" + re.escape(topic) + r" partition=0 epoch=(\d+)")
    seen = []
    for i in cluster.ids:
        for ln in since_restart(cluster, i):
            m = pat.match(ln)
            if m:
                seen.append((m.group(1)[11:23], i, int(m.group(2))))
    return sorted(seen)


class AckedWriter:
    """An idempotent acks=all producer writing b"%08d" values to partition 0;
    ``acked`` maps each value acknowledged (delivery report without error)
    to its offset, until ``stop_counting()``."""

    def __init__(self, cluster, topic: str):
        self.topic = topic
        self.next = 0
        self.counting = True
        self.acked: dict[int, int] = {}
        self.failed: list = []
        self.p = Producer({
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            # Small batches, so that the cut removes whole batches and tears one.
            "batch.num.messages": 200,
            "message.timeout.ms": 60000,
            "socket.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 500,
        })

    def _done(self, err, msg):
        if not self.counting:
            return
        if err is not None:
            self.failed.append(err)
        else:
            self.acked[int(msg.value())] = msg.offset()

    def write(self, n: int, deadline: float) -> None:
        for _ in range(n):
            while True:
                try:
                    self.p.produce(self.topic, value=b"%08d" % self.next, partition=0,
                                   on_delivery=self._done)
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "the producer's queue stayed full"
                    self.p.poll(0.05)
            self.next += 1
            self.p.poll(0)

    def stop_counting(self) -> None:
        """Stop recording acknowledgements and drop whatever is unanswered."""
        self.counting = False
        try:
            self.p.purge(in_queue=True, in_flight=True)
            self.p.flush(0)
        except KafkaException:
            pass


def kill_all_at_once(cluster) -> None:
    """SIGKILL every node back to back, then reap them."""
    for i in cluster.ids:
        cluster.node(i).signal(signal.SIGKILL)
    for i in cluster.ids:
        cluster.kill(i)


def cut_leader_tail(cluster, topic: str, leader: int, max_acked_offset: int) -> str:
    """Cut the last 64 KiB off the leader's last segment (more if needed, so
    that an acknowledged record goes); returns a description."""
    followers = [i for i in cluster.ids if i != leader]
    segs = segments(cluster, leader, topic)
    assert segs, f"node {leader} has no segment of {topic}-0"
    last = segs[-1]
    before = {i: (last_offset_on_disk(cluster, i, topic),
                  sum(p.stat().st_size for p in segments(cluster, i, topic))) for i in cluster.ids}
    size = last.stat().st_size
    new_size = max(0, size - CUT)
    # A 64 KiB cut is thousands of these records; make sure it tears the
    # batch holding the last acknowledged offset all the same.
    data_before_last = sum(p.stat().st_size for p in segs[:-1])
    for _start, end, base, last_off in complete_batches(partition_log_bytes(cluster, leader, topic, 0)):
        if base <= max_acked_offset <= last_off:
            new_size = min(new_size, max(0, end - data_before_last - 1))
            break
    os.truncate(last, new_size)
    after_leader = last_offset_on_disk(cluster, leader, topic)
    leader_bytes = sum(p.stat().st_size for p in segments(cluster, leader, topic))
    desc = (f"cut {size - new_size} bytes off {last.name} of node {leader} ({size} -> {new_size}); "
            f"(last whole offset, bytes) before the cut per node: {before}; "
            f"the leader's last whole offset now {after_leader}, highest acknowledged {max_acked_offset}")
    assert after_leader < max_acked_offset, f"the cut removed no acknowledged record: {desc}"
    for f in followers:
        fb = before[f][1]
        assert leader_bytes < fb, f"the cut leader log is not shorter than node {f}'s: {desc}"
        fsegs = segments(cluster, f, topic)
        if fsegs and fsegs[-1].name == last.name:
            assert new_size < fsegs[-1].stat().st_size, f"node {f}'s last segment is not longer: {desc}"
        assert before[f][0] >= max_acked_offset, (
            f"follower {f} does not hold every acknowledged record before the restart: {desc}"
        )
    return desc


def restart_leader_first(cluster, leader: int) -> None:
    """Start the damaged leader, give it a head start, then the others."""
    cluster.node(leader).launch()
    head_start = time.monotonic() + 2.0
    while time.monotonic() < head_start and cluster.node(leader).alive():
        time.sleep(0.1)
    for i in cluster.ids:
        if i != leader:
            cluster.node(i).launch()
    deadline = time.monotonic() + 30
    for i in cluster.ids:
        cluster.node(i).wait_listening(deadline)


def watch_until_full_isr(cluster, topic: str, timeout: float = 60):
    """Poll metadata until the partition has a leader and an ISR of 3; returns
    the distinct (leader, ISR) states seen, in order, with their times."""
    seen: list = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        try:
            state = partition_state(cluster, topic)[0]
            now = (state[0], tuple(state[2]))
        except Exception as e:  # noqa: BLE001 - nodes are still starting
            now = f"{type(e).__name__}"
        if not seen or seen[-1][1] != now:
            seen.append((round(time.monotonic() - t0, 1), now))
        if isinstance(now, tuple) and now[0] >= 0 and len(now[1]) == 3:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{topic}-0 did not get a leader and a full ISR within {timeout}s; "
                f"states seen (seconds, (leader, isr)): {seen}\n{stderr_lines(cluster, topic)}"
            )
        time.sleep(0.2)


def check_everything_acknowledged_is_there(cluster, topic: str, acked: dict[int, int], produced: int,
                                           context: str) -> None:
    max_off = max(acked.values())
    # The high watermark may take a moment to pass every acknowledged offset
    # after the election; if it never does, the checks below say what is missing.
    try:
        wait_until("the high watermark to pass every acknowledged offset",
                   lambda: watermarks(cluster.bootstrap, topic, [0])[0][1] > max_off, timeout=20)
    except AssertionError as e:
        context = f"{context}\n{e}"
    got = consume_all(cluster.bootstrap, topic, [0], timeout=60).get(0, [])
    at = {off: int(v) for off, _k, v, _ts in got}
    where: dict[int, list[int]] = {}
    for off, _k, v, _ts in got:
        where.setdefault(int(v), []).append(off)
    lost = sorted(v for v in acked if v not in where)
    misplaced = sorted((v, off, where[v]) for v, off in acked.items() if v in where and off not in where[v])
    duplicated = {v: offs for v, offs in where.items() if len(offs) > 1}
    unknown = sorted(v for v in where if not 0 <= v < produced)
    values = [at[o] for o in sorted(at)]
    out_of_order = [(o, a, b) for o, a, b in zip(sorted(at)[1:], values, values[1:]) if b <= a]
    report = (
        f"{len(acked)} acknowledged (offsets up to {max_off}), {len(got)} in the log; lost {len(lost)}, "
        f"misplaced {len(misplaced)}, duplicated {len(duplicated)}, unknown {len(unknown)}, "
        f"out of order {len(out_of_order)}\n{context}"
    )
    print(report)
    detail = f"{report}\n{stderr_lines(cluster, topic)}"
    assert not lost, f"acknowledged records lost, e.g. {lost[:10]} (last {lost[-3:]})\n{detail}"
    assert not misplaced, f"records not at their acknowledged offsets, e.g. {misplaced[:5]}\n{detail}"
    assert not duplicated, f"duplicated, e.g. {list(duplicated.items())[:5]}\n{detail}"
    assert not unknown, f"values never produced, e.g. {unknown[:5]}\n{detail}"
    assert not out_of_order, f"out of order, e.g. {out_of_order[:5]}\n{detail}"


def check_replicas_identical(cluster, topic: str, context: str) -> None:
    def same():
        logs = [partition_log_bytes(cluster, i, topic, 0) for i in cluster.ids]
        return logs if len(set(logs)) == 1 else None

    try:
        logs = wait_until("every replica of the partition to hold the same bytes", same, timeout=30)
    except AssertionError as e:
        per_node = {i: (len(partition_log_bytes(cluster, i, topic, 0)), last_offset_on_disk(cluster, i, topic))
                    for i in cluster.ids}
        raise AssertionError(f"{e}\n(bytes, last offset) per node: {per_node}\n{context}\n"
                             f"{stderr_lines(cluster, topic)}") from None
    assert len(logs[0]) > 0


def cut_unsynced_tail(cluster, topic: str, node: int, max_acked_offset: int, extra_batches: int) -> str:
    """Cut node's log after the batch holding the last acknowledged offset and
    ``extra_batches`` more, tearing the next one: what a power cut may take
    from a replica that fsynced every acknowledged record."""
    data = partition_log_bytes(cluster, node, topic, 0)
    batches = complete_batches(data)
    holding = [k for k, b in enumerate(batches) if b[2] <= max_acked_offset <= b[3]]
    assert holding, f"node {node} does not hold acknowledged offset {max_acked_offset}"
    keep = holding[0] + extra_batches
    if keep + 1 >= len(batches):
        return f"node {node}: nothing past the acknowledged tail to cut"
    # Tear the batch after the ones kept, halfway.
    start, end = batches[keep + 1][0], batches[keep + 1][1]
    cut_at = start + (end - start) // 2
    segs = segments(cluster, node, topic)
    before_last = sum(p.stat().st_size for p in segs[:-1])
    assert cut_at >= before_last, "the cut would reach into a closed segment"
    os.truncate(segs[-1], cut_at - before_last)
    return f"node {node}: kept through offset {batches[keep][3]}, cut {len(data) - cut_at} bytes"


def crash_cut_and_recover(cluster, topic: str, leader: int, writer: AckedWriter, cut_all=False) -> None:
    assert writer.acked, "nothing was acknowledged before the crash"
    assert not writer.failed, f"delivery errors before the crash: {writer.failed[:5]}"
    max_acked = max(writer.acked.values())
    if cut_all:
        cut = "; ".join(cut_unsynced_tail(cluster, topic, i, max_acked, extra)
                        for i, extra in zip(cluster.ids, (0, 1, 3)))
    else:
        cut = cut_leader_tail(cluster, topic, leader, max_acked)

    restart_leader_first(cluster, leader)
    states = watch_until_full_isr(cluster, topic)
    context = (f"leader before the crash: node {leader}; {cut}\n(leader, isr) after the restart: {states}\n"
               f"(time, node, epoch) of the leaderships the nodes logged since the restart: "
               f"{leaderships_since_restart(cluster, topic)}")
    check_everything_acknowledged_is_there(cluster, topic, writer.acked, writer.next, context)
    check_replicas_identical(cluster, topic, context)


CACHED = {"write.caching": "true"}


def test_lost_tail_on_the_leader_after_a_whole_cluster_crash_loses_nothing_the_others_hold(cluster3):
    topic = topic_name("lost-tail")
    leader = create_replicated(cluster3, topic, partitions=1, config=CACHED)[0][0]

    writer = AckedWriter(cluster3, topic)
    deadline = time.monotonic() + 60
    while writer.next < TOTAL:
        writer.write(500, deadline)
        assert time.monotonic() < deadline, f"producing took too long ({len(writer.acked)} acknowledged)"
    left = writer.p.flush(max(1.0, deadline - time.monotonic()))
    assert left == 0, f"{left} records unacknowledged after flush"
    assert len(writer.acked) == TOTAL, f"{len(writer.acked)} of {TOTAL} acknowledged; errors {writer.failed[:5]}"
    assert sorted(writer.acked.values()) == list(range(TOTAL)), "acknowledged offsets are not 0..N-1"
    # Leadership did not move meanwhile.
    assert partition_state(cluster3, topic)[0][0] == leader

    kill_all_at_once(cluster3)
    writer.stop_counting()
    del writer.p
    crash_cut_and_recover(cluster3, topic, leader, writer)


def crash_mid_stream(cluster, topic: str, leader: int, cut_all: bool) -> None:
    writer = AckedWriter(cluster, topic)
    deadline = time.monotonic() + 60
    # About 5000 records a second, so that what is in flight at the crash is
    # far less than the 64 KiB cut.
    while len(writer.acked) < 3 * TOTAL // 4:
        writer.write(100, deadline)
        writer.p.poll(0.02)
        assert time.monotonic() < deadline, f"producing took too long ({len(writer.acked)} acknowledged)"
    assert partition_state(cluster, topic)[0][0] == leader

    # Crash while the producer still writes: keep records in flight for a
    # moment, then stop counting acknowledgements and kill every broker (the
    # delivery callbacks run only inside poll(), on this thread, so nothing
    # acknowledged after this point is counted).
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        writer.write(20, deadline)
        time.sleep(0.002)
    writer.counting = False
    kill_all_at_once(cluster)
    writer.stop_counting()
    del writer.p
    print(f"{writer.next} produced, {len(writer.acked)} acknowledged before the crash")
    crash_cut_and_recover(cluster, topic, leader, writer, cut_all=cut_all)


def test_lost_tail_on_the_leader_after_a_crash_mid_stream_loses_no_acknowledged_record(cluster3):
    topic = topic_name("lost-tail-mid")
    leader = create_replicated(cluster3, topic, partitions=1, config=CACHED)[0][0]
    crash_mid_stream(cluster3, topic, leader, cut_all=False)


def test_durable_mode_loses_nothing_acknowledged_when_every_broker_loses_its_unsynced_tail(cluster3):
    topic = topic_name("durable")
    leader = create_replicated(cluster3, topic, partitions=1, config={"write.caching": "false"})[0][0]
    crash_mid_stream(cluster3, topic, leader, cut_all=True)
