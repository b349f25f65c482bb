"""Sarama 1.22 ConsumerGroup (Go) against Weir.

The Go side lives in sarama_group/main.go (built once per session by the
``sarama_group_bin`` fixture): two members share a 4-partition topic, one
leaves (Close -> LeaveGroup) while records are being produced, the other
takes over every partition, and every record must be consumed at least once.
It prints a JSON summary on its last stdout line; the assertions are here.
"""

import json
import subprocess

import pytest

from group_helpers import GROUP_ARGS, group_name
from interop_helpers import topic_name

pytestmark = pytest.mark.weir_args(*GROUP_ARGS)


def run_group_program(binary, bs, topic, group, *args, timeout=150):
    cmd = [
        str(binary), "-brokers", bs, "-topic", topic, "-group", group,
        "-timeout", f"{timeout - 15}s", *args,
    ]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"sarama group program timed out\nstdout: {e.stdout!r}\nstderr: {str(e.stderr)[-8000:]}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON summary (exit {res.returncode})\nstdout: {res.stdout}\nstderr: {res.stderr[-8000:]}"
    return res, json.loads(lines[-1])


@pytest.mark.parametrize(
    "retention",
    [
        # Sarama's default (Consumer.Offsets.Retention = 0): commits use
        # OffsetCommit v1, which Kafka 0.9 through 3.9 accept.  Kafka 4.0
        # removed OffsetCommit v0-v1 (KIP-896) and closes the connection
        # instead, so this variant passes only against a broker that keeps
        # the pre-4.0 versions.
        "0",
        # Retention set: Sarama 1.22 switches to OffsetCommit v2.
        "24h",
    ],
    ids=["offsetcommit-v1", "offsetcommit-v2"],
)
def test_sarama_consumer_group_two_members_then_one(weir, sarama_group_bin, retention):
    t = topic_name("sarama-grp")
    g = group_name("sarama-g")
    before, during, after = 400, 400, 200
    res, s = run_group_program(
        sarama_group_bin, weir.bootstrap, t, g,
        "-partitions", "4", "-before", str(before), "-during", str(during), "-after", str(after),
        "-offsets-retention", retention,
    )
    detail = f"summary: {json.dumps(s, indent=1)}\nsarama log (tail):\n{res.stderr[-8000:]}"
    total = before + during + after
    assert s["partitions"] == 4, detail
    assert s["produced"] == total, detail

    # Both members got partitions: disjoint, together all four.
    a, b = s["both_phase"].get("a") or [], s["both_phase"].get("b") or []
    assert a and b, f"both members should hold partitions\n{detail}"
    assert not set(a) & set(b) and sorted(a + b) == [0, 1, 2, 3], detail
    # DescribeGroups agreed with what the members were given.
    assert s["describe_both_state"] == "Stable", detail
    assert s["describe_both"] == {"a": a, "b": b}, detail

    # After b left, a owns everything, in a later generation.
    assert s["takeover_claims"] == [0, 1, 2, 3], detail
    assert s["takeover_generation"] > s["both_generation"], detail
    assert s["b_consumed_after_leave"] == 0, detail

    # At least once, none lost.
    assert s["missing"] == 0 and s["unique"] == total, detail
    assert not s["overlaps"], detail
    # a committed everything it marked when it closed.
    assert s["committed"] == s["high_water_marks"], detail
    assert sum(s["high_water_marks"].values()) == total, detail
    assert s["final_state"] == "Empty", detail
    assert not s["client_errors"], f"Sarama reported errors\n{detail}"
    assert res.returncode == 0 and s["ok"], detail
