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


def sneaky_producer(bs, txn_id, unadded_partition):
    """A kafka-python transactional producer that never adds `unadded_partition` to its
    transactions and sends to it anyway."""
    p = KafkaProducer(
        bootstrap_servers=bs,
        transactional_id=txn_id,
        retries=3,
        request_timeout_ms=10000,
    )
    tm = p._transaction_manager
    add, allowed = tm.maybe_add_partition_to_transaction, tm.is_send_to_partition_allowed
    tm.maybe_add_partition_to_transaction = (
        lambda tp: None if tp.partition == unadded_partition else add(tp)
    )
    tm.is_send_to_partition_allowed = (
        lambda tp: True if tp.partition == unadded_partition else allowed(tp)
    )
    return p


def send_unadded(bs, txn_id, topic):
    """Begins a transaction, writes to partition 0 (added) and 1 (never added); returns the
    error of the write to partition 1, or None when the broker took it."""
    p = sneaky_producer(bs, txn_id, unadded_partition=1)
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, value=b"added", partition=0).get(timeout=30)
        try:
            p.send(topic, value=b"unadded", partition=1).get(timeout=30)
            return None
        except PyKafkaError as e:
            return e
    finally:
        p.close(timeout=5)


def test_a_batch_to_a_partition_never_added_is_refused(weir):
    bs = weir.bootstrap
    t = topic_name("txn-verify")
    create_topic(bs, t, partitions=2)
    error = send_unadded(bs, "txn-verify", t)
    assert error is not None, "the broker appended a batch its coordinator never heard of"
    assert type(error).__name__ == "InvalidTxnStateError", repr(error)
    # Nothing is left open in partition 1: a later plain record is readable at once.
    produce(bs, t, [("k", "after")], partition=1)
    seen = read_values(bs, t, [1], "read_committed", settle=2.0)
    assert seen[1] == ["after"]


@pytest.mark.weir_args("--override", "transaction.partition.verification.enable=false")
def test_without_the_check_the_same_batch_hangs_read_committed(weir):
    bs = weir.bootstrap
    t = topic_name("txn-noverify")
    create_topic(bs, t, partitions=2)
    error = send_unadded(bs, "txn-noverify", t)
    assert error is None, repr(error)
    produce(bs, t, [("k", "after")], partition=1)
    seen = read_values(bs, t, [1], "read_committed", settle=2.0)
    assert seen[1] == [], "the hanging transaction should hold the record back"
