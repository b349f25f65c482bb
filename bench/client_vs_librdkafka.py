#!/usr/bin/env python3
"""weir-client (`weir perf produce`) against librdkafka (`rdkafka_performance -P`), producing to
the same broker in one run, in turn (weir, librdkafka, weir, librdkafka, ...), for every row of
record size × acks × partitions. Each run writes to a fresh topic.

With `--mode consume`, each row's topic is written once (by weir), then read whole, in turn,
by `weir perf consume` (every partition assigned) and `rdkafka_performance -G` (a group of
one; the broker runs with no initial rebalance delay). Records/s there is each client's own
figure from its first record to its last (startup and group join left out), and CPU is the
whole process's.

Reports per row the median records/s of each client, their ratio, each client's own CPU
seconds per million records (user + system, from the child's rusage), and the range of the
repetitions' rates. In produce mode every row starts with a discarded turn of each client, and
the order of the clients is reversed every other repetition. The broker's logs live on tmpfs
(`--data-parent`), so that the disk's writeback does not decide the 1 KB rows.

    cargo build --release --bin weir
    python3 bench/client_vs_librdkafka.py --reps 3 --messages 2000000

`rdkafka_performance` is built from Debian's librdkafka source the first time (apt-get source,
as ../shared/tools/librdkafka-suite.sh does), into bench/.cache. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from ab import free_port, wait_listening  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def rdkafka_performance() -> Path:
    """The rdkafka_performance example of Debian's librdkafka, built against its library."""
    out = CACHE / "rdkafka_performance"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    found = list(Path("/tmp/librdkafka-suite").glob("librdkafka-*/examples/rdkafka_performance.c"))
    if not found:
        src = CACHE / "src"
        src.mkdir(exist_ok=True)
        subprocess.run(["apt-get", "source", "-y", "librdkafka"], cwd=src, check=True)
        found = list(src.glob("librdkafka-*/examples/rdkafka_performance.c"))
    c = found[0]
    subprocess.run(["gcc", "-O2", f"-I{c.parent.parent / 'src'}", str(c), "-o", str(out),
                    "-l:librdkafka.so.1", "-lm"], check=True)
    return out


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Runs `cmd`; returns (wall seconds, CPU seconds of the child, its output)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, out.decode(errors="replace")


def run_weir(weir: str, bs: str, topic: str, size: int, acks: str, messages: int) -> dict:
    # The same batching as librdkafka's defaults (batch.size 1,000,000, linger.ms 5 as set below).
    cmd = [weir, "perf", "produce", "--bootstrap-server", bs, "--topic", topic,
           "--num-records", str(messages), "--record-size", str(size), "--acks", acks,
           "--batch-size", "1000000", "--linger-ms", "5", "--json"]
    wall, cpu, out = timed(cmd)
    return {"rate": messages / wall, "cpu_per_m": cpu / messages * 1e6}


def run_rdkafka(perf: Path, bs: str, topic: str, size: int, acks: str, messages: int) -> dict:
    acks = "-1" if acks == "all" else acks
    cmd = [str(perf), "-P", "-t", topic, "-b", bs, "-s", str(size), "-c", str(messages),
           "-X", f"acks={acks}", "-X", "linger.ms=5", "-q"]
    wall, cpu, out = timed(cmd)
    m = re.search(r"(\d+) messages produced", out)
    return {"rate": messages / wall, "cpu_per_m": cpu / messages * 1e6, "produced": m and m.group(1)}


def run_weir_consume(weir: str, bs: str, topic: str, messages: int) -> dict:
    cmd = [weir, "perf", "consume", "--bootstrap-server", bs, "--topic", topic,
           "--num-records", str(messages), "--json"]
    _wall, cpu, out = timed(cmd)
    v = json.loads(out.strip().splitlines()[-1])
    return {"rate": v["records_per_sec"], "cpu_per_m": cpu / messages * 1e6}


