#!/usr/bin/env bash
# Builds the broker in release mode, starts it on a free loopback port with a temporary data
# directory, runs bench/produce_fetch.py against it, and stops it. Extra arguments go to the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --bin weir
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
./target/release/weir server --listeners "PLAINTEXT://127.0.0.1:$port" --log-dirs "$data" 2>"$data.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
python3 bench/produce_fetch.py --bootstrap "127.0.0.1:$port" "$@"
