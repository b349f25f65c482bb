"""`weir topics advise` against a real cluster: the rates it measures, the formula it prints
from them, and its warning about a consumer group with more members than partitions."""

import json
import math
import os
import subprocess

from conftest import weir_bin
from group_helpers import Member, close_all, group_name, wait_stable
from interop_helpers import create_topic, topic_name


def run_weir_cli(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_LOG", "warn")
    return subprocess.run([str(weir_bin()), *map(str, args)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=env)


def advise(bs, *args):
    res = run_weir_cli("topics", "advise", "--bootstrap-server", bs, *args, timeout=180)
    return res


def test_advice_follows_the_formula_from_the_rates_it_measured(cluster3):
    bs = cluster3.bootstrap
    res = advise(bs, "--produce-rate", "50", "--measure-records", "20000", "--json")
    assert res.returncode == 0, res.stderr
    a = json.loads(res.stdout)
    assert a["partition_write_rate"] == "measured" and a["consume_rate"] == "measured"
    w, c, p, h = (a["partition_write_rate_mb_s"], a["consume_rate_mb_s"],
                  a["produce_rate_mb_s"], a["headroom"])
    assert w > 0 and c > 0 and p == 50
    assert math.isclose(a["by_writes"], p / w) and math.isclose(a["by_reads"], p / c)
    assert a["recommended_partitions"] == max(1, math.ceil(max(p / w, p / c) * (1 + h)))
    # The text form prints the same formula with its figures.
    res = advise(bs, "--produce-rate", "300", "--partition-write-rate", "100",
                 "--consume-rate", "60")
    assert res.returncode == 0, res.stderr
    assert "max(300.00 / 100.00, 300.00 / 60.00)" in res.stdout, res.stdout
    assert "recommended partitions: 7" in res.stdout, res.stdout
    # The scratch topic is gone.
    listed = run_weir_cli("topics", "list", "--bootstrap-server", bs)
    assert "weir-advise-" not in listed.stdout


def test_a_group_with_more_members_than_partitions_is_pointed_out(weir):
    bs = weir.bootstrap
    topic = topic_name("advise")
    create_topic(bs, topic, partitions=2)
    group = group_name("advise")
    ms = [Member(bs, group, [topic], f"m{i}") for i in range(3)]
    try:
        wait_stable(ms, [0, 1], sizes=[0, 1, 1])
        res = advise(bs, "--produce-rate", "5", "--partition-write-rate", "10",
                     "--consume-rate", "10", "--topic", topic, "--group", group)
        assert res.returncode == 0, res.stderr
        assert f"group {group} has 3 members but topic {topic} has 2 partitions: 1 members sit idle" \
            in res.stdout, res.stdout
    finally:
        close_all(ms)


def test_bad_rates_get_one_line_errors(weir):
    for args in (["--produce-rate", "-1"], ["--produce-rate", "10", "--consume-rate", "0"],
                 ["--produce-rate", "10", "--headroom", "-0.5"]):
        res = advise(weir.bootstrap, *args, "--partition-write-rate", "5")
        assert res.returncode != 0
        lines = [l for l in res.stderr.splitlines() if l.strip()]
        assert len(lines) == 1, res.stderr
