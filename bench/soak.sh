#!/usr/bin/env bash
# Soak: the fault suite's nemesis for many seeds, with the harder faults of WEIR_FAULT_SOAK=1
# (a node cut off from both others, clients cut off from a node, the active controller killed
# or paused, every broker killed with -9 at once) on top of kills, pauses and cut links.
# A measurement run, kept out of CI. Needs root (iptables, a user per broker), like the suite.
#
#   bash bench/soak.sh 1 2 3 ...          # or: bash bench/soak.sh $(seq 1 20)
#   WEIR_FAULT_SECONDS=90 bash bench/soak.sh 7
#
# Prints one row per seed: records acknowledged, then lost, misplaced, duplicated, reordered,
# vanished (read by a consumer, then gone) and diverged (replica logs that differ) counts.
# Each seed's whole output is kept in $WEIR_SOAK_LOGS (default /tmp/weir-soak).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(1 2 3 4 5)
logs=${WEIR_SOAK_LOGS:-/tmp/weir-soak}
mkdir -p "$logs"
cargo build --release --bin weir >/dev/null 2>&1 || { echo "cargo build failed" >&2; exit 1; }
export WEIR_BIN="${WEIR_BIN:-$PWD/target/release/weir}"
export WEIR_FAULT_SOAK=1
export WEIR_FAULT_SECONDS=${WEIR_FAULT_SECONDS:-60}
printf '%-6s %-8s %-6s %-10s %-11s %-10s %-9s %-9s %s\n' \
    seed acked lost misplaced duplicated reordered vanished diverged result
for seed in "${seeds[@]}"; do
    out="$logs/seed-$seed.log"
    WEIR_FAULT_SEED=$seed timeout 900 python3 -m pytest -q -s -p no:cacheprovider \
        tests/interop/test_faults.py >"$out" 2>&1
    rc=$?
    python3 - "$seed" "$rc" "$out" <<'PY'
import re, sys
seed, rc, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(path, errors="replace").read()
m = re.search(r"seed \d+: (\d+) acknowledged.*?lost (\d+), misplaced (\d+), duplicated (\d+), "
              r"out of order (\d+), vanished after being read (\d+), replica disagreements (\d+)", text)
result = "pass" if rc == 0 else f"FAIL (see {path})"
if m:
    print(f"{seed:<6} {m[1]:<8} {m[2]:<6} {m[3]:<10} {m[4]:<11} {m[5]:<10} {m[6]:<9} {m[7]:<9} {result}")
else:
    print(f"{seed:<6} {'-':<8} {'-':<6} {'-':<10} {'-':<11} {'-':<10} {'-':<9} {'-':<9} {result}")
PY
done
