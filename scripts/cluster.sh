#!/usr/bin/env bash
# Starts a local 3-node cluster (the Procfile's three nodes) in the foreground;
# Ctrl-C stops all three. Data goes to ./kv-data/node-{1,2,3}.
#   scripts/cluster.sh            # build (release) and run
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kv-server -p kv-client
cluster=http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  ./target/release/kv-server --id "$i" --cluster "$cluster" --port "${i}2380" &
  pids+=($!)
done
echo "3-node cluster: clients on 127.0.0.1:12380, :22380, :32380 (Ctrl-C to stop)"
wait
