"""ACLs with real clients (StandardAuthorizer semantics): a principal with no
ACLs is refused produce, consume, describe and group join (confluent-kafka and
kafka-python over SASL_PLAINTEXT with SCRAM); ``weir acls --add`` grants and
``--remove`` takes back; a deny overrides an allow; prefixed ACLs apply;
confluent-kafka's admin ACL API (CreateAcls, DescribeAcls, DeleteAcls) round
trips; the ACL APIs need Alter/Describe on the cluster; a Fetch that claims a
replica id from a principal without ClusterAction is refused.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

from conftest import Broker, free_port, weir_bin
from interop_helpers import topic_name

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
MECHANISM = "SCRAM-SHA-512"


class AclBroker(Broker):
    """An authorizer, super user User:admin; PLAINTEXT (User:ANONYMOUS, no ACLs) and
    SASL_PLAINTEXT with SCRAM users admin, alice and bob."""

    def __init__(self, tmp: Path):
        self.sasl_port = free_port()
        extra = ["--offsets-topic-replication-factor", "1"]
        for o in [f"authorizer.class.name={STANDARD_AUTHORIZER}", "super.users=User:admin",
                  "connection.failed.authentication.delay.ms=20"]:
            extra += ["--override", o]
        for user, password in PASSWORDS.items():
            extra += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        super().__init__(weir_bin(), tmp, extra_args=extra)

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--listeners")
        cmd[i + 1] = f"PLAINTEXT://{self.bootstrap},SASL_PLAINTEXT://{self.sasl_bootstrap}"
        return cmd


@pytest.fixture
def acl_broker(tmp_path: Path):
    broker = AclBroker(tmp_path / "broker")
    try:
        broker.start()
        yield broker
        assert broker.alive(), "the broker died\n" + broker.stderr_tail()
    finally:
        broker.close()


def sasl(user: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
            "sasl.username": user, "sasl.password": PASSWORDS[user]}


def weir_acls(broker: AclBroker, tmp: Path, *args: str, user: str = "admin"):
    config = tmp / f"{user}.properties"
    config.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={MECHANISM}\n"
                      f"sasl.username={user}\nsasl.password={PASSWORDS[user]}\n")
    return subprocess.run([str(weir_bin()), "acls", *args, "--bootstrap-server",
                           broker.sasl_bootstrap, "--command-config", str(config)],
                          capture_output=True, text=True, timeout=60)


def acls_ok(broker: AclBroker, tmp: Path, *args: str) -> str:
    res = weir_acls(broker, tmp, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def admin_client(broker: AclBroker, user: str = "admin") -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.sasl_bootstrap, **sasl(user)})


def create(broker: AclBroker, topic: str, partitions: int = 2) -> None:
    admin = admin_client(broker)
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    futures[topic].result(30)


def try_produce(broker: AclBroker, user: str, topic: str, n: int = 10) -> list:
    """Produces n records; returns the delivery errors (empty when all were written)."""
    p = Producer({"bootstrap.servers": broker.sasl_bootstrap, "message.timeout.ms": 8000,
                  "retries": 0, **sasl(user)})
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=cb)
    p.flush(20)
    return errors


def try_consume(broker: AclBroker, user: str, topic: str, group: str, n: int,
                timeout: float = 20) -> tuple[list, list]:
    """Reads up to n records in a group; returns (values, errors)."""
    c = Consumer({"bootstrap.servers": broker.sasl_bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", **sasl(user)})
    got, errors = [], []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < n and not errors and time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.5):
                if m.error() is not None:
                    errors.append(m.error())
                else:
                    got.append(m.value().decode())
    finally:
        c.close()
    return got, errors


def visible_topics(broker: AclBroker, user: str) -> set[str]:
    admin = admin_client(broker, user)
    md = admin.list_topics(timeout=10)
    return {name for name, t in md.topics.items() if t.error is None}


def test_no_acls_refuse_then_add_grants_and_remove_takes_back(acl_broker: AclBroker,
                                                              tmp_path: Path):
    t = topic_name("acl")
    group = f"g-{t}"
    create(acl_broker, t)
    assert not try_produce(acl_broker, "admin", t), "the super user must be able to write"

    # No ACLs: alice may not write, read, describe or join.
    errors = try_produce(acl_broker, "alice", t)
    assert errors and all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors
    assert t not in visible_topics(acl_broker, "alice")
    assert t in visible_topics(acl_broker, "admin")
    _, errors = try_consume(acl_broker, "alice", t, group, 1)
    assert errors, "a consumer without ACLs read the topic"
    assert any(e.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                            KafkaError.GROUP_AUTHORIZATION_FAILED) for e in errors), errors

    # Grant through weir acls, with kafka-acls.sh's flags.
    out = acls_ok(acl_broker, tmp_path, "--add", "--allow-principal", "User:alice",
                  "--producer", "--topic", t)
    assert "User:alice" in out and "WRITE" in out
    assert not try_produce(acl_broker, "alice", t)
    assert t in visible_topics(acl_broker, "alice")
    # Writing does not allow reading: joining needs Read on the group and the topic.
    _, errors = try_consume(acl_broker, "alice", t, group, 1)
    assert errors
    acls_ok(acl_broker, tmp_path, "--add", "--allow-principal", "User:alice", "--consumer",
            "--topic", t, "--group", group)
    got, errors = try_consume(acl_broker, "alice", t, group, 20)
    assert not errors, errors
    assert sorted(got) == sorted([f"v{i}" for i in range(10)] * 2)

    listed = acls_ok(acl_broker, tmp_path, "--list", "--topic", t)
    assert f"name={t}, patternType=LITERAL" in listed
    for op in ("WRITE", "READ", "DESCRIBE", "CREATE"):
        assert f"operation={op}, permissionType=ALLOW" in listed, listed

    # Remove: alice loses access again; bob never had it.
    out = acls_ok(acl_broker, tmp_path, "--remove", "--allow-principal", "User:alice",
                  "--topic", t)
    assert "Removed" in out
    errors = try_produce(acl_broker, "alice", t)
    assert errors and all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors)
    assert "User:alice" not in acls_ok(acl_broker, tmp_path, "--list", "--topic", t)
    assert try_produce(acl_broker, "bob", t)
    assert acl_broker.alive()


def test_deny_overrides_allow_and_prefixed_acls_apply(acl_broker: AclBroker, tmp_path: Path):
    prefix = topic_name("app") + "-"
    allowed, denied, fresh = prefix + "open", prefix + "closed", prefix + "fresh"
    for t in (allowed, denied):
        create(acl_broker, t, 1)
    other = topic_name("other")
    create(acl_broker, other, 1)
    # Everyone may do anything under the prefix; alice is denied writing one topic.
    acls_ok(acl_broker, tmp_path, "--add", "--allow-principal", "User:*", "--operation", "All",
            "--topic", prefix, "--resource-pattern-type", "prefixed")
    acls_ok(acl_broker, tmp_path, "--add", "--deny-principal", "User:alice", "--operation",
            "Write", "--topic", denied)
    assert not try_produce(acl_broker, "alice", allowed)
    assert not try_produce(acl_broker, "bob", denied)
    errors = try_produce(acl_broker, "alice", denied)
    assert errors and all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors)
    # A deny of Write leaves the prefixed allow of Describe: alice still sees the topic.
    assert {allowed, denied} <= visible_topics(acl_broker, "alice")
    assert other not in visible_topics(acl_broker, "alice")
    # The prefixed ACL covers a topic created after it, through auto-creation by Create.
    assert not try_produce(acl_broker, "bob", fresh)
    errors = try_produce(acl_broker, "bob", other)
    assert errors and all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors)
    listed = acls_ok(acl_broker, tmp_path, "--list", "--topic", denied,
                     "--resource-pattern-type", "match")
    assert "patternType=PREFIXED" in listed and "permissionType=DENY" in listed, listed


def test_confluent_admin_acl_api_and_who_may_use_it(acl_broker: AclBroker):
    admin = admin_client(acl_broker)
    t = topic_name("acl-admin")
    bindings = [
        AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:bob", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, "team-", ResourcePatternType.PREFIXED, "User:bob", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                   "User:bob", "127.0.0.1", AclOperation.DESCRIBE, AclPermissionType.DENY),
    ]
    for f in admin.create_acls(bindings).values():
        assert f.result(30) is None
    # Creating one again is accepted and adds nothing.
    for f in admin.create_acls(bindings[:1]).values():
        f.result(30)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob",
                                  None, AclOperation.ANY, AclPermissionType.ANY)
    described = admin.describe_acls(everything).result(30)
    assert sorted(map(str, described)) == sorted(map(str, bindings))
    matching = AclBindingFilter(ResourceType.GROUP, "team-blue", ResourcePatternType.MATCH,
                                None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(matching).result(30) == [bindings[1]]

    # An invalid ACL is refused with INVALID_REQUEST; the others in the call are made.
    bad = AclBinding(ResourceType.GROUP, "g", ResourcePatternType.LITERAL, "User:bob", "*",
                     AclOperation.WRITE, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([bad])[bad].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST

    # Only principals with Alter/Describe on the cluster may use the ACL APIs.
    # (librdkafka does not surface DescribeAcls' top-level error, so kafka-python asks.)
    from kafka.admin import ACLFilter, KafkaAdminClient
    from kafka.admin import ResourcePatternFilter as KpPattern
    from kafka.admin import ACLOperation as KpOperation
    from kafka.admin import ACLPermissionType as KpPermission
    from kafka.admin import ResourceType as KpResourceType
    from kafka.admin import ACLResourcePatternType as KpPatternType
    from kafka.errors import ClusterAuthorizationFailedError

    kp = KafkaAdminClient(bootstrap_servers=acl_broker.sasl_bootstrap,
                          security_protocol="SASL_PLAINTEXT", sasl_mechanism=MECHANISM,
                          sasl_plain_username="bob", sasl_plain_password=PASSWORDS["bob"])
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_acls(ACLFilter(principal=None, host="*", operation=KpOperation.ANY,
                                       permission_type=KpPermission.ANY,
                                       resource_pattern=KpPattern(KpResourceType.ANY, None,
                                                                  KpPatternType.ANY)))
    finally:
        kp.close()
    bob = admin_client(acl_broker, "bob")
    # Anyone may describe the cluster (bob's Describe is denied: no operations are told).
    described = bob.describe_cluster(include_authorized_operations=True).result(30)
    assert described.cluster_id and not described.authorized_operations
    with pytest.raises(KafkaException) as e:
        bob.create_acls(bindings[:1])[bindings[0]].result(30)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    deleted = admin.delete_acls([everything])
    assert sorted(map(str, deleted[everything].result(30))) == sorted(map(str, bindings))
    assert admin.describe_acls(everything).result(30) == []


def test_kafka_python_refused_then_granted(acl_broker: AclBroker, tmp_path: Path):
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    t = topic_name("kp-acl")
    create(acl_broker, t, 1)
    auth = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=MECHANISM,
                sasl_plain_username="bob", sasl_plain_password=PASSWORDS["bob"])
    p = KafkaProducer(bootstrap_servers=acl_broker.sasl_bootstrap, max_block_ms=5000, **auth)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            p.send(t, b"x").get(timeout=10)
    finally:
        p.close()
    acls_ok(acl_broker, tmp_path, "--add", "--allow-principal", "User:bob", "--operation",
            "Write", "--topic", t)
    p = KafkaProducer(bootstrap_servers=acl_broker.sasl_bootstrap, **auth)
    try:
        p.send(t, b"x").get(timeout=20)
    finally:
        p.close()


def _fetch_v4(replica_id: int, topic: str) -> bytes:
    """A Fetch v4 request frame that claims to come from broker `replica_id`."""
    t = topic.encode()
    body = struct.pack(">iiiib", replica_id, 100, 0, 1 << 20, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
    client = b"forger"
    header = struct.pack(">hhi", 1, 4, 7) + struct.pack(">h", len(client)) + client
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def _read_frame(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def test_forged_replica_fetch_is_refused(acl_broker: AclBroker, tmp_path: Path):
    """A Fetch with a replica id from User:ANONYMOUS (no ClusterAction) is refused on every
    partition (TOPIC_AUTHORIZATION_FAILED, as Kafka answers), although the same principal
    may read the topic as a consumer: no forged follower reads or moves a high watermark."""
    t = topic_name("forged")
    create(acl_broker, t, 1)
    acls_ok(acl_broker, tmp_path, "--add", "--allow-principal", "User:ANONYMOUS",
            "--operation", "Read", "--topic", t)
    host, port = acl_broker.bootstrap.split(":")
    for replica_id, expected in ((1, 29), (-1, 0)):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(_fetch_v4(replica_id, t))
            frame = _read_frame(s)
        # correlation id, throttle, 1 topic (name), 1 partition: index, error code
        (corr,) = struct.unpack(">i", frame[:4])
        assert corr == 7
        offset = 4 + 4 + 4
        (name_len,) = struct.unpack(">h", frame[offset:offset + 2])
        offset += 2 + name_len + 4
        partition, error = struct.unpack(">ih", frame[offset:offset + 6])
        assert (partition, error) == (0, expected), (replica_id, error)
    assert "replica fetch from a principal without ClusterAction refused" in \
        acl_broker.stderr_text()


def test_the_console_shows_no_records_under_acls(acl_broker: AclBroker):
    import json
    import urllib.error
    import urllib.request
    create(acl_broker, "console-secret")
    try:
        urllib.request.urlopen(f"{acl_broker.http}/api/messages?topic=console-secret", timeout=10)
        raise AssertionError("records were shown with ACLs in force")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and "ACLs" in json.loads(e.read())["error"]


def test_the_console_writes_nothing_under_acls_even_with_writes_on(tmp_path: Path):
    import json
    import urllib.error
    import urllib.request
    broker = AclBroker(tmp_path / "broker")
    broker.extra_args += ["--console-writes-enable", "true"]
    try:
        broker.start()
        create(broker, "console-secret")
        request = urllib.request.Request(
            f"{broker.http}/api/messages", method="POST",
            data=json.dumps({"topic": "console-secret", "value": "x"}).encode(),
            headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("the console wrote with ACLs in force")
        except urllib.error.HTTPError as e:
            assert e.code == 403 and "ACLs" in json.loads(e.read())["error"]
    finally:
        broker.close()
