"""Sarama 1.22 (Go, Debian golang-github-shopify-sarama-dev) against Weir.

The Go side lives in sarama/main.go; it is built once per session by the
``sarama_bin`` fixture and prints a JSON summary on its last stdout line.
"""

import json
import subprocess

import pytest

from interop_helpers import topic_name


def run_sarama(binary, bs, topic, *args, timeout=120):
    cmd = [str(binary), "-brokers", bs, "-topic", topic, "-timeout", f"{timeout - 10}s", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"sarama program timed out\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON summary (exit {res.returncode})\nstdout: {res.stdout}\nstderr: {res.stderr[-8000:]}"
    summary = json.loads(lines[-1])
    return res, summary


@pytest.mark.parametrize(
    "mode,codec",
    [
        ("create", "none"),
        ("auto", "none"),
        ("create", "gzip"),
        ("create", "snappy"),
        ("create", "lz4"),
        # zstd is not tested: Sarama 1.22 sends it in Produce v3, which real
        # Kafka rejects too (zstd needs Produce v7).
    ],
)
def test_sarama_sync_producer_and_consumer(weir, sarama_bin, mode, codec):
    t = topic_name(f"sarama-{mode}-{codec}")
    res, s = run_sarama(
        sarama_bin,
        weir.bootstrap,
        t,
        "-count", "1000",
        "-partitions", "3",
        f"-create={'true' if mode == 'create' else 'false'}",
        "-compression", codec,
    )
    detail = f"summary: {json.dumps(s)}\nsarama log (tail):\n{res.stderr[-8000:]}"
    assert res.returncode == 0 and s["ok"], detail
    assert s["partitions"] == 3, detail
    assert s["produced"] == 1000 and s["consumed"] == 1000 and s["unique"] == 1000, detail
    assert s["duplicates"] == 0 and s["missing"] == 0, detail
    assert s["order_errors"] == 0 and s["key_splits"] == 0 and s["offset_errors"] == 0, detail
    assert sum(s["high_water_marks"].values()) == 1000, detail
