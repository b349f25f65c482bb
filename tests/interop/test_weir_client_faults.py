"""weir-client's producer (through `weir produce`) while its broker is killed with SIGKILL and
restarted mid-stream: batches in flight fail, are retried with their sequence numbers, and the
restarted broker deduplicates them. Read back with confluent-kafka, every record is there once,
in the order it was sent, per key."""

import os
import subprocess
import threading
import time

from conftest import weir_bin
from interop_helpers import create_topic, topic_name
from test_transactions import read_values


def test_weir_produce_through_a_broker_crash_loses_duplicates_and_reorders_nothing(weir):
    bs = weir.bootstrap
    topic = topic_name("wc-crash")
    create_topic(bs, topic, partitions=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    proc = subprocess.Popen(
        [str(weir_bin()), "produce", "--bootstrap-server", bs, "--topic", topic,
         "--key-separator", ":", "--linger-ms", "1", "--batch-size", "4096"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        text=True,
    )
    n, chunk = 60_000, 250
    assert proc.stdin is not None
    # The crash comes while records stream in, so batches are in flight when it hits.
    crash = threading.Timer(0.5, lambda: weir.restart(kill9=True))
    crash.start()
    for start in range(0, n, chunk):
        proc.stdin.write("".join(f"k{i % 2}:{i}\n" for i in range(start, start + chunk)))
        proc.stdin.flush()
        time.sleep(0.004)
    crash.join()
    proc.stdin.close()
    proc.wait(timeout=180)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert f"Produced {n} records" in err, err
    seen = read_values(bs, topic, [0, 1], "read_uncommitted", settle=3.0)
    by_key: dict[int, list[int]] = {0: [], 1: []}
    for values in seen.values():
        for v in values:
            i = int(v)
            by_key[i % 2].append(i)
    for k, got in by_key.items():
        expected = list(range(k, n, 2))
        assert len(got) == len(set(got)), f"key k{k}: {len(got) - len(set(got))} duplicates"
        assert sorted(got) == expected, f"key k{k}: {len(expected) - len(set(got))} lost"
        assert got == expected, f"key k{k}: out of order"
