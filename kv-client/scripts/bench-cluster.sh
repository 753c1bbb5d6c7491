#!/usr/bin/env bash
# Runs `kv-client bench` against a local 3-node release cluster, binary vs HTTP, the way the
# figures in kv-client/README.md were measured.
#
#   kv-client/scripts/bench-cluster.sh [ROUNDS] [DURATION]
#
# Builds nothing: run `cargo build --release -p kv-server -p kv-client` first. The cluster
# lives in a temporary directory and is stopped on exit; every JSON report is appended to
# $RESULTS (default /tmp/kv-bench-results.jsonl), with the CPU seconds the three servers
# used during the run added as `server_cpu_s`. CLIENTS (default 64), BASE_PORT (41000) and
# EXTRA_ARGS (more bench flags, e.g. `--routing spread`; bench routes to the leader by
# default) may be set in the environment. Each round runs, in order, writes only then 90%
# reads, each over binary then HTTP, so that the two protocols of one configuration are
# measured back to back under the same machine load.
set -euo pipefail

ROUNDS=${1:-2}
DURATION=${2:-10s}
CLIENTS=${CLIENTS:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$ROOT/target/release/kv-server
CLIENT=$ROOT/target/release/kv-client
DIR=$(mktemp -d /tmp/kv-bench.XXXXXX)
BASE=${BASE_PORT:-41000}
PEERS="http://127.0.0.1:$((BASE + 1)),http://127.0.0.1:$((BASE + 2)),http://127.0.0.1:$((BASE + 3))"
ENDPOINTS="http://127.0.0.1:$((BASE + 11)),http://127.0.0.1:$((BASE + 12)),http://127.0.0.1:$((BASE + 13))"
RESULTS=${RESULTS:-/tmp/kv-bench-results.jsonl}
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

for id in 1 2 3; do
    RUST_LOG=warn "$SERVER" --id "$id" --cluster "$PEERS" --port $((BASE + 10 + id)) \
        --data-dir "$DIR/node-$id" >"$DIR/node-$id.log" 2>&1 &
    PIDS+=($!)
done

# Wait (bounded) until every node sees a leader.
for _ in $(seq 1 100); do
    if "$CLIENT" --endpoints "$ENDPOINTS" --timeout 1s health >/dev/null 2>&1; then break; fi
    sleep 0.1
done
"$CLIENT" --endpoints "$ENDPOINTS" status

# CPU seconds (user + system) the three servers have used so far.
server_cpu() {
    local ticks=0
    for pid in "${PIDS[@]}"; do
        ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$ticks $(getconf CLK_TCK)" | awk '{printf "%.2f", $1 / $2}'
}

bench() {
    local before after
    before=$(server_cpu)
    "$CLIENT" --endpoints "$ENDPOINTS" --json bench --clients "$CLIENTS" --duration "$DURATION" \
        --value-size 100 "$@" >"$DIR/report.json"
    after=$(server_cpu)
    # The report, with the servers' CPU time added.
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
r["server_cpu_s"] = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps(r))
' "$DIR/report.json" "$before" "$after"
}

summary() {
    python3 -c '
import json, sys
r = json.load(sys.stdin)
l = {k: v / 1e3 for k, v in r["latency_us"].items()}
print("%-6s reads=%3.0f%% ops/s=%7.0f errors=%d p50=%.2fms p90=%.2fms p99=%.2fms p99.9=%.2fms max=%.2fms server-cpu/op=%.0fus" % (
    r["protocol"], r["read_ratio"] * 100, r["throughput_ops_per_s"], r["errors"],
    l["p50"], l["p90"], l["p99"], l["p99.9"], l["max"], r["server_cpu_s"] / max(r["ops"], 1) * 1e6))
'
}

for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round"
    for ratio in 0 0.9; do
        for protocol in binary http; do
            bench --read-ratio "$ratio" --protocol "$protocol" ${EXTRA_ARGS:-} | tee -a "$RESULTS" | summary
        done
    done
done
