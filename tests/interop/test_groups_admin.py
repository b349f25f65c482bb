"""Group administration against Weir: ListGroups, DescribeGroups,
OffsetFetch (all offsets of a group), DeleteGroups through confluent-kafka's
AdminClient; OffsetCommit from an admin (AlterConsumerGroupOffsets) and
OffsetDelete through kafka-python's KafkaAdminClient."""

import time

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import GroupSubscribedToTopicError, NoError

from group_helpers import (
    GROUP_ARGS,
    commit_consumed,
    group_name,
    members,  # noqa: F401 - fixture
    pump_for,
    wait_all_consumed,
    wait_caught_up,
    wait_stable,
)
from interop_helpers import admin, create_topic, keyed_records, produce, topic_name, watermarks

pytestmark = pytest.mark.weir_args(*GROUP_ARGS)

TIMEOUT = 15


def list_groups(adm, states=None):
    kw = {"request_timeout": TIMEOUT}
    if states is not None:
        kw["states"] = states
    res = adm.list_consumer_groups(**kw).result(timeout=TIMEOUT + 5)
    assert not res.errors, f"list_consumer_groups errors: {res.errors}"
    return {g.group_id: g for g in res.valid}


def describe(adm, group):
    return adm.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT + 5)


def group_offsets(adm, group, partitions=None):
    req = ConsumerGroupTopicPartitions(group, partitions)
    futs = adm.list_consumer_group_offsets([req], request_timeout=TIMEOUT)
    res = futs[group].result(timeout=TIMEOUT + 5)
    bad = [tp for tp in res.topic_partitions if tp.error is not None]
    assert not bad, f"list_consumer_group_offsets({group}) partition errors: {bad}"
    return {(tp.topic, tp.partition): tp for tp in res.topic_partitions}


def delete_group_error(adm, group):
    """Delete a group; return None on success or the KafkaError code."""
    fut = adm.delete_consumer_groups([group], request_timeout=TIMEOUT)[group]
    try:
        fut.result(timeout=TIMEOUT + 5)
        return None
    except KafkaException as e:
        return e.args[0].code()


