"""The broker's HTTP listener (issue 17): /metrics scraped by a real Prometheus server
(Debian's `prometheus` package), and read directly for ISR, controller and lag figures;
/health and /ready."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port
from interop_helpers import create_topic, produce, topic_name

PROMETHEUS = "/usr/bin/prometheus"

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def get(url: str, method: str = "GET", timeout: float = 10) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(base: str) -> list[tuple[str, dict, float]]:
    """Every sample of /metrics as (name, labels, value)."""
    status, text = get(f"{base}/metrics")
    assert status == 200, text
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(samples, name: str, **labels) -> float | None:
    """The one sample of `name` whose labels are exactly `labels`."""
    want = {k: str(v) for k, v in labels.items()}
    found = [v for n, ls, v in samples if n == name and ls == want]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def total(samples, name: str, **labels) -> float:
    """The sum of `name` over samples whose labels include `labels`."""
    want = {k: str(v) for k, v in labels.items()}
    return sum(v for n, ls, v in samples
               if n == name and all(ls.get(k) == v for k, v in want.items()))


def eventually(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Prometheus:
    """A Prometheus server on a free loopback port scraping `targets` every second."""

    def __init__(self, targets: list[str]):
        assert Path(PROMETHEUS).is_file(), \
            f"{PROMETHEUS} is missing: .ci/run installs Debian's prometheus package"
        self.dir = Path(tempfile.mkdtemp(prefix="weir-prometheus-"))
        self.port = free_port()
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [{"job_name": "weir", "static_configs": [{"targets": targets}]}],
        }))
        self.log = open(self.dir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        eventually(self._ready, 30, "prometheus to start")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited:\n{self.logs()}"
        try:
            return get(f"{self.base}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:
        status, body = get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def logs(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text()[-4000:]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_a_topics_bytes_in(weir):
    t = topic_name("metrics")
    create_topic(weir.bootstrap, t, partitions=2)
    records = [(None, "v" * 100)] * 500
    produce(weir.bootstrap, t, records, partition=0)
    produce(weir.bootstrap, t, records[:200], partition=1)
    # What the broker counts: each partition's log holds exactly the batches produced.
    broker = scrape(weir.http)
    sizes = [value(broker, "kafka_log_log_size", topic=t, partition=p) for p in (0, 1)]
    assert value(broker, "kafka_server_brokertopicmetrics_bytesin_total", topic=t) == sum(sizes), broker
    assert value(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic=t) == 700
    assert value(broker, "weir_partition_messagesin_total", topic=t, partition=1) == 200
    assert total(broker, "kafka_network_requestmetrics_requests_total", request="Produce") >= 2
    prometheus = Prometheus([f"127.0.0.1:{weir.http_port}"])
    try:
        up = eventually(lambda: [r for r in prometheus.query('up{job="weir"}') if r["value"][1] == "1"],
                        30, "prometheus to scrape the broker")
        assert len(up) == 1, up
        query = f'kafka_server_brokertopicmetrics_bytesin_total{{topic="{t}"}}'
        result = eventually(lambda: prometheus.query(query), 30, f"{query} in prometheus")
        assert float(result[0]["value"][1]) == sum(sizes) > 70_000, result
        # A histogram Prometheus can take quantiles of.
        p99 = eventually(lambda: prometheus.query(
            'histogram_quantile(0.99, kafka_network_requestmetrics_totaltimems_bucket{request="Produce"})'),
            30, "the produce latency histogram")
        assert float(p99[0]["value"][1]) > 0, p99
    finally:
        prometheus.close()


def test_consumer_lag_and_fetch_traffic(weir):
    bs = weir.bootstrap
    t, group = topic_name("lag"), topic_name("lag-group")
    create_topic(bs, t, partitions=1)
    produce(bs, t, [(None, str(i)) for i in range(100)], partition=0)
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(t, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 40 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
        assert len(got) >= 40
        c.commit(offsets=[TopicPartition(t, 0, 40)], asynchronous=False)
    finally:
        c.close()
    samples = eventually(
        lambda: (s := scrape(weir.http)) and value(
            s, "kafka_consumergroup_lag", consumergroup=group, topic=t, partition=0) == 60 and s,
        15, "a lag of 60")
    assert value(samples, "kafka_coordinator_group_groupmetadatamanager_numgroups") >= 1
    assert value(samples, "kafka_server_brokertopicmetrics_bytesout_total", topic=t) > 0
    assert value(samples, "weir_partition_messagesout_total", topic=t, partition=0) >= 40


def test_health_ready_and_bad_requests(weir):
    assert get(f"{weir.http}/health") == (200, "ok\n")
    assert get(f"{weir.http}/ready") == (200, "ready\n")
    assert get(f"{weir.http}/nothing-here")[0] == 404
    assert get(f"{weir.http}/metrics", method="POST")[0] == 405
    samples = scrape(weir.http)
    assert value(samples, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert value(samples, "kafka_server_raft_metrics_current_leader") == 0


def test_cluster_metrics_follow_a_broker_loss(cluster3):
    c = cluster3
    t = topic_name("urp")
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    a.create_topics([NewTopic(t, num_partitions=6, replication_factor=3)])[t].result(30)
    http = {i: f"http://{c.node(i).addr}:{c.node(i).http_port}" for i in c.ids}

    def leaders_and_controllers(ids):
        return {i: scrape(http[i]) for i in ids}

    def settled():
        s = leaders_and_controllers(c.ids)
        under = sum(value(x, "kafka_server_replicamanager_underreplicatedpartitions") for x in s.values())
        active = sum(value(x, "kafka_controller_kafkacontroller_activecontrollercount") for x in s.values())
        held = [len([1 for n, ls, _ in x if n == "kafka_log_log_size" and ls.get("topic") == t])
                for x in s.values()]
        return (under == 0 and active == 1 and held == [6, 6, 6]) and s

    eventually(settled, 30, "every replica in sync and one active controller")
    victim = c.ids[-1]
    c.kill(victim)
    rest = [i for i in c.ids if i != victim]

    def shrunk():
        s = leaders_and_controllers(rest)
        under = sum(value(x, "kafka_server_replicamanager_underreplicatedpartitions") for x in s.values())
        shrinks = sum(value(x, "kafka_server_replicamanager_isrshrinks_total") for x in s.values())
        flags = sum(total(x, "kafka_cluster_partition_underreplicated", topic=t) for x in s.values())
        active = sum(value(x, "kafka_controller_kafkacontroller_activecontrollercount") for x in s.values())
        return (flags == 6 and under >= 6 and shrinks >= 1 and active == 1) and s

    s = eventually(shrunk, 30, "the survivors to report six under-replicated partitions")
    assert all(get(f"{http[i]}/ready")[0] == 200 for i in rest), s