def run_rdkafka_consume(perf: Path, bs: str, topic: str, messages: int) -> dict:
    cmd = [str(perf), "-G", f"g-{uuid.uuid4().hex[:8]}", "-t", topic, "-b", bs, "-c", str(messages),
           "-X", "auto.offset.reset=earliest", "-q"]
    _wall, cpu, out = timed(cmd)
    m = re.search(r"(\d+) messages \(\d+ bytes\) consumed in (\d+)ms", out)
    if not m:
        raise RuntimeError(f"rdkafka_performance: no summary in {out[-500:]}")
    return {"rate": int(m.group(1)) / (int(m.group(2)) / 1000), "cpu_per_m": cpu / messages * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "target/release/weir"),
                    help="the broker (and, unless --client, the weir perf client)")
    ap.add_argument("--client", help="a weir binary for the client side (default: --binary)")
    ap.add_argument("--baseline-client", help="another weir build whose client runs in the same turns")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--acks", default="1,all")
    ap.add_argument("--partitions", default="1,16")
    ap.add_argument("--mode", choices=["produce", "consume"], default="produce")
    # A run of 1 KB records writes gigabytes: on a disk, the kernel's writeback of them (and
    # its throttling of the broker) varies from run to run far more than the clients do.
    ap.add_argument("--data-parent", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                    help="where the broker's log directory goes (default: tmpfs, /dev/shm)")
    args = ap.parse_args()
    if args.mode == "consume":
        args.acks = "1"
    perf = rdkafka_performance()
    client = args.client or args.binary
    # One run's log must fit (it is deleted before the next), with room to spare.
    need = 2 * args.messages * (max(map(int, args.sizes.split(","))) + 100)
    if args.data_parent and shutil.disk_usage(args.data_parent).free < need:
        print(f"{args.data_parent} has less than {need >> 20} MiB free: logs go to the disk")
        args.data_parent = None
    on_tmpfs = args.data_parent == "/dev/shm"
    data = Path(tempfile.mkdtemp(prefix="weir-client-bench-", dir=args.data_parent))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    with open(data / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [args.binary, "server", "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
             "--log-dirs", str(data / "data"), "--group-initial-rebalance-delay-ms", "0"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    rows = []
    try:
        wait_listening(port)
        bs = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bs})
        for size in map(int, args.sizes.split(",")):
            for acks in args.acks.split(","):
                for partitions in map(int, args.partitions.split(",")):
                    whos = ["weir", "librdkafka"] + (["baseline"] if args.baseline_client else [])
                    runs: dict[str, list[dict]] = {w: [] for w in whos}
                    if args.mode == "consume":
                        topic = f"bench-{uuid.uuid4().hex[:8]}"
                        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
                        run_weir(args.binary, bs, topic, size, "1", args.messages)
                        for _ in range(args.reps):
                            for who in whos:
                                binary = args.baseline_client if who == "baseline" else client
                                if who == "librdkafka":
                                    runs[who].append(run_rdkafka_consume(perf, bs, topic, args.messages))
                                else:
                                    runs[who].append(run_weir_consume(binary, bs, topic, args.messages))
                        admin.delete_topics([topic])[topic].result(30)
                    # One discarded turn of each client first (the broker's first writes of a
                    # row cost it up to twice the CPU of later ones, whoever sends them), then
                    # the repetitions, the order reversed every other one.
                    turns = range(-1, args.reps) if args.mode == "produce" else range(0)
                    for rep in turns:
                        for who in (whos if rep % 2 == 0 else whos[::-1]):
                            topic = f"bench-{uuid.uuid4().hex[:8]}"
                            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
                            # On a disk, the previous run's log is written back before this one
                            # starts, rather than during it; and the topic's leaders settle
                            # (either client would otherwise spend part of its run retrying for
                            # a leader).
                            if not on_tmpfs:
                                os.sync()
                            time.sleep(0.5)
                            if who == "weir":
                                run = run_weir(client, bs, topic, size, acks, args.messages)
                            elif who == "baseline":
                                run = run_weir(args.baseline_client, bs, topic, size, acks,
                                               args.messages)
                            else:
                                run = run_rdkafka(perf, bs, topic, size, acks, args.messages)
                            if rep >= 0:
                                runs[who].append(run)
                            admin.delete_topics([topic])[topic].result(30)
                    med = {w: {f: statistics.median(r[f] for r in v) for f in ("rate", "cpu_per_m")}
                           for w, v in runs.items()}
                    spread = {w: [round(min(r["rate"] for r in v)), round(max(r["rate"] for r in v))]
                              for w, v in runs.items()}
                    row = {"size": size, "acks": acks, "partitions": partitions, **med,
                           "spread": spread,
                           "ratio": med["weir"]["rate"] / med["librdkafka"]["rate"]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)
    base = bool(args.baseline_client)
    print("| size | acks | partitions |" + (" weir-client before rec/s |" if base else "")
          + " weir-client rec/s | librdkafka rec/s | ratio | client CPU s/M "
          + ("before / " if base else "") + "weir / librdkafka | range k rec/s weir; librdkafka |")
    print("|---|---|---|" + ("---|" if base else "") + "---|---|---|---|---|")
    for r in rows:
        before = f" {r['baseline']['rate']:,.0f} |" if base else ""
        before_cpu = f"{r['baseline']['cpu_per_m']:.2f} / " if base else ""
        print(f"| {r['size']} B | {r['acks']} | {r['partitions']} |{before} {r['weir']['rate']:,.0f} "
              f"| {r['librdkafka']['rate']:,.0f} | {r['ratio']:.2f} "
              f"| {before_cpu}{r['weir']['cpu_per_m']:.2f} / {r['librdkafka']['cpu_per_m']:.2f} "
              f"| {spread_k(r, 'weir')}; {spread_k(r, 'librdkafka')} |")


def spread_k(row: dict, who: str) -> str:
    lo, hi = row.get("spread", {}).get(who, [0, 0])
    return f"{lo / 1000:,.0f}-{hi / 1000:,.0f}"


if __name__ == "__main__":
    main()
