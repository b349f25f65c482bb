"""SASL with real clients: SCRAM-SHA-256 from kafka-python over
SASL_PLAINTEXT, SCRAM-SHA-512 and PLAIN from confluent-kafka (librdkafka) over
SASL_SSL, credentials made at first start (``--add-scram``) and by
AlterUserScramCredentials (confluent-kafka's admin API, the path
``kafka-configs.sh`` takes), and bad input: a wrong password, an unknown
user, an unknown mechanism, a request before authentication and an oversized
authentication frame each close only their own connection, with a log line
naming the client's address; the broker keeps serving.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import Broker, free_port, weir_bin
from interop_helpers import keyed_records, produce, topic_name
from pki import Pki

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"


class SaslBroker(Broker):
    """PLAINTEXT (the harness waits on it), SASL_PLAINTEXT and SASL_SSL."""

    def __init__(self, tmp: Path, pki: Pki):
        self.sasl_port = free_port()
        self.sasl_ssl_port = free_port()
        extra = ["--offsets-topic-replication-factor", "1"]
        for o in [f"ssl.keystore.location={pki.broker.keystore}",
                  "connection.failed.authentication.delay.ms=50"]:
            extra += ["--override", o]
        for m in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            extra += ["--add-scram", f"{m}=[name={ADMIN},password={ADMIN_PASSWORD}]"]
        super().__init__(weir_bin(), tmp, extra_args=extra)

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_ssl_port}"

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--listeners")
        cmd[i + 1] = (f"PLAINTEXT://{self.bootstrap},SASL_PLAINTEXT://{self.sasl_bootstrap},"
                      f"SASL_SSL://{self.sasl_ssl_bootstrap}")
        return cmd


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def sasl_broker(tmp_path: Path, pki: Pki):
    broker = SaslBroker(tmp_path / "broker", pki)
    try:
        broker.start()
        yield broker
        assert broker.alive(), "the broker died\n" + broker.stderr_tail()
    finally:
        broker.close()


def sasl_ssl(pki: Pki, mechanism: str, user: str, password: str) -> dict:
    return {"security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.ca.path),
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}


def consume_group(bootstrap: str, topic: str, n: int, conf: dict) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", **conf})
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.key().decode(), m.value().decode()))
    finally:
        c.close()
    return got


def test_kafka_python_scram_sha_256_over_sasl_plaintext(sasl_broker: SaslBroker):
    from kafka import KafkaConsumer, KafkaProducer

    auth = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PASSWORD)
    t = topic_name("kp-scram")
    p = KafkaProducer(bootstrap_servers=sasl_broker.sasl_bootstrap, acks="all", **auth)
    for i in range(300):
        p.send(t, key=f"k{i}".encode(), value=f"v{i}".encode())
    p.flush(30)
    p.close()
    c = KafkaConsumer(t, bootstrap_servers=sasl_broker.sasl_bootstrap, group_id=f"g-{t}",
                      auto_offset_reset="earliest", consumer_timeout_ms=10000, **auth)
    got = sorted(m.value.decode() for m in c)
    c.close()
    assert got == sorted(f"v{i}" for i in range(300))


def test_confluent_kafka_scram_sha_512_and_plain_over_sasl_ssl(sasl_broker: SaslBroker, pki: Pki):
    t = topic_name("ck-scram")
    records = keyed_records(1000)
    scram = sasl_ssl(pki, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD)
    assert len(produce(sasl_broker.sasl_ssl_bootstrap, t, records, conf=scram)) == len(records)
    plain = sasl_ssl(pki, "PLAIN", ADMIN, ADMIN_PASSWORD)
    got = consume_group(sasl_broker.sasl_ssl_bootstrap, t, len(records), plain)
    assert sorted(got) == sorted(records)
    # Every broker a SASL_SSL client is told of is on the SASL_SSL listener.
    md = AdminClient({"bootstrap.servers": sasl_broker.sasl_ssl_bootstrap, **scram}).list_topics(timeout=10)
    assert {b.port for b in md.brokers.values()} == {sasl_broker.sasl_ssl_port}


def test_users_made_and_removed_through_the_admin_api(sasl_broker: SaslBroker, pki: Pki):
    admin = AdminClient({"bootstrap.servers": sasl_broker.sasl_ssl_bootstrap,
                         **sasl_ssl(pki, "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD)})
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                     b"bob-secret"),
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100),
                                     b"carol-secret"),
    ])
    futs["bob"].result(15)
    with pytest.raises(Exception, match="(?i)iterations"):
        futs["carol"].result(15)

    described = admin.describe_user_scram_credentials().result(15)
    assert set(described) == {ADMIN, "bob"}
    infos = {(i.mechanism, i.iterations) for i in described["bob"].scram_credential_infos}
    assert infos == {(ScramMechanism.SCRAM_SHA_256, 8192)}
    with pytest.raises(Exception, match="(?i)not exist"):
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(15)

    bob = sasl_ssl(pki, "SCRAM-SHA-256", "bob", "bob-secret")
    t = topic_name("bob")
    assert len(produce(sasl_broker.sasl_ssl_bootstrap, t, keyed_records(10), conf=bob)) == 10

    futs = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)])
    futs["bob"].result(15)
    assert refused(sasl_broker.sasl_ssl_bootstrap, bob)
    assert 'user "bob" has no SCRAM-SHA-256 credential' in sasl_broker.stderr_text()

    # --add-scram applies once for the cluster: a deleted admin stays deleted across a restart.
    futs = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(ADMIN, ScramMechanism.SCRAM_SHA_512)])
    futs[ADMIN].result(15)
    sasl_broker.restart()
    bob_admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap})
    left = bob_admin.describe_user_scram_credentials().result(15)
    assert {i.mechanism for i in left[ADMIN].scram_credential_infos} == {ScramMechanism.SCRAM_SHA_256}


def refused(bootstrap: str, conf: dict) -> bool:
    """Whether a producer with ``conf`` gets nothing delivered within a few seconds."""
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 4000,
                  "socket.timeout.ms": 3000, **conf}, error_cb=lambda e: None)
    delivered = []
    p.produce("sasl-refused", b"x", on_delivery=lambda err, m: delivered.append(err))
    p.flush(10)
    return bool(delivered) and delivered[0] is not None


def request(api: int, version: int, body: bytes, correlation: int = 7) -> bytes:
    client = b"raw"
    header = struct.pack(">hhih", api, version, correlation, len(client)) + client
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_frame(s: socket.socket) -> bytes | None:
    """One size-prefixed answer, or None when the broker closed the connection."""
    data = b""
    while len(data) < 4:
        chunk = s.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    size = struct.unpack(">i", data)[0]
    out = b""
    while len(out) < size:
        chunk = s.recv(size - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def closed(s: socket.socket) -> bool:
    s.settimeout(10)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_bad_sasl_input_closes_only_its_connection(sasl_broker: SaslBroker, pki: Pki):
    bs = sasl_broker.sasl_ssl_bootstrap
    good = sasl_ssl(pki, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD)
    assert not refused(bs, good), "the control case was refused"
    for conf in [sasl_ssl(pki, "SCRAM-SHA-512", ADMIN, "wrong"),
                 sasl_ssl(pki, "SCRAM-SHA-256", "nobody", "x"),
                 sasl_ssl(pki, "PLAIN", ADMIN, "wrong")]:
        assert refused(bs, conf), f"{conf['sasl.mechanism']} {conf['sasl.username']} was served"

    host, port = "127.0.0.1", sasl_broker.sasl_port
    mechanism = b"GSSAPI"
    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the offered ones, then closed.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request(17, 1, struct.pack(">h", len(mechanism)) + mechanism))
        answer = read_frame(s)
        assert answer is not None
        correlation, code, count = struct.unpack(">ihi", answer[:10])
        assert (correlation, code) == (7, 33)
        offered, off = [], 10
        for _ in range(count):
            (n,) = struct.unpack(">h", answer[off:off + 2])
            offered.append(answer[off + 2:off + 2 + n].decode())
            off += 2 + n
        assert offered == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        assert closed(s)
    # Metadata before authentication: closed without an answer.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request(3, 0, struct.pack(">i", 0)))
        assert read_frame(s) is None
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE (34), then closed.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request(36, 0, struct.pack(">i", 1) + b"x"))
        answer = read_frame(s)
        assert answer is not None and struct.unpack(">ih", answer[:6]) == (7, 34)
        assert closed(s)
    # A frame over sasl.server.max.receive.size (512 KiB) before authentication.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack(">i", 1_000_000) + b"\0" * 64)
        assert closed(s)

    log = sasl_broker.stderr_text()
    assert log.count("SASL authentication failed") >= 3, log[-5000:]
    assert log.count('wrong password for user "admin"') >= 2, log[-5000:]  # SCRAM and PLAIN
    assert 'user "nobody" has no SCRAM-SHA-256 credential' in log
    assert "SASL mechanism not offered" in log
    assert "before authentication" in log
    assert not refused(bs, good), "a good client was refused after the bad ones"


def test_a_v0_handshake_takes_bare_tokens(sasl_broker: SaslBroker):
    """SaslHandshake v0, then the PLAIN token bare (no SaslAuthenticate around it), as clients
    before KIP-152 send it; then requests are served on the same connection."""
    with socket.create_connection(("127.0.0.1", sasl_broker.sasl_port), timeout=10) as s:
        s.sendall(request(17, 0, struct.pack(">h", 5) + b"PLAIN"))
        answer = read_frame(s)
        assert answer is not None and struct.unpack(">ih", answer[:6]) == (7, 0)
        token = b"\0" + ADMIN.encode() + b"\0" + ADMIN_PASSWORD.encode()
        s.sendall(struct.pack(">i", len(token)) + token)
        assert read_frame(s) == b"", "a PLAIN success is one empty token"
        # ApiVersions v0 now answers: correlation 9, error 0.
        s.sendall(request(18, 0, b"", correlation=9))
        answer = read_frame(s)
        assert answer is not None and struct.unpack(">ih", answer[:6]) == (9, 0)
    with socket.create_connection(("127.0.0.1", sasl_broker.sasl_port), timeout=10) as s:
        s.sendall(request(17, 0, struct.pack(">h", 5) + b"PLAIN"))
        assert read_frame(s) is not None
        token = b"\0" + ADMIN.encode() + b"\0wrong"
        s.sendall(struct.pack(">i", len(token)) + token)
        assert closed(s)


def test_sarama_plain_over_tls(sasl_broker: SaslBroker, pki: Pki, sarama_bin):
    """Sarama 1.22: SASL PLAIN over TLS (its SaslHandshake v0, then the bare token), producing
    and consuming through the SASL_SSL listener; and refused with a wrong password."""
    from test_sarama import run_sarama

    t = topic_name("sarama-sasl")
    auth = ["-tls-ca", str(pki.ca.path), "-sasl-user", ADMIN]
    res, s = run_sarama(sarama_bin, sasl_broker.sasl_ssl_bootstrap, t, *auth,
                        "-sasl-password", ADMIN_PASSWORD, "-count", "500", "-partitions", "3")
    detail = f"summary: {s}\nsarama log (tail):\n{res.stderr[-6000:]}"
    assert res.returncode == 0 and s["ok"], detail
    assert s["produced"] == 500 and s["consumed"] == 500 and s["missing"] == 0, detail
    res, s = run_sarama(sarama_bin, sasl_broker.sasl_ssl_bootstrap, topic_name("sarama-bad"), *auth,
                        "-sasl-password", "wrong", "-count", "1", timeout=40)
    assert not s["ok"], s
    assert sasl_broker.stderr_text().count('wrong password for user "admin"') >= 1


def test_weir_tools_with_command_config(sasl_broker: SaslBroker, pki: Pki, tmp_path: Path):
    """The weir tools over SASL_SSL with SCRAM and over SASL_PLAINTEXT with a JAAS line, from
    Kafka's client properties (--command-config); a wrong password is one line and exit 1."""
    import subprocess

    def weir(*args, config: Path, input: str | None = None, bootstrap: str):
        return subprocess.run([str(weir_bin()), *args, "--bootstrap-server", bootstrap,
                               "--command-config", str(config)],
                              input=input, capture_output=True, text=True, timeout=60)

    scram_ssl = tmp_path / "scram-ssl.properties"
    scram_ssl.write_text(
        "security.protocol=SASL_SSL\n"
        f"ssl.ca.location={pki.ca.path}\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.username={ADMIN}\nsasl.password={ADMIN_PASSWORD}\n")
    jaas = tmp_path / "jaas.properties"
    jaas.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{ADMIN_PASSWORD}";\n')
    t = topic_name("cli-sasl")
    res = weir("topics", "create", "--topic", t, "--partitions", "2",
               config=scram_ssl, bootstrap=sasl_broker.sasl_ssl_bootstrap)
    assert res.returncode == 0, res.stderr
    res = weir("produce", "--topic", t, config=scram_ssl, input="a\nb\nc\n",
               bootstrap=sasl_broker.sasl_ssl_bootstrap)
    assert res.returncode == 0, res.stderr
    res = weir("consume", "--topic", t, "--from-beginning", "--max-messages", "3",
               config=jaas, bootstrap=sasl_broker.sasl_bootstrap)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["a", "b", "c"]

    wrong = tmp_path / "wrong.properties"
    wrong.write_text(jaas.read_text().replace(ADMIN_PASSWORD, "nope"))
    res = weir("topics", "list", config=wrong, bootstrap=sasl_broker.sasl_bootstrap)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "SASL authentication failed" in lines[0], res.stderr


