"""The console the broker serves (issue 17), in Debian's headless Chromium driven by
playwright-core (tests/console/shoot.mjs): the picture of brokers x partitions shows the leaders
Metadata reports, and after a broker is killed it shows the failover. Screenshots go to
tests/interop/artifacts/."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from interop_helpers import topic_name

CONSOLE_TESTS = Path(__file__).resolve().parent.parent / "console"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def shoot(url: str, name: str, topic: str, down: int | None = None) -> dict:
    assert (CONSOLE_TESTS / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is missing: .ci/run installs it (npm ci in tests/console)"
    assert Path("/usr/bin/chromium").is_file(), "chromium is missing: .ci/run installs Debian's"
    ARTIFACTS.mkdir(exist_ok=True)
    args = ["node", str(CONSOLE_TESTS / "shoot.mjs"), url, str(ARTIFACTS / name), topic]
    if down is not None:
        args.append(str(down))
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=CONSOLE_TESTS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def metadata_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def test_the_picture_shows_leaders_and_a_failover(cluster3):
    c = cluster3
    t = topic_name("console")
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    a.create_topics([NewTopic(t, num_partitions=6, replication_factor=3,
                              config={"retention.ms": "3600000"})])[t].result(30)
    deadline = time.monotonic() + 20
    while len(leaders := metadata_leaders(c.bootstrap, t)) < 6 or -1 in leaders.values():
        assert time.monotonic() < deadline, leaders
        time.sleep(0.3)
    first = c.ids[0]
    url = f"http://{c.node(first).addr}:{c.node(first).http_port}/"
    page = shoot(url, "console-overview.png", t)
    cells = page["cells"]
    assert "retention.ms=3600000" in page["summary"] and "6 partitions" in page["summary"], page
    assert "metadata quorum: controller" in page["quorum"], page
    assert all(f"node {i}" in page["quorum"] for i in c.ids), page
    shown = {x["partition"]: x["broker"] for x in cells if x["role"] == "leader"}
    assert shown == leaders, (shown, leaders)
    assert len(cells) == 18 and {x["role"] for x in cells} == {"leader", "follower"}, cells

    victim = next(b for b in c.ids if b != first and b in leaders.values())
    c.kill(victim)
    cells = shoot(url, "console-failover.png", t, down=victim)["cells"]
    survivors = c.bootstrap_of(*[i for i in c.ids if i != victim])
    shown = {x["partition"]: x["broker"] for x in cells if x["role"] == "leader"}
    assert victim not in shown.values() and len(shown) == 6, shown
    # Metadata from a survivor agrees (once its own image has caught up).
    deadline = time.monotonic() + 15
    while (after := metadata_leaders(survivors, t)) != shown:
        assert time.monotonic() < deadline, (shown, after)
        time.sleep(0.3)
    assert all(x["role"] == "offline" for x in cells if x["broker"] == victim), cells
    assert sum(x["role"] == "offline" for x in cells) == 6, cells


def test_the_lag_chart_follows_a_consumer_catching_up(weir):
    from confluent_kafka import Consumer, TopicPartition

    from interop_helpers import create_topic, produce

    bs = weir.bootstrap
    t, group = topic_name("console-lag"), topic_name("console-group")
    create_topic(bs, t, partitions=1)
    produce(bs, t, [(None, str(i)) for i in range(2000)], partition=0)
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 0)], asynchronous=False)
        ARTIFACTS.mkdir(exist_ok=True)
        watcher = subprocess.Popen(
            ["node", str(CONSOLE_TESTS / "lag.mjs"), f"{weir.http}/", str(ARTIFACTS / "console-lag.png"),
             group, "2000,1500,1000,500,0"],
            cwd=CONSOLE_TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The group catches up in four steps, each once the chart has drawn the last.
            for lag, committed in ((2000, 500), (1500, 1000), (1000, 1500), (500, 2000)):
                line = watcher.stderr.readline().strip()
                assert line == f"seen {lag}", line + watcher.stderr.read()[-2000:]
                c.commit(offsets=[TopicPartition(t, 0, committed)], asynchronous=False)
            out, err = watcher.communicate(timeout=90)
        finally:
            watcher.kill()
        assert watcher.returncode == 0, err[-3000:]
    finally:
        c.close()
    points = json.loads(out)
    assert points[0] == 2000 and points[-1] == 0, points
    assert all(a >= b for a, b in zip(points, points[1:])), f"the lag went up: {points}"
    assert {1500, 1000, 500} <= set(points), f"a step is missing from the chart: {points}"


def browse(url: str, name: str, topic: str, partition: int, start: str, count: int) -> list[dict]:
    import os
    ARTIFACTS.mkdir(exist_ok=True)
    done = subprocess.run(
        ["node", str(CONSOLE_TESTS / "browse.mjs"), url, str(ARTIFACTS / name), topic, str(partition),
         start, str(count)],
        capture_output=True, text=True, timeout=120, cwd=CONSOLE_TESTS, env={**os.environ, "TZ": "UTC"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_message_browsing_by_offset_and_by_time(weir):
    import datetime
    import urllib.error
    import urllib.request

    from confluent_kafka import Producer

    from interop_helpers import create_topic

    bs = weir.bootstrap
    t = topic_name("console-browse")
    create_topic(bs, t, partitions=2)
    base = (int(time.time()) - 120) * 1000
    p = Producer({"bootstrap.servers": bs})
    for i in range(30):
        p.produce(t, value=f"value-{i}", key=f"key-{i}", partition=1, timestamp=base + i * 1000)
    assert p.flush(30) == 0
    url = f"{weir.http}/"
    rows = browse(url, "console-browse-offset.png", t, 1, "offset=10", 5)
    assert rows == [{"offset": o, "key": f"key-{o}", "value": f"value-{o}"} for o in range(10, 15)], rows
    at = datetime.datetime.fromtimestamp((base + 20_000) / 1000, datetime.timezone.utc)
    rows = browse(url, "console-browse-time.png", t, 1, "time=" + at.strftime("%Y-%m-%dT%H:%M:%S"), 3)
    assert [r["offset"] for r in rows] == [20, 21, 22], rows
    assert browse(url, "console-browse-empty.png", t, 0, "offset=0", 5) == []
    # Bad input gets a clear error, not a crash.
    for query, status in (("topic=nope&partition=0", 404), ("partition=0", 400),
                          (f"topic={t}&offset=abc", 400)):
        try:
            urllib.request.urlopen(f"{weir.http}/api/messages?{query}", timeout=10)
            raise AssertionError(f"{query} was answered")
        except urllib.error.HTTPError as e:
            assert e.code == status and json.loads(e.read())["error"], (query, e.code)


def send_through_console(url: str, name: str, topic: str, partition: int, key: str, value: str) -> dict:
    ARTIFACTS.mkdir(exist_ok=True)
    done = subprocess.run(
        ["node", str(CONSOLE_TESTS / "send.mjs"), url, str(ARTIFACTS / name), topic, str(partition),
         key, value], capture_output=True, text=True, timeout=120, cwd=CONSOLE_TESTS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_console_is_read_only_by_default(weir):
    from interop_helpers import create_topic
    t = topic_name("console-ro")
    create_topic(weir.bootstrap, t, partitions=1)
    said = send_through_console(f"{weir.http}/", "console-send-refused.png", t, 0, "k", "v")
    assert said["sent"] == "error" and "read-only" in said["text"], said


@pytest.mark.weir_args("--console-writes-enable", "true")
def test_a_test_message_sent_from_the_console_is_read_by_confluent_kafka(weir):
    from confluent_kafka import Consumer, TopicPartition

    from interop_helpers import create_topic
    t = topic_name("console-send")
    create_topic(weir.bootstrap, t, partitions=2)
    said = send_through_console(f"{weir.http}/", "console-send.png", t, 1, "hello-key", "hello from the console")
    assert said["sent"] == "1:0", said
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": topic_name("g")})
    try:
        c.assign([TopicPartition(t, 1, 0)])
        deadline = time.monotonic() + 20
        m = None
        while time.monotonic() < deadline and (m is None or m.error() is not None):
            m = c.poll(0.5)
        assert m is not None and m.error() is None
        assert (m.key(), m.value(), m.offset()) == (b"hello-key", b"hello from the console", 0)
    finally:
        c.close()


def test_group_members_are_shown_with_their_assignment(weir):
    from confluent_kafka import Consumer

    from interop_helpers import create_topic
    t, group = topic_name("console-members"), topic_name("console-members-group")
    create_topic(weir.bootstrap, t, partitions=2)
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": group, "client.id": "members-test"})
    try:
        c.subscribe([t])
        deadline = time.monotonic() + 30
        while not c.assignment():
            assert time.monotonic() < deadline, "no assignment"
            c.poll(0.3)
        ARTIFACTS.mkdir(exist_ok=True)
        done = subprocess.run(
            ["node", str(CONSOLE_TESTS / "text.mjs"), f"{weir.http}/", str(ARTIFACTS / "console-members.png"),
             f'section.group[data-group="{group}"] li[data-member]'],
            capture_output=True, text=True, timeout=120, cwd=CONSOLE_TESTS)
        assert done.returncode == 0, done.stderr[-3000:]
        (member,) = json.loads(done.stdout)
        assert member.startswith("members-test (") and member.endswith(f"{t} [0, 1]"), member
    finally:
        c.close()


def test_requests_from_other_sites_are_refused(weir):
    import urllib.error
    import urllib.request

    def status(path, method="GET", headers=None, data=None):
        request = urllib.request.Request(f"{weir.http}{path}", method=method, headers=headers or {},
                                         data=data)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("/api/cluster") == 200
    # A DNS-rebinding page reaches the loopback listener under its own name.
    assert status("/api/cluster", headers={"Host": "evil.example:80"}) == 403
    assert status("/api/messages?topic=x", headers={"Host": "evil.example"}) == 403
    # A cross-site form posts text/plain; a cross-site fetch carries its own Origin.
    body = json.dumps({"topic": "t", "value": "v"}).encode()
    assert status("/api/messages", "POST", {"content-type": "text/plain"}, body) == 403
    assert status("/api/messages", "POST", {"content-type": "application/json",
                                            "Origin": "http://evil.example"}, body) == 403
    # The page's own origin gets the console's own answer: read-only by default.
    own = weir.http.removeprefix("http://")
    request = urllib.request.Request(f"{weir.http}/api/messages", method="POST", data=body,
                                     headers={"content-type": "application/json",
                                              "Origin": f"http://{own}"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("a read-only console wrote")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and "read-only" in json.loads(e.read())["error"]


def test_browsing_skips_aborted_transactions(weir):
    from confluent_kafka import Producer

    from interop_helpers import create_topic
    bs = weir.bootstrap
    t = topic_name("console-txn")
    create_topic(bs, t, partitions=1)
    p = Producer({"bootstrap.servers": bs, "transactional.id": topic_name("console-txn-id")})
    p.init_transactions(30)
    for outcome in ("kept-1", "dropped", "kept-2"):
        p.begin_transaction()
        for i in range(3):
            p.produce(t, key=outcome, value=f"{outcome}-{i}", partition=0)
        if outcome == "dropped":
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
    rows = browse(f"{weir.http}/", "console-browse-txn.png", t, 0, "offset=0", 20)
    assert [r["value"] for r in rows] == [f"kept-{n}-{i}" for n in (1, 2) for i in range(3)], rows
