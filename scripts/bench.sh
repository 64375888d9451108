#!/usr/bin/env bash
# Benchmarks tcpchat side by side with the chapter's Node chat server and `ncat --chat`:
# each scenario runs against each server in the same run, on the same machine, with the
# same parameters. The full run is 3 rounds; a round runs every scenario once, and each
# scenario against the three servers back to back, so a round's servers saw the same
# machine. Prints markdown tables (medians over the rounds, and tcpchat against the best
# other server round by round) and writes bench/results/.
#
#   scripts/bench.sh           the full run (about 15 minutes on 2 cores)
#   scripts/bench.sh --quick   a smoke test of the harness (about a minute), as CI runs it
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=""
ROUNDS=3
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; ROUNDS=1; fi
SCENARIOS=(fanout fanout-large latency capacity churn stall big-room big-room-churn)

# Node (the chapter's server) and ncat come from Debian's packages when missing.
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v ncat >/dev/null || missing+=(ncat)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not installed and cannot be installed here; those columns are skipped" >&2
  fi
fi

# 10,000 clients need 10,000 descriptors in the benchmark and in each server.
if ! ulimit -n 20000 2>/dev/null; then
  echo "note: cannot raise ulimit -n to 20000 (it is $(ulimit -n)); capacity may fail" >&2
fi

cargo build --release --quiet -p tcpchat -p tcpchat-bench
BENCH=./target/release/tcpchat-bench
# The machinery, not the policies: flood control off, room for 10,000 clients, no log
# line per connection.
TCPCHAT_FLAGS="--rate 0 --max-clients 20000 -q"
RESULTS=bench/results
mkdir -p "$RESULTS"
RAW=$(mktemp)
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK" "$RAW"
}
trap cleanup EXIT

servers=(tcpchat)
command -v node >/dev/null && servers+=(node)
command -v ncat >/dev/null && servers+=(ncat)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME: sets SERVER_PID and ADDR.
start_server() {
  local log="$WORK/server.log"
  : >"$log"
  case "$1" in
    tcpchat)
      local port
      port=$(free_port)
      # shellcheck disable=SC2086
      ./target/release/tcpchat --host 127.0.0.1 --port "$port" $TCPCHAT_FLAGS 2>"$log" &
      SERVER_PID=$!
      until ss -ltn | grep -q "127.0.0.1:$port "; do sleep 0.02; done
      ADDR="127.0.0.1:$port"
      ;;
    node)
      node scripts/baselines/node-chat.js 0 >"$log" 2>&1 &
      SERVER_PID=$!
      until grep -q "listening on" "$log"; do sleep 0.02; done
      ADDR=$(grep -m1 -o 'listening on .*' "$log" | sed 's/listening on //')
      ;;
    ncat)
      local port
      port=$(free_port)
      ncat --chat -l -m 20000 127.0.0.1 "$port" >"$log" 2>&1 &
      SERVER_PID=$!
      until ss -ltn | grep -q "127.0.0.1:$port "; do sleep 0.02; done
      ADDR="127.0.0.1:$port"
      ;;
  esac
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.02; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

echo "tcpchat runs with: tcpchat $TCPCHAT_FLAGS; node $(node -v 2>/dev/null || echo -); $(ncat --version 2>&1 | head -1 || echo ncat -)" >&2
for run in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for server in "${servers[@]}"; do
      start_server "$server"
      echo "  [${SECONDS}s] round $run, $scenario: $server on $ADDR" >&2
      # A hard limit per scenario: a server that freezes is reported, not waited for.
      if ! result=$(timeout 90 "$BENCH" "$scenario" --addr "$ADDR" --pid "$SERVER_PID" $QUICK); then
        result='{"error": "timed out or failed"}'
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || result="${result%\}}, \"server_died\": 1}"
      echo "{\"server\": \"$server\", \"scenario\": \"$scenario\", \"run\": $run, \"result\": $result}" >>"$RAW"
      stop_server
    done
  done
done

python3 scripts/bench_report.py "$RAW" "$RESULTS" "tcpchat $TCPCHAT_FLAGS" ${QUICK:+--quick}
