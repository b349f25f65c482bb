#!/usr/bin/env bash
# weir-client against librdkafka on one broker, in turn: see client_vs_librdkafka.py.
#   bench/client_vs_librdkafka.sh [--reps 3] [--messages 2000000] [--client OTHER_WEIR]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/weir ] || cargo build --release --bin weir
exec python3 bench/client_vs_librdkafka.py "$@"
