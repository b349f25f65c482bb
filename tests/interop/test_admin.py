"""Admin APIs through confluent-kafka's AdminClient (and kafka-python's for
DescribeConfigs), dynamic broker configs included."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, ResourceType)

from interop_helpers import (
    admin,
    consume_all,
    create_topic,
    list_topic_names,
    produce,
    topic_name,
    wait_for_partitions,
    watermarks,
)


def describe_topic(bs, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bs)  # keep a reference: a collected AdminClient fails its futures
    return a.describe_configs([res], request_timeout=10)[res].result(timeout=15)


def test_describe_configs_topic(weir):
    bs = weir.bootstrap
    t = topic_name("adm-cfg")
    create_topic(bs, t, partitions=3)
    cfg = describe_topic(bs, t)
    for name in ("retention.ms", "cleanup.policy"):
        assert name in cfg, f"{name} missing from DescribeConfigs: {sorted(cfg)}"
    assert cfg["cleanup.policy"].value == "delete", cfg["cleanup.policy"]
    assert int(cfg["retention.ms"].value) == 7 * 24 * 3600 * 1000, cfg["retention.ms"]
    if "segment.bytes" in cfg:
        assert int(cfg["segment.bytes"].value) > 0


def test_create_topic_with_config_and_alter_configs(weir):
    bs = weir.bootstrap
    t = topic_name("adm-alter")
    create_topic(bs, t, partitions=1, config={"retention.ms": "3600000"})
    cfg = describe_topic(bs, t)
    assert cfg["retention.ms"].value == "3600000"

    res = ConfigResource(ResourceType.TOPIC, t, set_config={"retention.ms": "7200000"})
    a = admin(bs)
    a.alter_configs([res], request_timeout=10)[res].result(timeout=15)
    cfg = describe_topic(bs, t)
    assert cfg["retention.ms"].value == "7200000"


def test_describe_configs_broker(weir):
    bs = weir.bootstrap
    res = ConfigResource(ResourceType.BROKER, "0")
    a = admin(bs)
    cfg = a.describe_configs([res], request_timeout=10)[res].result(timeout=15)
    assert cfg, "broker 0 returned no configs"
    if "num.partitions" in cfg:
        assert cfg["num.partitions"].value == "3"


def alter_broker(bs, name: str, ops: list) -> None:
    if name == "":
        # confluent-kafka and kafka-python refuse a broker resource without a name: the
        # cluster default goes through weir configs (kafka-configs.sh --entity-default).
        import subprocess
        from conftest import weir_bin
        args = ["--add-config", ",".join(f"{op.name}={op.value}" for op in ops)] \
            if ops[0].incremental_operation == AlterConfigOpType.SET else \
            ["--delete-config", ",".join(op.name for op in ops)]
        res = subprocess.run([str(weir_bin()), "configs", "--bootstrap-server", bs, "--alter",
                              "--entity-type", "brokers", "--entity-default", *args],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            code = KafkaError.INVALID_CONFIG if "InvalidConfig" in res.stderr else \
                KafkaError._FAIL
            raise KafkaException(KafkaError(code, res.stderr.strip()))
        return
    res = ConfigResource(ResourceType.BROKER, name, incremental_configs=ops)
    a = admin(bs)
    a.incremental_alter_configs([res], request_timeout=10)[res].result(timeout=15)


def acks_all_error(bs, topic):
    """The error of one acks=all write, or None."""
    p = Producer({"bootstrap.servers": bs, "acks": "all", "message.timeout.ms": 5000,
                  "retries": 0})
    errors = []
    p.produce(topic, b"x", on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    assert len(errors) == 1
    return errors[0]


def test_dynamic_broker_configs_take_effect_without_a_restart(weir):
    """kafka-configs --entity-type brokers, through IncrementalAlterConfigs: the cluster
    default (broker \"\") and one broker's value reach topics while running, with their
    sources; removing them restores the static value. Unknown or static configs are refused."""
    bs = weir.bootstrap
    t = topic_name("adm-dyn")
    create_topic(bs, t, partitions=1)
    assert acks_all_error(bs, t) is None

    # min.insync.replicas=2 for the whole cluster: a one-replica topic refuses acks=all.
    alter_broker(bs, "", [ConfigEntry("min.insync.replicas", "2",
                                      incremental_operation=AlterConfigOpType.SET)])
    cfg = describe_topic(bs, t)
    assert cfg["min.insync.replicas"].value == "2"
    assert cfg["min.insync.replicas"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    err = acks_all_error(bs, t)
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err

    # This broker's own value wins over the cluster default.
    alter_broker(bs, "0", [ConfigEntry("min.insync.replicas", "1",
                                       incremental_operation=AlterConfigOpType.SET)])
    cfg = describe_topic(bs, t)
    assert cfg["min.insync.replicas"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert acks_all_error(bs, t) is None
    res = ConfigResource(ResourceType.BROKER, "0")
    a = admin(bs)
    broker_cfg = a.describe_configs([res], request_timeout=10)[res].result(timeout=15)
    assert broker_cfg["min.insync.replicas"].value == "1"
    assert broker_cfg["min.insync.replicas"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    for name in ("0", ""):
        alter_broker(bs, name, [ConfigEntry("min.insync.replicas", None,
                                            incremental_operation=AlterConfigOpType.DELETE)])
    cfg = describe_topic(bs, t)
    assert cfg["min.insync.replicas"].value == "1"
    assert cfg["min.insync.replicas"].source != ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    for bad in ("log.dirs", "no.such.config"):
        with pytest.raises(KafkaException) as e:
            alter_broker(bs, "", [ConfigEntry(bad, "1",
                                              incremental_operation=AlterConfigOpType.SET)])
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
    with pytest.raises(KafkaException) as e:
        alter_broker(bs, "", [ConfigEntry("log.retention.ms", "soon",
                                          incremental_operation=AlterConfigOpType.SET)])
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_delete_topic(weir):
    bs = weir.bootstrap
    t = topic_name("adm-del")
    keep = topic_name("adm-keep")
    create_topic(bs, t, partitions=3)
    create_topic(bs, keep, partitions=1)
    produce(bs, t, [("k", "v")] * 5)
    assert {t, keep} <= list_topic_names(bs)

    a = admin(bs)
    a.delete_topics([t], request_timeout=15, operation_timeout=15)[t].result(timeout=20)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and t in list_topic_names(bs):
        time.sleep(0.2)
    names = list_topic_names(bs)
    assert t not in names, names
    assert keep in names, names


def test_create_partitions(weir):
    bs = weir.bootstrap
    t = topic_name("adm-parts")
    create_topic(bs, t, partitions=3)
    a = admin(bs)
    a.create_partitions([NewPartitions(t, 5)], request_timeout=15)[t].result(timeout=20)
    wait_for_partitions(bs, t, 5)
    produce(bs, t, [(None, "p4")], partition=4)
    got = consume_all(bs, t, [4], expect_total=1)
    assert [m[2] for m in got[4]] == ["p4"]


def test_delete_records(weir):
    bs = weir.bootstrap
    t = topic_name("adm-delrec")
    create_topic(bs, t, partitions=1)
    produce(bs, t, [(None, str(i)) for i in range(10)], partition=0)
    tp = TopicPartition(t, 0, 4)
    a = admin(bs)
    a.delete_records([tp], request_timeout=15)[tp].result(timeout=20)
    assert watermarks(bs, t, [0])[0] == (4, 10)
    got = consume_all(bs, t, [0])
    assert [(m[0], m[2]) for m in got[0]] == [(i, str(i)) for i in range(4, 10)]


def test_describe_cluster(weir):
    bs = weir.bootstrap
    a = admin(bs)
    d = a.describe_cluster(request_timeout=10).result(timeout=15)
    assert [n.id for n in d.nodes] == [0], d.nodes
    assert d.nodes[0].host == "127.0.0.1" and d.nodes[0].port == weir.port
    assert d.controller is not None and d.controller.id == 0
    assert d.cluster_id, "empty cluster id"


def test_kafka_python_describe_configs(weir):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KpConfigResource, ConfigResourceType

    bs = weir.bootstrap
    t = topic_name("adm-kp-cfg")
    create_topic(bs, t, partitions=3)
    a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)
    try:
        res = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, t)], config_filter="all")
    finally:
        a.close()
    cfg = res["topic"][t]
    assert "retention.ms" in cfg and "cleanup.policy" in cfg, sorted(cfg)
    assert cfg["cleanup.policy"]["value"] == "delete", cfg["cleanup.policy"]
