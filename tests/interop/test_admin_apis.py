"""The admin APIs that tools call besides the basics (issue 17): DescribeLogDirs and
DescribeTopicPartitions through kafka-python's KafkaAdminClient."""

from kafka import KafkaAdminClient

from interop_helpers import admin, create_topic, produce, topic_name


def kp_admin(bs):
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)


def test_describe_log_dirs_reports_partition_sizes(weir):
    bs = weir.bootstrap
    t = topic_name("logdirs")
    create_topic(bs, t, partitions=3)
    value = "x" * 1000
    produce(bs, t, [(None, value)] * 200, partition=0)
    produce(bs, t, [(None, value)] * 50, partition=1)
    a = kp_admin(bs)
    try:
        everything = a.describe_log_dirs()
        only_p1 = a.describe_log_dirs(topic_partitions={t: [1]})
    finally:
        a.close()
    assert [b["broker"] for b in everything] == [0], everything
    (log_dir,) = everything[0]["log_dirs"]
    assert log_dir["error_code"] == 0, log_dir
    assert log_dir["log_dir"].startswith("/"), log_dir["log_dir"]
    # v4: the volume's size, as statvfs gives it.
    assert log_dir["total_bytes"] > log_dir["usable_bytes"] >= 0, log_dir
    sizes = {p["partition_index"]: p["partition_size"]
             for topic in log_dir["topics"] if topic["name"] == t for p in topic["partitions"]}
    assert sorted(sizes) == [0, 1, 2], sizes
    # 200 and 50 records of 1000 bytes, with batch and record overheads.
    assert 200_000 < sizes[0] < 260_000, sizes
    assert 50_000 < sizes[1] < 70_000, sizes
    assert sizes[2] == 0, sizes
    assert all(p["offset_lag"] == 0 and not p["is_future_key"]
               for topic in log_dir["topics"] for p in topic["partitions"])
    (only,) = only_p1[0]["log_dirs"]
    assert [(x["name"], [p["partition_index"] for p in x["partitions"]])
            for x in only["topics"]] == [(t, [1])], only


def test_describe_topic_partitions_pages_with_a_cursor(weir):
    bs = weir.bootstrap
    a_topic, b_topic = topic_name("dtp-a"), topic_name("dtp-b")
    create_topic(bs, a_topic, partitions=5)
    create_topic(bs, b_topic, partitions=3)
    missing = topic_name("dtp-missing")
    kp = kp_admin(bs)
    try:
        first = kp.describe_topic_partitions([b_topic, a_topic, missing], response_partition_limit=4)
        second = kp.describe_topic_partitions([b_topic, a_topic, missing], response_partition_limit=4,
                                              cursor=first["next_cursor"])
        whole = kp.describe_topic_partitions([a_topic, b_topic])
        bad_cursor = kp.describe_topic_partitions(
            [b_topic], cursor={"topic_name": a_topic, "partition_index": 0})
    finally:
        kp.close()

    def pages(answer):
        return [(t["name"], t["error_code"], [p["partition_index"] for p in t["partitions"]])
                for t in answer["topics"]]

    # Topics in name order (a before b before missing), four partitions a page.
    assert pages(first) == [(a_topic, 0, [0, 1, 2, 3])], first
    assert first["next_cursor"] == {"topic_name": a_topic, "partition_index": 4}, first
    assert pages(second) == [(a_topic, 0, [4]), (b_topic, 0, [0, 1, 2])], second
    assert second["next_cursor"] == {"topic_name": missing, "partition_index": 0}, second
    third = kp_admin(bs)
    try:
        last = third.describe_topic_partitions([b_topic, a_topic, missing],
                                               response_partition_limit=4,
                                               cursor=second["next_cursor"])
    finally:
        third.close()
    assert pages(last) == [(missing, 3, [])], last  # UNKNOWN_TOPIC_OR_PARTITION
    assert last["next_cursor"] is None, last
    # A cursor must name a topic asked for: INVALID_REQUEST on every topic.
    assert pages(bad_cursor) == [(b_topic, 42, [])], bad_cursor

    # Leaders, replicas and ISR as Metadata tells them.
    md = admin(bs).list_topics(timeout=10).topics
    for t in whole["topics"]:
        assert t["topic_id"] is not None and not t["is_internal"], t
        assert t["topic_authorized_operations"] > 0, t
        for p in t["partitions"]:
            m = md[t["name"]].partitions[p["partition_index"]]
            assert (p["leader_id"], p["replica_nodes"], p["isr_nodes"]) == (m.leader, m.replicas, m.isrs), (p, m)
            assert p["leader_epoch"] >= 0 and p["offline_replicas"] == [], p
    assert whole["next_cursor"] is None
