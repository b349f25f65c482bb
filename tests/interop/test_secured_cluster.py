"""A three-node cluster whose brokers speak only SASL_PLAINTEXT, the
inter-broker listener included, with an authorizer: followers log in to
leaders with SCRAM as User:broker (a super user, so they have ClusterAction),
the ISR fills and acks=all writes survive the kill -9 of a leader; a client
logged in as a user without ACLs is refused, and one granted Write by
``weir acls`` writes. A wrong inter-broker password is one line at start.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster
from conftest import weir_bin
from interop_helpers import keyed_records, produce, topic_name

MECHANISM = "SCRAM-SHA-512"
USERS = {"broker": "broker-secret", "admin": "admin-secret", "carol": "carol-secret"}


def sasl(user: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
            "sasl.username": user, "sasl.password": USERS[user]}


def secured_args(broker_password: str = USERS["broker"]) -> list[str]:
    args = ["--offsets-topic-replication-factor", "3"]
    for user, password in USERS.items():
        args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="broker" password="{broker_password}";')
    for o in ["authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users=User:broker;User:admin",
              f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
              f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas}",
              "connection.failed.authentication.delay.ms=20"]:
        args += ["--override", o]
    return args


def test_a_sasl_cluster_replicates_as_a_super_user(tmp_path: Path):
    with Cluster(3, extra_args=secured_args()) as c:
        c.broker_listener = "SASL_PLAINTEXT"
        c.client_conf = sasl("admin")
        c.start_all()
        bs = c.bootstrap
        conf = sasl("admin")
        a = AdminClient({"bootstrap.servers": bs, **conf})
        t = topic_name("sasl-cluster")
        a.create_topics([NewTopic(t, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[t].result(30)

        def isr_sizes() -> list[int]:
            md = AdminClient({"bootstrap.servers": c.live_bootstrap(), **conf}).list_topics(
                t, timeout=10)
            return [len(p.isrs) for p in md.topics[t].partitions.values()]

        records = keyed_records(2000)
        first, second = records[:1000], records[1000:]
        assert len(produce(bs, t, first, conf=conf)) == len(first)
        deadline = time.monotonic() + 30
        while isr_sizes() != [3, 3, 3]:
            assert time.monotonic() < deadline, \
                f"ISRs {isr_sizes()} never reached 3\n" + c.stderr_tails()
            time.sleep(0.5)
        leader = a.list_topics(t, timeout=10).topics[t].partitions[0].leader
        c.kill(leader)
        assert len(produce(c.live_bootstrap(), t, second, conf=conf)) == len(second)
        c.start(leader)
        deadline = time.monotonic() + 60
        while isr_sizes() != [3, 3, 3]:
            assert time.monotonic() < deadline, \
                f"ISRs {isr_sizes()} never healed\n" + c.stderr_tails()
            time.sleep(0.5)

        # carol has no ACLs: refused; granted Write by weir acls: writes.
        def carol_writes() -> list:
            p = Producer({"bootstrap.servers": c.live_bootstrap(), "message.timeout.ms": 8000,
                          "retries": 0, **sasl("carol")})
            errors = []
            p.produce(t, b"x", on_delivery=lambda err, _m: errors.append(err))
            p.flush(20)
            return errors
        assert [e.code() if e else None for e in carol_writes()] == \
            [KafkaError.TOPIC_AUTHORIZATION_FAILED]
        props = tmp_path / "admin.properties"
        props.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={MECHANISM}\n"
                         f"sasl.username=admin\nsasl.password={USERS['admin']}\n")
        res = subprocess.run([str(weir_bin()), "acls", "--bootstrap-server", c.live_bootstrap(),
                              "--command-config", str(props), "--add", "--allow-principal",
                              "User:carol", "--operation", "Write", "--topic", t],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert carol_writes() == [None]


def test_a_wrong_inter_broker_password_is_one_line(tmp_path: Path):
    """A broker whose inter-broker credentials are wrong cannot replicate: its fetches are
    refused and logged, and the leader keeps it out of the ISR."""
    with Cluster(3, extra_args=secured_args(), node_args={
            3: ["--override", "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                'org.apache.kafka.common.security.scram.ScramLoginModule required '
                'username="broker" password="wrong";']}) as c:
        c.broker_listener = "SASL_PLAINTEXT"
        c.client_conf = sasl("admin")
        c.start_all()
        conf = sasl("admin")
        a = AdminClient({"bootstrap.servers": c.bootstrap, **conf})
        t = topic_name("sasl-wrong")
        a.create_topics([NewTopic(t, num_partitions=1, replication_factor=3)])[t].result(30)
        assert len(produce(c.bootstrap, t, keyed_records(50), conf=conf)) == 50
        time.sleep(3)
        md = a.list_topics(t, timeout=10).topics[t].partitions[0]
        if md.leader != 3:
            assert 3 not in md.isrs, md.isrs
        logs = c.stderr_tails()
        assert "SASL authentication failed" in logs, logs[-4000:]
    assert "replica fetch failed" in logs, logs[-4000:]
