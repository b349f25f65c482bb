"""kcat (librdkafka 2.x CLI) against Weir: auto-created topic, keyed
produce, per-partition consume, metadata listing."""

import json
import shutil
import subprocess
import zlib
from collections import defaultdict

import pytest

from interop_helpers import keyed_records, topic_name

KCAT = shutil.which("kcat") or shutil.which("kafkacat")



def kcat(*args, input=None, timeout=60):
    if KCAT is None:
        pytest.fail("kcat not installed (apt-get install kcat; see .ci/run)", pytrace=False)
    try:
        return subprocess.run(
            [KCAT, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"kcat {' '.join(args)} timed out after {timeout}s\n"
            f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}"
        )


def test_kcat_autocreate_keyed_produce_and_consume(weir):
    bs = weir.bootstrap
    t = topic_name("kcat")
    records = keyed_records(1000)

    # Produce to a topic that does not exist yet: the producer's Metadata
    # request auto-creates it with --num-partitions 3.
    lines = "".join(f"{k}:{v}\n" for k, v in records)
    res = kcat(
        "-b", bs, "-P", "-t", t, "-K:",
        "-X", "acks=all",
        "-X", "message.timeout.ms=30000",
        input=lines,
    )
    assert res.returncode == 0, f"kcat -P failed ({res.returncode}): {res.stderr}"
    assert "Delivery failed" not in res.stderr, res.stderr

    # Metadata listing, plain text.
    res = kcat("-b", bs, "-L", "-t", t, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f'topic "{t}" with 3 partitions' in res.stdout, res.stdout
    assert "1 brokers:" in res.stdout, res.stdout
    assert f"broker 0 at {bs}" in res.stdout, res.stdout

    # ... and JSON.
    res = kcat("-b", bs, "-L", "-J", "-t", t, timeout=30)
    assert res.returncode == 0, res.stderr
    md = json.loads(res.stdout)
    assert [b["id"] for b in md["brokers"]] == [0], md
    topics = {x["topic"]: x for x in md["topics"]}
    assert t in topics, md
    assert topics[t].get("error") in (None, ""), topics[t]
    parts = sorted(topics[t]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2], parts
    assert all(p["leader"] == 0 for p in parts), parts

    # Read every partition back.
    value_key = {v: k for k, v in records}
    seen = defaultdict(int)
    key_partitions = defaultdict(set)
    total = 0
    for p in range(3):
        res = kcat(
            "-b", bs, "-C", "-t", t, "-p", str(p), "-o", "beginning", "-e", "-q",
            "-f", "%k:%s\n",
            timeout=60,
        )
        assert res.returncode == 0, f"kcat -C -p {p} failed ({res.returncode}): {res.stderr}"
        last_per_key = {}
        for line in res.stdout.splitlines():
            k, _, v = line.partition(":")
            assert v in value_key, f"partition {p}: unexpected line {line!r}"
            assert value_key[v] == k, f"partition {p}: value {v} with key {k!r}"
            seen[v] += 1
            total += 1
            key_partitions[k].add(p)
            iv = int(v)
            assert last_per_key.get(k, -1) < iv, (
                f"partition {p}: key {k} value {iv} after {last_per_key.get(k)}"
            )
            last_per_key[k] = iv
            # librdkafka's default partitioner (consistent_random) is
            # crc32(key) % partition_count: the broker must have stored the
            # record in the partition the client chose.
            assert zlib.crc32(k.encode()) % 3 == p, f"key {k} stored in partition {p}"

    missing = [v for v in value_key if v not in seen]
    dups = [v for v, n in seen.items() if n > 1]
    assert not missing, f"{len(missing)} records missing, e.g. {missing[:10]}"
    assert not dups, f"{len(dups)} duplicated, e.g. {dups[:10]}"
    assert total == 1000
    split = {k: ps for k, ps in key_partitions.items() if len(ps) > 1}
    assert not split, split


def test_kcat_list_all_topics(weir):
    """kcat -L with no topic lists every topic (Metadata for all topics) and
    must not create anything."""
    bs = weir.bootstrap
    t = topic_name("kcat-list")
    res = kcat("-b", bs, "-P", "-t", t, "-p", "0", input="hello\n", timeout=60)
    assert res.returncode == 0, res.stderr
    res = kcat("-b", bs, "-L", "-J", timeout=30)
    assert res.returncode == 0, res.stderr
    md = json.loads(res.stdout)
    names = {x["topic"] for x in md["topics"]}
    assert t in names, names
    res = kcat("-b", bs, "-C", "-t", t, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello\n"
