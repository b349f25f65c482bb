"""Disks that fill up or fail, seen through confluent-kafka.

A full disk: one broker's data directory is a small tmpfs, filled by another
file until only a little space is left.  Produces past that fail with a
storage error (each failed write is undone, the log is not poisoned), nothing
acknowledged is lost, and once the other file is removed the same broker
takes writes again without a restart.

A failed disk: the partition directory of a three-node cluster's leader is
made read-only underneath it (a read-only bind mount), so its next segment
roll fails as a failed device's writes would.  The broker takes its log
directory offline as Kafka does: it asks the controller to move its
leaderships away and fence it, and the idempotent acks=all producer carries
on with the new leader without losing an acknowledged record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import Broker, weir_bin
from interop_helpers import consume_all, create_topic, topic_name
from test_replication import create_replicated, partition_state, wait_until


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def fill(path: Path, leave_bytes: int) -> None:
    """Write zeros to ``path`` until only about ``leave_bytes`` are free on its filesystem."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as f:
        left = max(0, free - leave_bytes)
        chunk = bytes(1 << 20)
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


class Acked:
    """Delivery reports of one producer: acknowledged values by offset, and errors."""

    def __init__(self):
        self.by_offset: dict[int, bytes] = {}
        self.errors: list = []

    def __call__(self, err, msg):
        if err is None:
            self.by_offset[msg.offset()] = msg.value()
        else:
            self.errors.append(err)


@pytest.fixture
def small_disk_broker():
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run the suite as root (as CI does)", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="weir-disk-"))
    broker = Broker(weir_bin(), tmp, extra_args=["--offsets-topic-replication-factor", "1"])
    run("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(broker.log_dir))
    try:
        broker.start()
        yield broker
        assert broker.proc.poll() is None, "the broker died\n" + broker.stderr_tail()
    finally:
        try:
            if broker.proc is not None:
                broker.stop(kill9=True)
        finally:
            subprocess.run(["umount", "-l", str(broker.log_dir)], capture_output=True, timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)


def test_a_full_disk_refuses_produces_loses_nothing_and_recovers_by_itself(small_disk_broker):
    b = small_disk_broker
    topic = topic_name("full-disk")
    create_topic(b.bootstrap, topic, partitions=1)
    filler = Path(b.log_dir) / "filler"
    fill(filler, leave_bytes=3 << 20)

    acked = Acked()
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 8000})
    value = b"x" * 1000
    deadline = time.monotonic() + 60
    sent = 0
    while not acked.errors and time.monotonic() < deadline:
        for _ in range(200):
            p.produce(topic, value=value + b"%08d" % sent, partition=0, on_delivery=acked)
            sent += 1
        p.poll(0.05)
    p.flush(20)
    assert acked.errors, f"no produce failed on a full disk ({len(acked.by_offset)} acknowledged)"
    assert acked.by_offset, "nothing was acknowledged before the disk filled"
    stderr = b.stderr_text()
    assert "write was undone" in stderr, "the broker did not report undone writes:\n" + b.stderr_tail()
    assert "refusing further writes" not in stderr, "a full disk poisoned the log:\n" + b.stderr_tail()

    # Space returns: the same broker takes writes again, without a restart.
    filler.unlink()
    after = Acked()
    p2 = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True})
    wait_until("a produce to succeed once space returned", lambda: (
        p2.produce(topic, value=b"after", partition=0, on_delivery=after), p2.flush(10), after.by_offset)[2],
        timeout=30, interval=0.5)

    got = consume_all(b.bootstrap, topic, [0], timeout=60).get(0, [])
    stored = {off: v.encode() for off, _k, v, _ts in got}
    lost = [o for o, v in acked.by_offset.items() if stored.get(o) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. offsets {lost[:5]}"
    values = [v for _o, _k, v, _ts in got]
    assert len(values) == len(set(values)), "duplicated records"


def test_a_failed_log_directory_moves_leadership_away(cluster3):
    if os.geteuid() != 0:
        pytest.fail("this test bind-mounts: run the suite as root (as CI does)", pytrace=False)
    topic = topic_name("failed-dir")
    leaders = create_replicated(cluster3, topic, partitions=1, config={"segment.bytes": "65536"})
    leader = leaders[0][0]
    acked = Acked()
    p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 60000})

    def write(n: int, start: int) -> int:
        for i in range(start, start + n):
            p.produce(topic, value=b"%08d" % i + b"y" * 200, partition=0, on_delivery=acked)
        p.poll(0.05)
        return start + n

    sent = write(2000, 0)
    assert p.flush(30) == 0
    part_dir = Path(cluster3.node(leader).log_dir) / f"{topic}-0"
    run("mount", "--bind", str(part_dir), str(part_dir))
    try:
        run("mount", "-o", "remount,bind,ro", str(part_dir))
        # The next roll on the leader fails; the broker must hand its leadership over.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sent = write(200, sent)
            state = partition_state(cluster3, topic)[0]
            if state[0] not in (leader, -1):
                break
            time.sleep(0.05)
        new_leader = partition_state(cluster3, topic)[0][0]
        assert new_leader not in (leader, -1), (
            f"leadership stayed on {leader} after its log directory failed\n"
            + cluster3.node(leader).stderr_tail())
        sent = write(2000, sent)
        assert p.flush(60) == 0, "records left unacknowledged after the failover"
        assert not acked.errors, f"delivery errors: {acked.errors[:5]}"
        assert "the log directory failed" in cluster3.node(leader).stderr_text()
        # Every acknowledged record is there once, in order, read from the new leader.
        got = consume_all(cluster3.bootstrap, topic, [0], timeout=60).get(0, [])
        values = [int(v[:8]) for _o, _k, v, _ts in got]
        assert sorted(set(values)) == list(range(sent)), "acknowledged records lost"
        assert len(values) == len(set(values)) == sent, "duplicated records"
        assert values == sorted(values), "records out of order"
    finally:
        subprocess.run(["umount", "-l", str(part_dir)], capture_output=True, timeout=30)
