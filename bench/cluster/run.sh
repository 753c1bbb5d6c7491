#!/usr/bin/env bash
# kv-server vs etcd 3.4 on one machine: a 3-node cluster of each on loopback, one at a
# time, driven the same way. The figures in the top-level README come from this script.
#
#   bench/cluster/run.sh [ROUNDS] [DURATION]          # default: 2 rounds of 10s phases
#
# Needs: `cargo build --release -p kv-server -p kv-client`, wrk, and etcd 3.4
# (`apt-get install etcd-server wrk` on Debian; ETCD=/path/to/etcd to use another).
# Per round and system, phases run back to back:
#   wrk   write  PUT /keys/K (kv)      | POST /v3/kv/put (etcd's v3 JSON gateway)
#   wrk   read   GET /keys/K (kv)      | POST /v3/kv/range (etcd), both linearizable
#   kv-client bench, kv only: writes, then linearizable reads, over binary then HTTP, with
#   each of ROUTINGS (default "leader spread": connections to the leader, or round robin).
# wrk drives the leader (both systems forward writes to it; this keeps the extra hop out of
# the comparison) with CLIENTS connections (default 64) on 2 threads; kv-client bench
# spreads its clients over the three nodes. Values are 100 bytes, keys random among
# KEYSPACE (default 10000). A write is answered only after it is applied (kv: on the node
# that received it; etcd: the same). Every phase appends one JSON line to $RESULTS (default
# /tmp/cluster-bench.jsonl) with throughput, latency percentiles and the CPU seconds the
# three servers used during the phase; a table is printed at the end.
set -euo pipefail

ROUNDS=${1:-2}
DURATION=${2:-10s}
CLIENTS=${CLIENTS:-64}
KEYSPACE=${KEYSPACE:-10000}
ROUTINGS=${ROUTINGS:-leader spread}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$ROOT/target/release/kv-server
CLIENT=$ROOT/target/release/kv-client
ETCD=${ETCD:-etcd}
LUA=$ROOT/bench/cluster/wrk.lua
RESULTS=${RESULTS:-/tmp/cluster-bench.jsonl}
BASE=${BASE_PORT:-43000}
DIR=$(mktemp -d /tmp/cluster-bench.XXXXXX)
PIDS=()

for tool in "$SERVER" "$CLIENT" "$(command -v "$ETCD" || true)" "$(command -v wrk || true)"; do
    if [ -z "$tool" ] || [ ! -x "$tool" ]; then
        echo "missing: ${tool:-etcd or wrk} (see the header of $0)" >&2
        exit 2
    fi
done

stop() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop; rm -rf "$DIR"' EXIT

# Waits (at most 20 s) until `$@` succeeds.
wait_for() {
    for _ in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for: $*" >&2
    exit 1
}

# CPU seconds (user + system) the running servers have used so far.
server_cpu() {
    local ticks=0
    for pid in "${PIDS[@]}"; do
        ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$ticks $(getconf CLK_TCK)" | awk '{printf "%.2f", $1 / $2}'
}

KV_CLIENT_URLS=()
start_kv() {
    local peers="http://127.0.0.1:$((BASE + 1)),http://127.0.0.1:$((BASE + 2)),http://127.0.0.1:$((BASE + 3))"
    KV_CLIENT_URLS=()
    for id in 1 2 3; do
        RUST_LOG=warn "$SERVER" --id "$id" --cluster "$peers" --port $((BASE + 10 + id)) \
            --data-dir "$DIR/kv-$id" >"$DIR/kv-$id.log" 2>&1 &
        PIDS+=($!)
        KV_CLIENT_URLS+=("http://127.0.0.1:$((BASE + 10 + id))")
    done
    wait_for "$CLIENT" --endpoints "$(IFS=,; echo "${KV_CLIENT_URLS[*]}")" --timeout 1s health
}

kv_leader() {
    for url in "${KV_CLIENT_URLS[@]}"; do
        if curl -sf "$url/state" | grep -q '"role":"leader"'; then echo "$url"; return; fi
    done
    return 1
}

ETCD_CLIENT_URLS=()
start_etcd() {
    local initial="e1=http://127.0.0.1:$((BASE + 21)),e2=http://127.0.0.1:$((BASE + 22)),e3=http://127.0.0.1:$((BASE + 23))"
    ETCD_CLIENT_URLS=()
    for id in 1 2 3; do
        local client="http://127.0.0.1:$((BASE + 30 + id))" peer="http://127.0.0.1:$((BASE + 20 + id))"
        "$ETCD" --name "e$id" --data-dir "$DIR/etcd-$id" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --initial-cluster-token bench --logger zap --log-level warn \
            >"$DIR/etcd-$id.log" 2>&1 &
        PIDS+=($!)
        ETCD_CLIENT_URLS+=("$client")
    done
    wait_for etcd_leader
}

etcd_leader() {
    for url in "${ETCD_CLIENT_URLS[@]}"; do
        curl -sf -X POST "$url/v3/maintenance/status" -d '{}' | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s.get("leader") and s["leader"] == s["header"]["member_id"] else 1)' \
            && { echo "$url"; return; }
    done
    return 1
}

