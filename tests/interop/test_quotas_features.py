"""Client quotas and feature flags (issue 17): DescribeClientQuotas and AlterClientQuotas through
kafka-python's admin client (its own request classes, which its KafkaAdminClient has no method
for yet), byte-rate and request quotas enforced on confluent-kafka producers and consumers
(throttle_time_ms, KIP-219), and features through kafka-python's describe_features and
update_features (KIP-584)."""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

from interop_helpers import create_topic, produce, topic_name
from test_metrics import scrape, value

Entry = AlterClientQuotasRequest.EntryData


def kp_admin(bs: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)


def send(admin: KafkaAdminClient, request):
    return admin._manager.run(admin._manager.send, request)


def alter(admin, *entries, validate_only=False):
    """entries: (entity [(type, name)], ops [(key, value or None to remove)])."""
    request = AlterClientQuotasRequest(
        entries=[Entry(entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                       ops=[Entry.OpData(key=k, value=float(v or 0), remove=v is None) for k, v in ops])
                 for entity, ops in entries],
        validate_only=validate_only)
    return [(e.error_code, e.error_message) for e in send(admin, request).entries]


def describe(admin, components, strict=False):
    """components: [(type, match_type, name)]; returns {((type, name), ...): {key: value}}."""
    request = DescribeClientQuotasRequest(
        components=[DescribeClientQuotasRequest.ComponentData(entity_type=t, match_type=m, match=n)
                    for t, m, n in components],
        strict=strict)
    response = send(admin, request)
    assert response.error_code == 0, response
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in response.entries}


def test_quotas_are_set_described_and_removed(weir):
    a = kp_admin(weir.bootstrap)
    try:
        codes = [c for c, _ in alter(
            a, ([("user", "alice"), ("client-id", "app")], [("producer_byte_rate", 1024)]),
            ([("client-id", None)], [("consumer_byte_rate", 2048), ("request_percentage", 25)]),
            ([("user", None)], [("producer_byte_rate", 4096)]))]
        assert codes == [0, 0, 0], codes
        everything = describe(a, [])
        assert everything == {
            (("user", "alice"), ("client-id", "app")): {"producer_byte_rate": 1024.0},
            (("client-id", None),): {"consumer_byte_rate": 2048.0, "request_percentage": 25.0},
            (("user", None),): {"producer_byte_rate": 4096.0},
        }, everything
        assert list(describe(a, [("user", 0, "alice")])) == [(("user", "alice"), ("client-id", "app"))]
        assert describe(a, [("user", 0, "alice")], strict=True) == {}
        assert list(describe(a, [("user", 1, None)])) == [(("user", None),)]
        assert list(describe(a, [("client-id", 2, None)], strict=True)) == [(("client-id", None),)]
        # A dry run changes nothing; bad entries are refused one by one with INVALID_REQUEST.
        assert alter(a, ([("user", "bob")], [("producer_byte_rate", 1)]), validate_only=True)[0][0] == 0
        assert (("user", "bob"),) not in describe(a, [])
        refused = alter(a, ([("ip", "10.0.0.1")], [("producer_byte_rate", 1)]),
                        ([("user", "bob")], [("controller_mutation_rate", 5)]),
                        ([("user", "bob")], [("producer_byte_rate", -5)]),
                        ([("user", "bob"), ("user", "eve")], [("producer_byte_rate", 5)]),
                        ([("user", "carol")], [("consumer_byte_rate", 700)]))
        assert [code for code, _ in refused] == [42, 42, 42, 42, 0], refused
        assert "ip quotas" in refused[0][1] and "controller_mutation_rate" in refused[1][1], refused
        # Removing a key, and a removal of what is not set.
        codes = [c for c, _ in alter(a, ([("client-id", None)], [("request_percentage", None)]),
                                     ([("user", "nobody")], [("producer_byte_rate", None)]))]
        assert codes == [0, 0], codes
        after = describe(a, [])
        assert after[(("client-id", None),)] == {"consumer_byte_rate": 2048.0}, after
        assert (("user", "nobody"),) not in after and (("user", "carol"),) in after
    finally:
        a.close()


