"""Hostile input a broker must survive, seen through confluent-kafka.

A decompression bomb: a zstd record batch of about 130 KB whose records expand
to 4 GiB is produced (the broker stores batches as they come, without
decompressing them), then ListOffsets by timestamp makes the broker look
inside it.  The broker answers that one request with an error, its peak RSS
stays far below the bomb's size, and it keeps serving other clients.

A connection flood: with ``max.connections`` set, connections beyond it are
closed as soon as they are accepted, while a producer and a consumer that were
already connected keep working without an error; once the flood is gone, new
clients connect again.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import zstandard
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cluster import _uvarint, raw_request
from interop_helpers import consume_all, create_topic, topic_name

GIB = 1 << 30

# -- a record batch built by hand ------------------------------------------


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    """Zig-zag varint, as record fields are written."""
    return _uvarint((n << 1) ^ (n >> 63))


def zstd_bomb(records: int, value_size: int, timestamp_ms: int) -> bytes:
    """A v2 record batch of ``records`` records of ``value_size`` zero bytes
    each, zstd-compressed (attributes 4), with a valid CRC-32C."""
    value = bytes(value_size)
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    compressed = []
    for i in range(records):
        body = (b"\x00" + varint(0) + varint(i) + varint(-1) + varint(value_size))
        tail = varint(0)  # no headers
        length = len(body) + value_size + len(tail)
        compressed.append(compressor.compress(varint(length) + body))
        compressed.append(compressor.compress(value))
        compressed.append(compressor.compress(tail))
    compressed.append(compressor.flush())
    payload = b"".join(compressed)
    after_crc = struct.pack(
        ">hiqqqhii", 4, records - 1, timestamp_ms, timestamp_ms, -1, -1, -1, records
    ) + payload
    crc = crc32c(after_crc)
    # base offset, batch length, partition leader epoch, magic, crc, then the rest.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, batch_length, -1, 2, crc) + after_crc


def produce_raw(host: str, port: int, topic: str, partition: int, batch: bytes, timeout: float = 30) -> int:
    """Produce v3 of one batch with acks=1; returns the partition's error code."""
    client_id = b"weir-interop"
    header = struct.pack(">hhih", 0, 3, 7, len(client_id)) + client_id
    name = topic.encode()
    body = (
        struct.pack(">h", -1)  # no transactional id
        + struct.pack(">hi", 1, 30000)  # acks=1, timeout
        + struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
        + struct.pack(">i", 1) + struct.pack(">i", partition)
        + struct.pack(">i", len(batch)) + batch
    )
    data = raw_request(host, port, header + body, "Produce", timeout)
    off = 4  # correlation id
    (ntopics,) = struct.unpack_from(">i", data, off)
    off += 4
    assert ntopics == 1
    (nlen,) = struct.unpack_from(">h", data, off)
    off += 2 + nlen
    (nparts,) = struct.unpack_from(">i", data, off)
    off += 4
    assert nparts == 1
    _index, code = struct.unpack_from(">ih", data, off)
    return code


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.weir_args("--message-max-bytes", "2000000")
def test_a_decompression_bomb_is_refused_with_bounded_memory(weir):
    topic = topic_name("bomb")
    create_topic(weir.bootstrap, topic, partitions=1)
    ts = int(time.time() * 1000)
    bomb = zstd_bomb(records=4096, value_size=1 << 20, timestamp_ms=ts)
    assert len(bomb) < 1_000_000, f"the bomb is {len(bomb)} bytes"
    host, port = weir.bootstrap.split(":")
    code = produce_raw(host, int(port), topic, 0, bomb)
    assert code == 0, f"the bomb was refused at produce with {code}: the broker must not decompress it there"

    # Look up by time: the broker must open the batch to find the first record at ts.
    consumer = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "bomb-looker"})
    try:
        try:
            answer = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=30)
            error = answer[0].error
        except KafkaException as e:
            error = e.args[0]
        assert error is not None, f"ListOffsets by time answered {answer} for a batch it cannot open"
        # CORRUPT_MESSAGE, which librdkafka calls INVALID_MSG.
        assert error.code() == KafkaError.INVALID_MSG, error
    finally:
        consumer.close()
    peak = peak_rss_mb(weir.proc.pid)
    assert peak < 600, f"broker peak RSS {peak:.0f} MB after a 4 GiB decompression bomb"

    # Everyone else is still served.
    other = topic_name("after-bomb")
    create_topic(weir.bootstrap, other, partitions=1)
    p = Producer({"bootstrap.servers": weir.bootstrap})
    for i in range(100):
        p.produce(other, value=b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    got = consume_all(weir.bootstrap, other, [0], timeout=30, expect_total=100)
    assert len(got[0]) == 100
    assert weir.proc.poll() is None, "the broker died"


@pytest.mark.weir_args("--max-connections", "24")
def test_a_connection_flood_is_refused_and_connected_clients_see_no_error(weir):
    topic = topic_name("flood")
    create_topic(weir.bootstrap, topic, partitions=1)
    errors: list = []
    delivered = [0]
    p = Producer({"bootstrap.servers": weir.bootstrap, "acks": "all",
                  "error_cb": lambda e: errors.append(e)})
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "flood-reader",
                  "auto.offset.reset": "earliest", "error_cb": lambda e: errors.append(e)})
    c.assign([TopicPartition(topic, 0, 0)])

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    # Both clients connected and working before the flood.
    p.produce(topic, value=b"before", partition=0, on_delivery=on_delivery)
    assert p.flush(30) == 0
    msg = c.poll(15)
    assert msg is not None and msg.error() is None and msg.value() == b"before"

    host, port = weir.bootstrap.split(":")
    flood = []
    refused = 0
    for _ in range(200):
        s = socket.create_connection((host, int(port)), timeout=5)
        flood.append(s)
    # Connections past the limit are closed by the broker: reads see the end of the stream.
    for s in flood:
        s.settimeout(0.5)
        try:
            if s.recv(1) == b"":
                refused += 1
        except (socket.timeout, TimeoutError):
            pass
        except ConnectionResetError:
            refused += 1
    assert refused >= 200 - 24, f"only {refused} of 200 flood connections were refused"

    # The clients connected before the flood keep producing and consuming meanwhile.
    read = 0
    deadline = time.monotonic() + 30
    for i in range(500):
        p.produce(topic, value=b"during-%d" % i, partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    while read < 500 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is None:
            read += 1
    assert read == 500, f"the consumer read {read} of 500 during the flood"
    assert delivered[0] == 501
    assert not errors, f"connected clients saw errors: {errors[:5]}"

    for s in flood:
        s.close()
    # With the flood gone, a new client connects.
    fresh = Producer({"bootstrap.servers": weir.bootstrap})
    fresh.produce(topic, value=b"after", partition=0)
    assert fresh.flush(30) == 0
    c.close()