# record SYSTEM TOOL PROTOCOL WORKLOAD CPU_BEFORE CPU_AFTER < tool's JSON report
record() {
    python3 -c '
import json, sys
system, tool, protocol, workload, before, after = sys.argv[1:7]
r = json.load(sys.stdin)
if tool == "wrk":
    ops, secs = r["requests"], r["duration_us"] / 1e6
    lat = {k: r[k + "_us"] for k in ("p50", "p90", "p99", "p999", "max")}
    errors = r["errors"] + r["non_2xx"]
else:
    ops, secs = r["ops"], r["elapsed_s"]
    lat = {k.replace(".", ""): v for k, v in r["latency_us"].items()}
    errors = r["errors"]
cpu = float(after) - float(before)
print(json.dumps({"system": system, "tool": tool, "protocol": protocol, "workload": workload,
    "ops": ops, "ops_per_s": ops / secs, "errors": errors, "latency_us": lat,
    "server_cpu_s": cpu, "cpu_us_per_op": cpu / max(ops, 1) * 1e6}))
' "$@" | tee -a "$RESULTS" >>"$DIR/round.jsonl"
}

run_wrk() { # SYSTEM WORKLOAD URL MODE
    local before after
    before=$(server_cpu)
    wrk -t2 -c"$CLIENTS" -d"$DURATION" -s "$LUA" "$3" -- "$4" "$KEYSPACE" 100 >"$DIR/wrk.out"
    after=$(server_cpu)
    tail -n 1 "$DIR/wrk.out" | record "$1" wrk http "$2" "$before" "$after"
}

run_kv_client() { # PROTOCOL WORKLOAD READ_RATIO ROUTING
    local before after
    before=$(server_cpu)
    "$CLIENT" --endpoints "$(IFS=,; echo "${KV_CLIENT_URLS[*]}")" --json bench \
        --clients "$CLIENTS" --duration "$DURATION" --keyspace "$KEYSPACE" --value-size 100 \
        --read-ratio "$3" --protocol "$1" --routing "$4" >"$DIR/client.json"
    after=$(server_cpu)
    record kv kv-client "$1/$4" "$2" "$before" "$after" <"$DIR/client.json"
}

: >"$DIR/round.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round: kv-server" >&2
    start_kv
    leader=$(kv_leader)
    run_wrk kv write "$leader" kv-put
    run_wrk kv read "$leader" kv-get
    for routing in $ROUTINGS; do
        for protocol in binary http; do
            run_kv_client "$protocol" write 0 "$routing"
            run_kv_client "$protocol" read 1 "$routing"
        done
    done
    stop
    rm -rf "$DIR"/kv-*

    echo "--- round $round: etcd" >&2
    start_etcd
    leader=$(etcd_leader)
    run_wrk etcd write "$leader" etcd-put
    run_wrk etcd read "$leader" etcd-get
    stop
    rm -rf "$DIR"/etcd-*
done

python3 - "$DIR/round.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("%-5s %-9s %-13s %-5s %9s %6s %8s %8s %8s %9s" % (
    "sys", "tool", "proto", "load", "ops/s", "errs", "p50 ms", "p99 ms", "p99.9 ms", "cpu us/op"))
for r in rows:
    l = r["latency_us"]
    print("%-5s %-9s %-13s %-5s %9.0f %6d %8.2f %8.2f %8.2f %9.1f" % (
        r["system"], r["tool"], r["protocol"], r["workload"], r["ops_per_s"], r["errors"],
        l["p50"] / 1e3, l["p99"] / 1e3, l["p999"] / 1e3, r["cpu_us_per_op"]))

def mean(sel):
    v = [r for r in rows if all(r[k] == x for k, x in sel.items())]
    if not v:
        return None
    return {k: sum(r[k] for r in v) / len(v) for k in ("ops_per_s", "cpu_us_per_op")} | {
        "p99": sum(r["latency_us"]["p99"] for r in v) / len(v)}

print()
for routing in ("leader", "spread"):
    for load in ("write", "read"):
        b = mean({"tool": "kv-client", "protocol": "binary/" + routing, "workload": load})
        h = mean({"tool": "kv-client", "protocol": "http/" + routing, "workload": load})
        if b and h:
            print("kv-client %-6s %-5s binary/http: throughput %.2fx, cpu per op %.2fx" % (
                routing, load, b["ops_per_s"] / h["ops_per_s"], b["cpu_us_per_op"] / h["cpu_us_per_op"]))
for load in ("write", "read"):
    etcd = mean({"system": "etcd", "workload": load})
    kv = [r for r in rows if r["system"] == "kv" and r["workload"] == load]
    if etcd and kv:
        for tool, proto in sorted({(r["tool"], r["protocol"]) for r in kv}):
            m = mean({"system": "kv", "tool": tool, "protocol": proto, "workload": load})
            print("%-5s kv %-9s %-13s vs etcd: throughput %.2fx, p99 %.2fx, cpu per op %.2fx" % (
                load, tool, proto, m["ops_per_s"] / etcd["ops_per_s"], m["p99"] / etcd["p99"],
                m["cpu_us_per_op"] / etcd["cpu_us_per_op"]))
PY