def test_a_producer_over_its_byte_rate_is_throttled_to_it(weir):
    bs = weir.bootstrap
    t = topic_name("quota-produce")
    create_topic(bs, t, partitions=1)
    rate = 200_000
    a = kp_admin(bs)
    try:
        assert alter(a, ([("client-id", "slow-producer")], [("producer_byte_rate", rate)]))[0][0] == 0
    finally:
        a.close()
    throttles = []
    p = Producer({"bootstrap.servers": bs, "client.id": "slow-producer", "linger.ms": 5,
                  "batch.size": 16384, "statistics.interval.ms": 500, "queue.buffering.max.kbytes": 256,
                  "stats_cb": lambda s: throttles.extend(
                      b["throttle"]["max"] for b in json.loads(s)["brokers"].values()
                      if b.get("nodeid", -1) >= 0)})
    value = b"x" * 1000
    start = time.monotonic()
    marks = {}
    while (elapsed := time.monotonic() - start) < 9:
        for second in (2, 8):
            if elapsed >= second and second not in marks:
                marks[second] = (time.monotonic(),
                                 value_of(weir, "kafka_server_brokertopicmetrics_bytesin_total", t))
        try:
            p.produce(t, value)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    assert p.flush(30) == 0
    (t2, b2), (t8, b8) = marks[2], marks[8]
    measured = (b8 - b2) / (t8 - t2)
    assert abs(measured - rate) / rate < 0.10, f"{measured:.0f} B/s against a quota of {rate}"
    assert max(throttles, default=0) > 0, "librdkafka saw no throttle_time_ms"


def value_of(weir, name: str, topic: str) -> float:
    return value(scrape(weir.http), name, topic=topic) or 0.0


def test_a_consumer_over_its_byte_rate_is_throttled_to_it(weir):
    bs = weir.bootstrap
    t = topic_name("quota-fetch")
    create_topic(bs, t, partitions=1)
    produce(bs, t, [(None, "y" * 1000)] * 4000, partition=0)
    rate = 300_000
    a = kp_admin(bs)
    try:
        assert alter(a, ([("client-id", "slow-consumer")], [("consumer_byte_rate", rate)]))[0][0] == 0
    finally:
        a.close()
    c = Consumer({"bootstrap.servers": bs, "group.id": topic_name("g"), "client.id": "slow-consumer",
                  "enable.auto.commit": False, "fetch.max.bytes": 1_000_000})
    got = 0
    times = []
    try:
        c.assign([TopicPartition(t, 0, 0)])
        start = time.monotonic()
        while got < 4000 and time.monotonic() - start < 60:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    got += 1
                    times.append((time.monotonic() - start, len(m.value())))
    finally:
        c.close()
    assert got == 4000, got
    # Past the first burst, the bytes read follow the quota.
    window = [(s, n) for s, n in times if 2 <= s <= times[-1][0]]
    measured = sum(n for _, n in window) / (window[-1][0] - window[0][0])
    assert abs(measured - rate) / rate < 0.15, f"{measured:.0f} B/s against a quota of {rate}"
    assert times[-1][0] > 4000 * 1000 / rate * 0.8, times[-1]


def test_request_time_quota_throttles_a_busy_client(weir):
    bs = weir.bootstrap
    t = topic_name("quota-requests")
    create_topic(bs, t, partitions=1)
    a = kp_admin(bs)
    try:
        assert alter(a, ([("client-id", "busy")], [("request_percentage", 1)]))[0][0] == 0
    finally:
        a.close()
    throttles = []
    p = Producer({"bootstrap.servers": bs, "client.id": "busy", "linger.ms": 0,
                  "statistics.interval.ms": 200,
                  "stats_cb": lambda s: throttles.extend(
                      b["throttle"]["max"] for b in json.loads(s)["brokers"].values()
                      if b.get("nodeid", -1) >= 0)})
    deadline = time.monotonic() + 20
    sent = 0
    while time.monotonic() < deadline and max(throttles, default=0) == 0:
        # One record a request: many requests, each a little of the broker's time.
        p.produce(t, b"z")
        sent += 1
        p.flush(1)
    assert max(throttles, default=0) > 0, f"no throttle_time_ms after {sent} requests under a 1 % quota"
    assert p.flush(30) == 0


