#!/usr/bin/env python3
"""What the authorizer costs: the same load against one broker build without an authorizer and
with one, in turn (A B A B ...), each run on a fresh one-node broker, measured with
`bench/produce_fetch.py` (confluent-kafka, so librdkafka) over PLAINTEXT.

With the authorizer, the benchmark's principal (User:ANONYMOUS) is not a super user: every
Produce, Fetch and Metadata request is checked against the ACLs, which hold its grants
(All on every topic and group, and on the cluster) among 300 ACLs of other principals on other
literal and prefixed topic names. They are made through a SASL listener by a super user before
the run.

Reports per record size the median produce and fetch records/s of each, their ratio, and the
broker's own CPU seconds per million records (produce and fetch together, from /proc/PID/stat).

    cargo build --release --bin weir
    python3 bench/authorizer.py --reps 5 --bytes 200000000

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
sys.path.insert(0, str(ROOT / "bench"))

from ab import free_port, measure, wait_listening  # noqa: E402

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
         "sasl.username": "admin", "sasl.password": "admin-secret"}


def grant(bootstrap: str) -> None:
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       AdminClient, ResourcePatternType, ResourceType)
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    allow = AclPermissionType.ALLOW
    acls = [
        AclBinding(ResourceType.TOPIC, "*", lit, "User:ANONYMOUS", "*", AclOperation.ALL, allow),
        AclBinding(ResourceType.GROUP, "*", lit, "User:ANONYMOUS", "*", AclOperation.ALL, allow),
        AclBinding(ResourceType.BROKER, "kafka-cluster", lit, "User:ANONYMOUS", "*",
                   AclOperation.ALL, allow),
    ]
    for i in range(150):
        acls.append(AclBinding(ResourceType.TOPIC, f"team-{i}-orders", lit, f"User:u{i}", "*",
                               AclOperation.WRITE, allow))
        acls.append(AclBinding(ResourceType.TOPIC, f"bench-{i}", pre, f"User:u{i}", "*",
                               AclOperation.READ, AclPermissionType.DENY))
    admin = AdminClient({"bootstrap.servers": bootstrap, **ADMIN})
    for f in admin.create_acls(acls, request_timeout=30).values():
        f.result(60)


def run_once(binary: str, authorizer: bool, size: int, acks: str, partitions: int,
             messages: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="weir-authz-"))
    plain, sasl = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["RUST_LOG"] = "warn"
    extra = ["--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]"]
    if authorizer:
        extra += ["--override", f"authorizer.class.name={STANDARD_AUTHORIZER}",
                  "--override", "super.users=User:admin"]
    with open(data / "broker.log", "wb") as log:
        broker = subprocess.Popen(
            [binary, "server",
             "--listeners", f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
             "--log-dirs", str(data / "data"), *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
    try:
        wait_listening(plain)
        wait_listening(sasl)
        if authorizer:
            grant(f"127.0.0.1:{sasl}")
        return measure(broker.pid, f"127.0.0.1:{plain}", partitions, size, acks, messages,
                       timeout=900)
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
    rows = []
    for size in map(int, args.sizes.split(",")):
        messages = args.bytes // size
        runs = {False: [], True: []}
        for _ in range(args.reps):
            for authorizer in (False, True):
                r = run_once(args.binary, authorizer, size, args.acks, args.partitions, messages)
                runs[authorizer].append(r)
                print(json.dumps({"size": size, "authorizer": authorizer, **r}), flush=True)
        med = {a: {k: statistics.median(r[k] for r in runs[a]) for k in runs[a][0]}
               for a in runs}
        rows.append((size, med))
    print()
    print("| size | produce rec/s off → on | ratio | fetch rec/s off → on | ratio "
          "| broker CPU s/M off → on |")
    print("|---|---|---|---|---|---|")
    for size, m in rows:
        a, b = m[False], m[True]
        print(f"| {size} B | {a['produce']:,.0f} → {b['produce']:,.0f} "
              f"| {b['produce'] / a['produce']:.2f} "
              f"| {a['fetch']:,.0f} → {b['fetch']:,.0f} | {b['fetch'] / a['fetch']:.2f} "
              f"| {a['cpu_s_per_m']:.2f} → {b['cpu_s_per_m']:.2f} |")


if __name__ == "__main__":
    main()
