"""TLS listeners with real clients: confluent-kafka and kcat (librdkafka)
over SSL, with and without client certificates, beside a PLAINTEXT listener
on the same broker.

Each listener advertises its own endpoint, so a client that bootstraps on the
SSL port is sent to the SSL port for every partition leader and for its group
coordinator, and a PLAINTEXT client stays on the PLAINTEXT port.

Bad input gets its connection closed, a log line with the client's address,
and nothing else: a plaintext client on the TLS port, a client without a
certificate where one is required, a certificate from another CA, an expired
one, and a subject that no ``ssl.principal.mapping.rules`` rule maps. Good
clients are served throughout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port, weir_bin
from interop_helpers import create_topic, keyed_records, produce, topic_name
from pki import Issued, Pki

KCAT = shutil.which("kcat")


class TlsBroker(Broker):
    """A broker with a PLAINTEXT listener (the harness waits on it) and an SSL one."""

    def __init__(self, tmp: Path, pki: Pki, client_auth: str, rules: str | None = None):
        self.ssl_port = free_port()
        overrides = [
            f"ssl.keystore.location={pki.broker.keystore}",
            f"ssl.truststore.location={pki.ca.path}",
            f"ssl.client.auth={client_auth}",
        ]
        if rules is not None:
            overrides.append(f"ssl.principal.mapping.rules={rules}")
        extra = ["--offsets-topic-replication-factor", "1"]
        for o in overrides:
            extra += ["--override", o]
        super().__init__(weir_bin(), tmp, extra_args=extra)

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--listeners")
        cmd[i + 1] = f"PLAINTEXT://{self.bootstrap},SSL://{self.ssl_bootstrap}"
        return cmd


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def start(tmp_path: Path, pki: Pki, client_auth: str, rules: str | None = None) -> TlsBroker:
    broker = TlsBroker(tmp_path / "broker", pki, client_auth, rules)
    broker.start()
    return broker


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki):
    broker = start(tmp_path, pki, "none")
    try:
        yield broker
        assert broker.alive(), "the broker died\n" + broker.stderr_tail()
    finally:
        broker.close()


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki):
    # Clients of OU=eng are named by their CN in lower case; no rule names anyone else.
    broker = start(tmp_path, pki, "required", rules="RULE:^CN=([^,]+),OU=eng,.*$/$1/L")
    try:
        yield broker
        assert broker.alive(), "the broker died\n" + broker.stderr_tail()
    finally:
        broker.close()


def ssl_conf(pki: Pki, client: Issued | None = None) -> dict:
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca.path)}
    if client is not None:
        conf["ssl.certificate.location"] = str(client.cert_path)
        conf["ssl.key.location"] = str(client.key_path)
    return conf


def metadata_ports(bootstrap: str, conf: dict) -> set[int]:
    md = AdminClient({"bootstrap.servers": bootstrap, **conf}).list_topics(timeout=15)
    return {b.port for b in md.brokers.values()}


def test_confluent_kafka_over_tls_with_a_group(tls_broker: TlsBroker, pki: Pki):
    conf = ssl_conf(pki)
    assert metadata_ports(tls_broker.ssl_bootstrap, conf) == {tls_broker.ssl_port}
    assert metadata_ports(tls_broker.bootstrap, {}) == {tls_broker.port}

    t = topic_name("tls")
    create_topic(tls_broker.bootstrap, t, partitions=3)
    records = keyed_records(2000)
    acks = produce(tls_broker.ssl_bootstrap, t, records, conf=conf)
    assert len(acks) == len(records)

    # A group consumer over TLS: its coordinator is found on the SSL listener.
    from confluent_kafka import Consumer
    c = Consumer({
        "bootstrap.servers": tls_broker.ssl_bootstrap,
        "group.id": f"g-{t}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **conf,
    })
    got = []
    try:
        c.subscribe([t])
        deadline = time.monotonic() + 60
        while len(got) < len(records) and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.key().decode(), m.value().decode()))
        c.commit(asynchronous=False)
    finally:
        c.close()
    # Fetched bytes come back whole over TLS (copied, where PLAINTEXT uses sendfile).
    assert sorted(got) == sorted(records)


def kcat(*args, input=None, timeout=60) -> subprocess.CompletedProcess:
    if KCAT is None:
        pytest.fail("kcat not installed (apt-get install kcat; see .ci/run)", pytrace=False)
    return subprocess.run([KCAT, *args], input=input, capture_output=True, text=True,
                          timeout=timeout)


def kcat_tls(pki: Pki, client: Issued | None) -> list[str]:
    out = []
    for k, v in ssl_conf(pki, client).items():
        out += ["-X", f"{k}={v}"]
    return out


def test_kcat_over_mutual_tls(mtls_broker: TlsBroker, pki: Pki):
    t = topic_name("mtls")
    bs = mtls_broker.ssl_bootstrap
    tls = kcat_tls(pki, pki.alice)
    lines = "".join(f"k{i}:v{i}\n" for i in range(500))
    res = kcat("-b", bs, *tls, "-P", "-t", t, "-K:", "-X", "acks=all", input=lines)
    assert res.returncode == 0 and "fail" not in res.stderr.lower(), res.stderr
    res = kcat("-b", bs, *tls, "-C", "-t", t, "-e", "-o", "beginning", "-J", "-q")
    assert res.returncode == 0, res.stderr
    got = sorted(json.loads(line)["payload"] for line in res.stdout.splitlines() if line)
    assert got == sorted(f"v{i}" for i in range(500))
    res = kcat("-b", bs, *tls, "-L", "-J", timeout=30)
    assert res.returncode == 0, res.stderr
    assert {b["name"] for b in json.loads(res.stdout)["brokers"]} == {bs}


def refused(bootstrap: str, conf: dict) -> bool:
    """Whether a producer with ``conf`` gets nothing delivered within a few seconds."""
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 4000,
                  "socket.timeout.ms": 3000, **conf},
                 error_cb=lambda e: None)
    delivered = []
    p.produce("tls-refused", b"x", on_delivery=lambda err, m: delivered.append(err))
    p.flush(10)
    return bool(delivered) and delivered[0] is not None


def test_bad_tls_clients_are_closed_and_logged_and_the_rest_served(mtls_broker: TlsBroker, pki: Pki):
    bs = mtls_broker.ssl_bootstrap
    cases = {
        "a plaintext client on the TLS port": {},
        "no client certificate": ssl_conf(pki),
        "a certificate from another CA": ssl_conf(pki, pki.stranger),
        "an expired certificate": ssl_conf(pki, pki.expired),
        "a subject no rule maps": ssl_conf(pki, pki.ops),
    }
    assert not refused(bs, ssl_conf(pki, pki.alice)), "the control case was refused"
    for what, conf in cases.items():
        before = mtls_broker.stderr_text().count("TLS handshake failed")
        assert refused(bs, conf), f"{what} was served"
        if what != "a subject no rule maps":
            after = mtls_broker.stderr_text().count("TLS handshake failed")
            assert after > before, f"{what}: no handshake failure was logged"
    log = mtls_broker.stderr_text()
    assert "peer=127.0.0.1:" in log, log[-5000:]
    assert "no ssl.principal.mapping.rules rule matches 'CN=bob,OU=ops,O=Weir,C=US'" in log, log[-5000:]

    # A good client is still served, on both listeners.
    t = topic_name("after-bad")
    records = keyed_records(100)
    assert len(produce(bs, t, records, conf=ssl_conf(pki, pki.alice))) == len(records)
    assert len(produce(mtls_broker.bootstrap, t, records)) == len(records)


def test_a_cluster_replicates_over_mutual_tls(tmp_path: Path, pki: Pki):
    """Three nodes whose only broker listener is SSL with client certificates
    required, and an authorizer: followers fetch from leaders over TLS, presenting
    the broker's own certificate (its subject a super user, so it has
    ClusterAction), and acks=all writes survive a leader's kill -9. A client
    whose certificate names a principal without ACLs is refused. The metadata
    quorum's port (CONTROLLER mapped to SSL) is mutual TLS too: a forged Vote in
    plain TCP, or from a trusted certificate that is not a super user, or from an
    untrusted one, is refused, logged, and never answered."""
    from cluster import Cluster
    from confluent_kafka.admin import NewTopic

    extra = ["--offsets-topic-replication-factor", "3"]
    for o in [f"ssl.keystore.location={pki.broker.keystore}",
              f"ssl.truststore.location={pki.ca.path}",
              "ssl.client.auth=required",
              "listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL",
              "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users=User:CN=localhost,O=Weir tests;User:CN=alice,OU=eng,O=Weir,C=US"]:
        extra += ["--override", o]
    conf = ssl_conf(pki, pki.alice)
    with Cluster(3, extra_args=extra) as c:
        c.broker_listener = "SSL"
        c.client_conf = conf
        c.start_all()
        bs = c.bootstrap
        a = AdminClient({"bootstrap.servers": bs, **conf})
        t = topic_name("tls-cluster")
        a.create_topics([NewTopic(t, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[t].result(30)

        def isr_sizes() -> list[int]:
            md = AdminClient({"bootstrap.servers": c.live_bootstrap(), **conf}).list_topics(t, timeout=10)
            return [len(p.isrs) for p in md.topics[t].partitions.values()]

        records = keyed_records(3000)
        first, second = records[:1500], records[1500:]
        assert len(produce(bs, t, first, conf=conf)) == len(first)
        deadline = time.monotonic() + 30
        while isr_sizes() != [3, 3, 3]:
            assert time.monotonic() < deadline, f"ISRs {isr_sizes()} never reached 3\n" + c.stderr_tails()
            time.sleep(0.5)

        # CN=bob has no ACLs: refused, whichever broker leads.
        from confluent_kafka import KafkaError, Producer
        refused = []
        p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 8000, "retries": 0,
                      **ssl_conf(pki, pki.ops)})
        p.produce(t, b"x", on_delivery=lambda err, _m: refused.append(err))
        p.flush(20)
        assert [e.code() if e else None for e in refused] == \
            [KafkaError.TOPIC_AUTHORIZATION_FAILED], refused

        forge_quorum_messages(c, pki)

        # Kill the leader of partition 0; the rest lead, and acks=all goes on over TLS.
        md = AdminClient({"bootstrap.servers": bs, **conf}).list_topics(t, timeout=10)
        leader = md.topics[t].partitions[0].leader
        c.kill(leader)
        assert len(produce(c.live_bootstrap(), t, second, conf=conf)) == len(second)
        c.start(leader)
        deadline = time.monotonic() + 60
        while isr_sizes() != [3, 3, 3]:
            assert time.monotonic() < deadline, f"ISRs {isr_sizes()} never healed\n" + c.stderr_tails()
            time.sleep(0.5)

        from confluent_kafka import Consumer
        cons = Consumer({"bootstrap.servers": bs, "group.id": f"g-{t}",
                         "auto.offset.reset": "earliest", **conf})
        got = []
        try:
            cons.subscribe([t])
            deadline = time.monotonic() + 60
            while len(set(got)) < len(records) and time.monotonic() < deadline:
                for m in cons.consume(num_messages=500, timeout=0.5):
                    assert m.error() is None, m.error()
                    got.append((m.key().decode(), m.value().decode()))
        finally:
            cons.close()
        # A retry after the kill may have written a record twice; none may be missing.
        assert set(got) == set(records), f"{len(set(got))} of {len(records)} read back"


def _vote_frame() -> bytes:
    """A Vote RPC as a voter would send it to the quorum's port (version 1, kind 2)."""
    import json
    import struct
    body = json.dumps({"vote": {"leader_id": {"term": 999, "node_id": 9}, "committed": False},
                       "last_log_id": None}).encode()
    msg = bytes([1, 2]) + body
    return struct.pack(">I", len(msg)) + msg