def test_weir_users_and_kafka_configs_users(sasl_broker: SaslBroker, pki: Pki, tmp_path: Path):
    """SCRAM users made, listed and removed with `weir users` and with `weir configs
    --entity-type users` (kafka-configs.sh's syntax); real clients log in with them: kcat and
    confluent-kafka with SCRAM-SHA-512 over SASL_SSL, kafka-python with SCRAM-SHA-256."""
    import subprocess
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KpError

    admin_props = tmp_path / "admin.properties"
    admin_props.write_text(
        "security.protocol=SASL_SSL\n"
        f"ssl.ca.location={pki.ca.path}\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.username={ADMIN}\nsasl.password={ADMIN_PASSWORD}\n")

    def weir(*args, input: str | None = None):
        return subprocess.run([str(weir_bin()), *args, "--bootstrap-server",
                               sasl_broker.sasl_ssl_bootstrap, "--command-config",
                               str(admin_props)],
                              input=input, capture_output=True, text=True, timeout=60)

    res = weir("users", "set", "--user", "dave", "--mechanism", "SCRAM-SHA-512",
               "--password", "-", "--iterations", "8192", input="dave-512\n")
    assert res.returncode == 0, res.stderr
    res = weir("configs", "--alter", "--entity-type", "users", "--entity-name", "dave",
               "--add-config", "SCRAM-SHA-256=[iterations=4096,password=dave-256]")
    assert res.returncode == 0, res.stderr
    res = weir("users", "list", "--user", "dave")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split("\n")[:2]) == [
        "dave\tSCRAM-SHA-256\titerations=4096", "dave\tSCRAM-SHA-512\titerations=8192"], res.stdout
    res = weir("configs", "--describe", "--entity-type", "users", "--entity-name", "dave")
    assert "SCRAM-SHA-512=iterations=8192" in res.stdout, res.stdout

    t = topic_name("users")
    records = keyed_records(100)
    assert len(produce(sasl_broker.sasl_ssl_bootstrap, t, records,
                       conf=sasl_ssl(pki, "SCRAM-SHA-512", "dave", "dave-512"))) == len(records)
    kcat = subprocess.run(
        ["kcat", "-b", sasl_broker.sasl_ssl_bootstrap, "-X", "security.protocol=SASL_SSL",
         "-X", f"ssl.ca.location={pki.ca.path}", "-X", "sasl.mechanism=SCRAM-SHA-512",
         "-X", "sasl.username=dave", "-X", "sasl.password=dave-512",
         "-C", "-t", t, "-e", "-o", "beginning", "-q", "-f", "%s\\n"],
        capture_output=True, text=True, timeout=60)
    assert kcat.returncode == 0, kcat.stderr
    assert sorted(kcat.stdout.split()) == sorted(v for _, v in records)

    def kafka_python_login(password: str) -> bool:
        try:
            p = KafkaProducer(bootstrap_servers=sasl_broker.sasl_bootstrap,
                              security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                              sasl_plain_username="dave", sasl_plain_password=password,
                              max_block_ms=5000)
        except KpError:
            return False
        try:
            p.send(t, b"x").get(timeout=10)
            return True
        except KpError:
            return False
        finally:
            p.close()

    assert kafka_python_login("dave-256")
    res = weir("configs", "--alter", "--entity-type", "users", "--entity-name", "dave",
               "--delete-config", "SCRAM-SHA-256")
    assert res.returncode == 0, res.stderr
    assert not kafka_python_login("dave-256")
    res = weir("users", "delete", "--user", "dave", "--mechanism", "SCRAM-SHA-512")
    assert res.returncode == 0, res.stderr
    assert refused(sasl_broker.sasl_ssl_bootstrap, sasl_ssl(pki, "SCRAM-SHA-512", "dave", "dave-512"))
    res = weir("users", "set", "--user", "dave", "--mechanism", "PLAIN", "--password", "x")
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_sessions_expire_and_clients_reauthenticate(tmp_path: Path, pki: Pki):
    """connections.max.reauth.ms (KIP-368): SaslAuthenticate v1 tells the session's length;
    confluent-kafka re-authenticates on its open connections and keeps producing, logged as
    re-authentications; a raw client that does not is closed at its first request after the
    session ends."""
    broker = SaslBroker(tmp_path / "broker", pki)
    broker.extra_args += ["--override", "connections.max.reauth.ms=2000"]
    try:
        broker.start()
        with socket.create_connection(("127.0.0.1", broker.sasl_port), timeout=10) as s:
            s.sendall(request(17, 1, struct.pack(">h", 5) + b"PLAIN"))
            assert read_frame(s) is not None
            token = b"\0" + ADMIN.encode() + b"\0" + ADMIN_PASSWORD.encode()
            s.sendall(request(36, 1, struct.pack(">i", len(token)) + token, correlation=8))
            answer = read_frame(s)
            assert answer is not None
            corr, error, msg_len = struct.unpack(">ihh", answer[:8])
            assert (corr, error) == (8, 0), answer
            at = 8 + max(msg_len, 0)
            (auth_len,) = struct.unpack(">i", answer[at:at + 4])
            at += 4 + auth_len
            (lifetime,) = struct.unpack(">q", answer[at:at + 8])
            assert lifetime == 2000
            s.sendall(request(18, 0, b"", correlation=9))
            assert read_frame(s) is not None, "served while the session lasts"
            time.sleep(2.5)
            s.sendall(request(18, 0, b"", correlation=10))
            assert read_frame(s) is None, "served after the session ended"

        conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": ADMIN, "sasl.password": ADMIN_PASSWORD}
        p = Producer({"bootstrap.servers": broker.sasl_bootstrap, "acks": "all", **conf})
        t = topic_name("reauth")
        errors, delivered = [], []
        deadline = time.monotonic() + 7
        i = 0
        while time.monotonic() < deadline:
            p.produce(t, f"v{i}".encode(), on_delivery=lambda err, m: (
                errors if err else delivered).append(err or m))
            i += 1
            p.poll(0.05)
        p.flush(30)
        assert not errors, errors
        assert len(delivered) == i
        log = broker.stderr_text()
        assert log.count("re-authenticated") >= 2, log[-4000:]
        assert "expired without re-authentication" in log
        assert broker.alive()
    finally:
        broker.close()
