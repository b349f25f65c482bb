#!/usr/bin/env python3
"""What TLS costs: the same load over a PLAINTEXT listener and over an SSL one of the same
broker build, in turn (A B A B ...), each run on a fresh one-node broker that has both
listeners, measured with `bench/produce_fetch.py` (confluent-kafka, so librdkafka).

Reports per record size the median produce and fetch records/s of each listener, their ratio,
and the broker's own CPU seconds per million records (produce and fetch together, from
/proc/PID/stat). Certificates are made fresh with `tests/interop/pki.py` (ECDSA P-256).

    cargo build --release --bin weir
    python3 bench/tls.py --reps 5 --bytes 200000000

A measurement, not a test: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/interop"))
sys.path.insert(0, str(ROOT / "bench"))

from ab import free_port, measure, wait_listening  # noqa: E402
from pki import Pki  # noqa: E402


def run_once(binary: str, pki: Pki, tls: bool, size: int, acks: str, partitions: int,
             messages: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="weir-tls-"))
    plain, ssl = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    with open(data / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [binary, "server",
             "--listeners", f"PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl}",
             "--override", f"ssl.keystore.location={pki.broker.keystore}",
             "--log-dirs", str(data / "data")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
    try:
        wait_listening(plain)
        port = ssl if tls else plain
        conf = ["security.protocol=SSL", f"ssl.ca.location={pki.ca.path}"] if tls else []
        return measure(broker.pid, f"127.0.0.1:{port}", partitions, size, acks, messages,
                       conf, timeout=900)
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "target/release/weir"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--acks", default="1")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=200_000_000,
                    help="payload bytes per run (records = bytes / size)")
    args = ap.parse_args()
    pki_dir = Path(tempfile.mkdtemp(prefix="weir-tls-pki-"))
    pki = Pki(pki_dir)
    try:
        rows = []
        for size in map(int, args.sizes.split(",")):
            messages = args.bytes // size
            runs = {False: [], True: []}
            for _ in range(args.reps):
                for tls in (False, True):
                    r = run_once(args.binary, pki, tls, size, args.acks, args.partitions, messages)
                    runs[tls].append(r)
                    print(json.dumps({"size": size, "tls": tls, **r}), flush=True)
            med = {tls: {k: statistics.median(r[k] for r in runs[tls]) for k in runs[tls][0]}
                   for tls in runs}
            rows.append((size, med))
        print()
        print("| size | produce rec/s plain → TLS | ratio | fetch rec/s plain → TLS | ratio | broker CPU s/M plain → TLS |")
        print("|---|---|---|---|---|---|")
        for size, m in rows:
            p, t = m[False], m[True]
            print(f"| {size} B | {p['produce']:,.0f} → {t['produce']:,.0f} | {t['produce'] / p['produce']:.2f} "
                  f"| {p['fetch']:,.0f} → {t['fetch']:,.0f} | {t['fetch'] / p['fetch']:.2f} "
                  f"| {p['cpu_s_per_m']:.2f} → {t['cpu_s_per_m']:.2f} |")
    finally:
        shutil.rmtree(pki_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
