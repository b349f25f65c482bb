"""KIP-890 part 1: a partition leader asks the transaction coordinator before a producer's
first transactional batch there. kafka-python's transactional producer is made to skip
AddPartitionsToTxn for one partition (as a buggy client, or a batch arriving after its
transaction ended, would): its batch there is refused with INVALID_TXN_STATE and opens no
transaction that nobody would end. With the check turned off, the same batch opens a hanging
transaction that holds read_committed readers back: the check is what prevents it."""

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError as PyKafkaError

from interop_helpers import create_topic, produce, topic_name
from test_transactions import read_values


def sneaky_producer(bs, txn_id, unadded):
    """A kafka-python transactional producer that never adds the partitions in the set
    `unadded` to its transactions and sends to them anyway."""
    p = KafkaProducer(
        bootstrap_servers=bs,
        transactional_id=txn_id,
        retries=3,
        request_timeout_ms=10000,
    )
    tm = p._transaction_manager
    add, allowed = tm.maybe_add_partition_to_transaction, tm.is_send_to_partition_allowed
    tm.maybe_add_partition_to_transaction = lambda tp: None if tp.partition in unadded else add(tp)
    tm.is_send_to_partition_allowed = lambda tp: True if tp.partition in unadded else allowed(tp)
    return p


def send_unadded(bs, txn_id, topic, partitions=2, remote=False):
    """Begins a transaction, writes to partition 0 (added) and to one never added; returns
    (that partition, the error of the write to it, or None when the broker took it). With
    `remote`, the partition is one whose leader is not the transaction's coordinator, so the
    leader asks it over the inter-broker listener."""
    unadded = set()
    p = sneaky_producer(bs, txn_id, unadded)
    try:
        p.init_transactions()
        candidates = list(range(1, partitions))
        if remote:
            from kafka import TopicPartition as KTP

            p.partitions_for(topic)
            coordinator = p._transaction_manager._transaction_coordinator
            candidates = [
                n
                for n in candidates
                if p._metadata.leader_for_partition(KTP(topic, n)) not in (None, coordinator)
            ]
            assert candidates, "every partition is led by the coordinator"
        target = candidates[0]
        unadded.add(target)
        p.begin_transaction()
        p.send(topic, value=b"added", partition=0).get(timeout=30)
        try:
            p.send(topic, value=b"unadded", partition=target).get(timeout=30)
            return target, None
        except PyKafkaError as e:
            return target, e
    finally:
        p.close(timeout=5)


def test_a_batch_to_a_partition_never_added_is_refused(weir):
    bs = weir.bootstrap
    t = topic_name("txn-verify")
    create_topic(bs, t, partitions=2)
    target, error = send_unadded(bs, "txn-verify", t)
    assert_refused_and_nothing_hangs(bs, t, target, error)


def assert_refused_and_nothing_hangs(bs, topic, target, error):
    assert error is not None, "the broker appended a batch its coordinator never heard of"
    assert type(error).__name__ == "InvalidTxnStateError", repr(error)
    # Nothing is left open in the partition: a later plain record is readable at once.
    produce(bs, topic, [("k", "after")], partition=target)
    seen = read_values(bs, topic, [target], "read_committed", settle=2.0)
    assert seen[target] == ["after"]


def test_a_leader_asks_a_coordinator_on_another_broker(cluster3):
    bs = cluster3.bootstrap
    t = topic_name("txn-verify-remote")
    create_topic(bs, t, partitions=6)
    target, error = send_unadded(bs, "txn-verify-remote", t, partitions=6, remote=True)
    assert_refused_and_nothing_hangs(bs, t, target, error)


@pytest.mark.weir_args("--override", "transaction.partition.verification.enable=false")
def test_without_the_check_the_same_batch_hangs_read_committed(weir):
    bs = weir.bootstrap
    t = topic_name("txn-noverify")
    create_topic(bs, t, partitions=2)
    target, error = send_unadded(bs, "txn-noverify", t)
    assert error is None, repr(error)
    produce(bs, t, [("k", "after")], partition=target)
    seen = read_values(bs, t, [target], "read_committed", settle=2.0)
    assert seen[target] == [], "the hanging transaction should hold the record back"