def test_features_describe_downgrade_and_upgrade(weir):
    bs = weir.bootstrap
    a = kp_admin(bs)
    try:
        assert a.describe_features()["group.version"] == {
            "supported": (1, 1), "finalized": (1, 1),
            "finalized_epoch": a.describe_features()["group.version"]["finalized_epoch"]}
        refused = a.update_features({"group.version": 5})["group.version"]
        assert "InvalidUpdateVersion" in refused and "0 to 1" in refused, refused
        assert "InvalidUpdateVersion" in a.update_features({"group.version": 0})["group.version"]
        assert "not supported" in a.update_features({"no.such.feature": 1})["no.such.feature"]
        assert a.update_features({"group.version": ("SAFE_DOWNGRADE", 0)}) == {"group.version": "OK"}
        assert "finalized" not in a.describe_features()["group.version"]
        # With group.version 0 the consumer group protocol is not offered: a consumer-protocol
        # member finds no coordinator and reads nothing; after the upgrade one reads.
        t = topic_name("kip848-off")
        create_topic(bs, t, partitions=1)
        produce(bs, t, [(None, "r")] * 5, partition=0)
        logs = []

        class Logs(logging.Handler):
            def emit(self, record):
                logs.append(record.getMessage())

        log = logging.getLogger("kip848-off")
        log.addHandler(Logs())
        log.setLevel(logging.DEBUG)
        off = consumer_protocol_member(bs, t, logger=log, debug="cgrp")
        try:
            assert read_for(off, 6) == 0
            assert any("ConsumerGroupHeartbeatRequest not supported" in m for m in logs), logs[-20:]
        finally:
            off.close()
        assert a.update_features({"group.version": 1}) == {"group.version": "OK"}
        assert a.describe_features()["group.version"]["finalized"] == (1, 1)
        on = consumer_protocol_member(bs, t)
        try:
            assert read_for(on, 30, until=5) == 5
        finally:
            on.close()
    finally:
        a.close()


def consumer_protocol_member(bs: str, topic: str, **extra) -> Consumer:
    c = Consumer({"bootstrap.servers": bs, "group.id": topic_name("kip848"),
                  "group.protocol": "consumer", "auto.offset.reset": "earliest", **extra})
    c.subscribe([topic])
    return c


def read_for(c: Consumer, seconds: float, until: int | None = None) -> int:
    got = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until is None or got < until):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    return got


def test_weir_configs_sets_quotas_that_kafka_python_reads(weir):
    from conftest import weir_bin
    import subprocess

    def cli(*args):
        return subprocess.run([str(weir_bin()), "configs", "--bootstrap-server", weir.bootstrap, *args],
                              capture_output=True, text=True, timeout=60)

    done = cli("--alter", "--entity-type", "clients", "--entity-name", "etl",
               "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152")
    assert done.returncode == 0, done.stderr
    assert cli("--alter", "--entity-type", "users", "--entity-default",
               "--add-config", "request_percentage=50").returncode == 0
    a = kp_admin(weir.bootstrap)
    try:
        assert describe(a, []) == {
            (("client-id", "etl"),): {"producer_byte_rate": 1048576.0, "consumer_byte_rate": 2097152.0},
            (("user", None),): {"request_percentage": 50.0},
        }
    finally:
        a.close()
    shown = cli("--describe", "--entity-type", "clients", "--entity-name", "etl")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == ("Quota configs for client-id 'etl' are "
                                    "consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0"), shown.stdout
    assert cli("--alter", "--entity-type", "clients", "--entity-name", "etl",
               "--delete-config", "producer_byte_rate").returncode == 0
    shown = cli("--describe", "--entity-type", "clients", "--entity-name", "etl")
    assert shown.stdout.strip().endswith("are consumer_byte_rate=2097152.0"), shown.stdout
    # A user with a quota and no SCRAM credential is described by its quotas.
    assert cli("--alter", "--entity-type", "users", "--entity-name", "alice",
               "--add-config", "producer_byte_rate=1000").returncode == 0
    shown = cli("--describe", "--entity-type", "users", "--entity-name", "alice")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "Quota configs for user-principal 'alice' are producer_byte_rate=1000.0"
    bad = cli("--alter", "--entity-type", "clients", "--entity-name", "etl",
              "--add-config", "producer_byte_rate=fast")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    bad = cli("--alter", "--entity-type", "clients", "--entity-name", "etl",
              "--add-config", "controller_mutation_rate=5")
    assert bad.returncode != 0 and "controller_mutation_rate" in bad.stderr, bad.stderr