def eventually(check, members_to_poll, timeout=20, what="condition"):
    """Retry ``check()`` (which asserts) until it passes, keeping the given
    consumers polled in between."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KafkaException) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still failing after {timeout}s: {e}") from e
        if members_to_poll:
            pump_for(members_to_poll, 0.3)
        else:
            time.sleep(0.3)


def test_admin_list_describe_offsets_delete(weir, members):  # noqa: F811
    bs = weir.bootstrap
    t = topic_name("grp-adm")
    g_active, g_empty = group_name("g-active"), group_name("g-empty")
    create_topic(bs, t, partitions=3)
    records = keyed_records(300)
    produce(bs, t, records)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    values = [v for _k, v in records]
    conf = {"enable.auto.commit": False, "partition.assignment.strategy": "range"}

    # An Empty group with committed offsets: one member reads, commits, leaves.
    e = members.add(g_empty, [t], "weir-admin-e", **conf)
    wait_stable([e], range(3))
    wait_all_consumed([e], values)
    wait_caught_up([e], hw)
    assert commit_consumed(e, t) == hw
    e.close()

    # A Stable group of two members with committed offsets.
    a = members.add(g_active, [t], "weir-admin-a", **conf)
    b = members.add(g_active, [t], "weir-admin-b", **conf)
    live = [a, b]
    snap = wait_stable(live, range(3), sizes=[1, 2])
    wait_all_consumed(live, values)
    wait_caught_up(live, hw)
    commit_consumed(a, t)
    commit_consumed(b, t)

    adm = admin(bs)

    # -- ListGroups
    def listed():
        groups = list_groups(adm)
        assert g_active in groups and g_empty in groups, f"groups listed: {sorted(groups)}"
        ga, ge = groups[g_active], groups[g_empty]
        assert ga.state == ConsumerGroupState.STABLE, ga.state
        assert ge.state == ConsumerGroupState.EMPTY, ge.state
        assert not ga.is_simple_consumer_group and not ge.is_simple_consumer_group
        return groups

    eventually(listed, live, what="ListGroups showing both groups")
    stable_only = list_groups(adm, states={ConsumerGroupState.STABLE})
    assert g_active in stable_only and g_empty not in stable_only, (
        f"states={{STABLE}} filter returned {sorted(stable_only)}"
    )
    empty_only = list_groups(adm, states={ConsumerGroupState.EMPTY})
    assert g_empty in empty_only and g_active not in empty_only, (
        f"states={{EMPTY}} filter returned {sorted(empty_only)}"
    )

    # -- DescribeGroups
    d = describe(adm, g_active)
    assert d.group_id == g_active
    assert d.state == ConsumerGroupState.STABLE, d.state
    assert not d.is_simple_consumer_group
    assert d.partition_assignor == "range", d.partition_assignor
    assert d.coordinator is not None and d.coordinator.id == 0, d.coordinator
    assert d.coordinator.port == weir.port, d.coordinator
    assert len(d.members) == 2, d.members
    assert len({m.member_id for m in d.members}) == 2 and all(m.member_id for m in d.members), d.members
    by_client = {m.client_id: m for m in d.members}
    assert set(by_client) == {"weir-admin-a", "weir-admin-b"}, sorted(by_client)
    for name, mem in (("a", a), ("b", b)):
        md = by_client[f"weir-admin-{name}"]
        assert md.host, f"member {md.member_id} has no host"
        got = {(tp.topic, tp.partition) for tp in md.assignment.topic_partitions}
        want = {(t, p) for p in snap[mem.name]}
        assert got == want, f"DescribeGroups says {mem.name} has {sorted(got)}, the client owns {sorted(want)}"

    de = describe(adm, g_empty)
    assert de.state == ConsumerGroupState.EMPTY, de.state
    assert de.members == [], de.members

    # -- OffsetFetch for the whole group (no partitions given)
    for g in (g_active, g_empty):
        offs = group_offsets(adm, g)
        assert {k: tp.offset for k, tp in offs.items()} == {(t, p): hw[p] for p in range(3)}, (g, offs)
    # ... and for named partitions only.
    offs = group_offsets(adm, g_active, [TopicPartition(t, 0), TopicPartition(t, 2)])
    assert {k: tp.offset for k, tp in offs.items()} == {(t, 0): hw[0], (t, 2): hw[2]}, offs

    # -- DeleteGroups
    assert delete_group_error(adm, g_active) == KafkaError.NON_EMPTY_GROUP
    assert delete_group_error(adm, g_empty) is None
    assert delete_group_error(adm, group_name("g-never")) == KafkaError.GROUP_ID_NOT_FOUND

    groups = list_groups(adm)
    assert g_empty not in groups, "deleted group still listed"
    assert g_active in groups, "the active group vanished after a refused delete"
    gone = group_offsets(adm, g_empty)
    assert all(tp.offset < 0 for tp in gone.values()), f"offsets of a deleted group are still there: {gone}"
    try:
        dd = describe(adm, g_empty)
        assert dd.state == ConsumerGroupState.DEAD and dd.members == [], (dd.state, dd.members)
    except KafkaException as ex:  # newer Kafka: GROUP_ID_NOT_FOUND
        assert ex.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, ex
    # The refused delete left the active group alone.
    assert describe(adm, g_active).state == ConsumerGroupState.STABLE
    offs = group_offsets(adm, g_active)
    assert {k: tp.offset for k, tp in offs.items()} == {(t, p): hw[p] for p in range(3)}, offs


def test_admin_alter_offsets_and_offset_delete(weir, members):  # noqa: F811
    """AlterConsumerGroupOffsets creates offsets for a new group, which a
    consumer then starts from; OffsetDelete is refused per partition with
    GROUP_SUBSCRIBED_TO_TOPIC while a member is subscribed, and works once
    the group is empty."""
    bs = weir.bootstrap
    t = topic_name("grp-alter")
    g = group_name("g-alter")
    create_topic(bs, t, partitions=3)
    records = keyed_records(150)
    produce(bs, t, records)
    hw = {p: hi for p, (_lo, hi) in watermarks(bs, t, range(3)).items()}
    start = {p: min(5, hw[p]) for p in range(3)}

    adm = admin(bs)
    req = ConsumerGroupTopicPartitions(g, [TopicPartition(t, p, start[p]) for p in range(3)])
    res = adm.alter_consumer_group_offsets([req], request_timeout=TIMEOUT)[g].result(timeout=TIMEOUT + 5)
    bad = [tp for tp in res.topic_partitions if tp.error is not None]
    assert not bad, f"alter_consumer_group_offsets partition errors: {bad}"
    offs = group_offsets(adm, g)
    assert {k: tp.offset for k, tp in offs.items()} == {(t, p): start[p] for p in range(3)}, offs

    m = members.add(g, [t], "weir-alter", **{"enable.auto.commit": False})
    wait_stable([m], range(3))
    wait_caught_up([m], hw)
    for p in range(3):
        got = [off for pp, off, *_ in m.records if pp == p]
        assert got == list(range(start[p], hw[p])), f"partition {p}: read {got[:5]}..., expected from {start[p]}"

    kp = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT * 1000, client_id="weir-interop-kp-adm")
    try:
        tps = [KpTopicPartition(t, p) for p in range(3)]
        # Subscribed member present: refused per partition.
        res = kp.delete_group_offsets(g, tps)
        assert set(res) == set(tps), res
        assert all(err is GroupSubscribedToTopicError for err in res.values()), res
        m.close()
        res = kp.delete_group_offsets(g, tps[:2])
        assert all(err is NoError for err in res.values()), res
        offs = group_offsets(adm, g)
        left = {k: tp.offset for k, tp in offs.items() if tp.offset >= 0}
        assert left == {(t, 2): start[2]}, f"after deleting p0/p1 offsets: {offs}"
    finally:
        kp.close()