def _answered(sock) -> bool:
    """Whether the peer answered a frame (rather than closing or alerting)."""
    import socket as _socket
    import ssl
    sock.settimeout(5)
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, ssl.SSLError, _socket.timeout, OSError):
        return False
    return len(data) > 4 and data[4:5] == b"{"


def forge_quorum_messages(c, pki: Pki) -> None:
    import socket
    import ssl
    node = c.nodes[1]
    addr = (node.addr, node.cport)
    # Plain TCP to a TLS port: the bytes are not a ClientHello.
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(_vote_frame())
        assert not _answered(s), "a plaintext Vote was answered"

    def tls_vote(client: Issued) -> bool:
        ctx = ssl.create_default_context(cafile=str(pki.ca.path))
        ctx.check_hostname = False
        ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
        try:
            with socket.create_connection(addr, timeout=5) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.sendall(_vote_frame())
                    return _answered(s)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return False

    # CN=bob is trusted but not a super user; mallory's CA is not trusted.
    assert not tls_vote(pki.ops), "a Vote from a principal that is not a super user was answered"
    assert not tls_vote(pki.stranger), "a Vote over an untrusted certificate was answered"
    deadline = time.monotonic() + 10
    while True:
        log = c.nodes[1].stderr_text()
        if "is not in super.users" in log and log.count("quorum connection refused") >= 3:
            break
        assert time.monotonic() < deadline, log[-5000:]
        time.sleep(0.2)
    # The quorum itself is unharmed: a topic is still made.
    a = AdminClient({"bootstrap.servers": c.live_bootstrap(), **ssl_conf(pki, pki.alice)})
    t = topic_name("after-forgery")
    from confluent_kafka.admin import NewTopic
    a.create_topics([NewTopic(t, num_partitions=1, replication_factor=3)])[t].result(30)
