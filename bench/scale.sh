#!/usr/bin/env bash
# One broker, 50,000 partitions, 10,000 idle connections, under a 20,000 open-files limit.
# Builds the release binary and runs bench/scale.py; arguments go to it (see its --help).
#
#     bash bench/scale.sh
#     bash bench/scale.sh --topics 100 --partitions 100 --connections 2000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin weir >&2
exec python3 bench/scale.py "$@"
