"""A consume-transform-produce service with exactly-once semantics (confluent-kafka): reads
`input` in group `group` under read_committed, writes `out:<value>` with the same key to
`output`, and commits its input offsets inside the same transaction. Runs until killed.

    python3 service.py BOOTSTRAP TRANSACTIONAL_ID GROUP INPUT OUTPUT
"""

import sys

from confluent_kafka import Consumer, KafkaException, Producer


def main() -> None:
    bootstrap, txn_id, group, src, dst = sys.argv[1:6]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 10000,
            "linger.ms": 5,
        }
    )
    # A new instance with the same id fences any previous one and aborts what it left open.
    producer.init_transactions(60)
    consumer.subscribe([src])
    while True:
        msgs = [m for m in consumer.consume(num_messages=50, timeout=0.5) if m.error() is None]
        if not msgs:
            continue
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce(dst, key=m.key(), value=b"out:" + m.value())
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                30,
            )
            producer.commit_transaction(30)
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                raise
            # Abortable or retriable: abort, and read again from the committed offsets.
            if err.txn_requires_abort():
                producer.abort_transaction(30)
            committed = consumer.committed(consumer.assignment(), timeout=30)
            for tp in committed:
                if tp.offset >= 0:
                    consumer.seek(tp)
        print(f"processed {len(msgs)}", flush=True)


if __name__ == "__main__":
    main()
