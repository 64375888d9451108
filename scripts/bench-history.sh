#!/usr/bin/env bash
# What --history-db costs: tcpchat's fanout and latency scenarios (scripts/bench.sh's load
# generator) against tcpchat with its history in memory and with every line also stored
# in an SQLite file, back to back in each round (which goes first alternates), a fresh
# file per run. Prints each round's ratios (file / memory) and their medians, and writes
# bench/results/history.json.
#
#   scripts/bench-history.sh           5 rounds (about 4 minutes)
#   ROUNDS=9 scripts/bench-history.sh  more rounds, steadier medians
#   scripts/bench-history.sh --quick   one short round: a smoke test of the script
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; ROUNDS=1; fi
cargo build --release --quiet -p tcpchat -p tcpchat-bench
BENCH=./target/release/tcpchat-bench
TCPCHAT_FLAGS="--rate 0 --max-clients 20000 -q"
WORK=$(mktemp -d)
RAW="$WORK/raw.jsonl"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run ROUND SCENARIO SETUP: one run of SCENARIO against tcpchat (SETUP: memory or file).
run() {
  local port args=() result
  port=$(free_port)
  if [ "$3" = file ]; then
    rm -f "$WORK"/history.db*
    args=(--history-db "$WORK/history.db")
  fi
  # shellcheck disable=SC2086
  ./target/release/tcpchat --host 127.0.0.1 --port "$port" $TCPCHAT_FLAGS "${args[@]}" 2>"$WORK/server.log" &
  SERVER_PID=$!
  until ss -ltn | grep -q "127.0.0.1:$port "; do sleep 0.02; done
  echo "  [${SECONDS}s] round $1, $2: history in $3" >&2
  if ! result=$(timeout 90 "$BENCH" "$2" --addr "127.0.0.1:$port" --pid "$SERVER_PID" $QUICK); then
    result='{"error": "timed out or failed"}'
  fi
  kill -INT "$SERVER_PID"
  if ! wait "$SERVER_PID"; then
    # Exit status 1: lines were not stored (the disk did not keep up). Reported.
    result="${result%\}}, \"history_lost\": 1}"
  fi
  SERVER_PID=""
  echo "{\"round\": $1, \"scenario\": \"$2\", \"setup\": \"$3\", \"result\": $result}" >>"$RAW"
}

for round in $(seq "$ROUNDS"); do
  setups=(memory file)
  if [ $((round % 2)) = 0 ]; then setups=(file memory); fi
  for scenario in fanout latency; do
    for setup in "${setups[@]}"; do run "$round" "$scenario" "$setup"; done
  done
done

mkdir -p bench/results
python3 - "$RAW" "bench/results/${QUICK:+quick-}history.json" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
metrics = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s"),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery"),
    ("latency", "p50_ms", "latency: p50 ms"),
    ("latency", "p99_ms", "latency: p99 ms"),
]
rounds = sorted({run["round"] for run in runs})
def value(round_, scenario, setup, key):
    for run in runs:
        if (run["round"], run["scenario"], run["setup"]) == (round_, scenario, setup):
            return run["result"].get(key)
print("| --history-db FILE vs history in memory | memory (median) | file (median) | file / memory, each round | median ratio |")
print("|---|---|---|---|---|")
report = {}
for scenario, key, label in metrics:
    pairs = [(value(r, scenario, "memory", key), value(r, scenario, "file", key)) for r in rounds]
    pairs = [(m, f) for m, f in pairs if m and f]
    if not pairs:
        print(f"| {label} | - | - | - | - |")
        continue
    ratios = [f / m for m, f in pairs]
    report[label] = {"memory": [m for m, _ in pairs], "file": [f for _, f in pairs], "ratios": ratios}
    print(f"| {label} | {statistics.median(m for m, _ in pairs):.4g} | {statistics.median(f for _, f in pairs):.4g} "
          f"| {', '.join(f'{r:.3f}' for r in ratios)} | **{statistics.median(ratios):.3f}** |")
lost = [run for run in runs if run["result"].get("history_lost") or run["result"].get("error")]
for run in lost:
    print(f"note: round {run['round']} {run['scenario']} ({run['setup']}): {run['result']}")
json.dump({"runs": runs, "summary": report}, open(sys.argv[2], "w"), indent=1)
EOF
