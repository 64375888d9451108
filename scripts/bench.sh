#!/usr/bin/env bash
# Benchmarks tcpchat side by side with the chapter's Node chat server and `ncat --chat`:
# each scenario runs against each server in the same run, on the same machine, with the
# same parameters. The full run is 3 rounds (ROUNDS=N for more); a round runs every
# scenario once, and each scenario against the three servers back to back, so a round's
# servers saw the same machine. Prints markdown tables (medians over the rounds, and
# tcpchat against the best other server round by round) and writes bench/results/.
#
# Each round ends with the cluster comparison (issue 11): fanout and latency against
# three tcpchat nodes sharing one Redis, the clients spread over the nodes, and against
# one tcpchat node, back to back (which of the two goes first alternates by round). Every
# cluster run has a Redis and nodes of its own: the stream keeps the room's history, which
# would hand the previous run's marked lines to the next run's clients. Skipped, with a
# note, without redis-server.
#
# Each round then runs the transports (issue 25): fanout, latency, capacity (2,000 idle
# clients) and churn over WebSocket, TLS and wss, each against its peers: ws against Node
# with the `ws` package (scripts/baselines/node-ws-chat.js), TLS against the chapter's
# server over Node's tls module (node-tls-chat.js) and `ncat --ssl --chat`, wss against
# Node and ws over https. Every TLS server gets the same certificate, made by openssl for
# the run. The ws package comes from npm, pinned by scripts/baselines/package-lock.json,
# into target/bench-node/; without node, npm or openssl, those columns are skipped, with a
# note.
#
#   scripts/bench.sh           the full run (about 35 minutes on 2 cores the host leaves alone)
#   ROUNDS=5 scripts/bench.sh  five rounds (about an hour): steadier medians
#   scripts/bench.sh --quick   a smoke test of the harness (about two minutes), as CI runs it
#   BENCH_SCENARIOS="capacity churn" BENCH_CLUSTER=0 scripts/bench.sh
#                              only these plain-TCP scenarios and no cluster comparison (the
#                              transports always run): a shorter run when only they changed
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=""
ROUNDS=${ROUNDS:-3}
# A scenario whose runs the host disturbed runs again (see the rounds below).
STEAL_LIMIT_MS_PER_S=20
MAX_ATTEMPTS=3
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; ROUNDS=1; MAX_ATTEMPTS=1; fi
read -ra SCENARIOS <<<"${BENCH_SCENARIOS:-fanout fanout-large latency capacity churn stall big-room big-room-churn}"
TRANSPORTS=(ws tls wss)
TRANSPORT_SCENARIOS=(fanout latency capacity churn)

# Node (the chapter's server) and ncat come from Debian's packages when missing.
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)  # the ws package of the WebSocket peers
command -v ncat >/dev/null || missing+=(ncat)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not installed and cannot be installed here; those columns are skipped" >&2
  fi
fi
CLUSTER_SCENARIOS=(fanout latency)
[ "${BENCH_CLUSTER:-1}" = 0 ] && CLUSTER_SCENARIOS=()
if ! command -v redis-server >/dev/null; then
  echo "note: redis-server is not installed: the cluster comparison is skipped" >&2
  CLUSTER_SCENARIOS=()
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
NODE_PIDS=()
REDIS_PID=""
cleanup() {
  local pid
  for pid in $SERVER_PID "${NODE_PIDS[@]}" $REDIS_PID; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK" "$RAW"
}
trap cleanup EXIT

servers=(tcpchat)
command -v node >/dev/null && servers+=(node)
command -v ncat >/dev/null && servers+=(ncat)

# The WebSocket peers' ws package, from the committed package.json and package-lock.json,
# into target/ (never committed); installed again only when the lock file changed.
NODE_MODULES=""
if command -v node >/dev/null && command -v npm >/dev/null; then
  node_dir=target/bench-node
  mkdir -p "$node_dir"
  if cmp -s scripts/baselines/package-lock.json "$node_dir/package-lock.json" &&
    [ -f "$node_dir/node_modules/ws/package.json" ]; then
    NODE_MODULES="$PWD/$node_dir/node_modules"
  else
    cp scripts/baselines/package.json scripts/baselines/package-lock.json "$node_dir/"
    if (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1); then
      NODE_MODULES="$PWD/$node_dir/node_modules"
    else
      rm -f "$node_dir/package-lock.json"
      echo "note: npm ci failed ($(tail -n 1 "$WORK/npm.log")): the Node WebSocket columns are skipped" >&2
    fi
  fi
else
  echo "note: node or npm is missing: the Node WebSocket columns are skipped" >&2
fi
# One certificate for every TLS server of the run, so that all pay for the same key (ECDSA
# P-256, as tcpchat's --tls-self-signed makes). Without openssl, tcpchat makes its own and
# ncat uses a temporary one; the Node peers, which need files, are skipped.
CERT="$WORK/cert.pem" KEY="$WORK/key.pem"
if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$KEY" -out "$CERT" >/dev/null 2>&1; then
  echo "note: openssl could not make a certificate: the Node TLS and wss columns are skipped" >&2
  CERT="" KEY=""
fi
# The servers each transport is compared with.
transport_servers() {
  case "$1" in
    ws) echo tcpchat ${NODE_MODULES:+node-ws} ;;
    tls) echo tcpchat ${CERT:+$(command -v node >/dev/null && echo node-tls)} \
      $(command -v ncat >/dev/null && echo ncat-ssl) ;;
    wss) echo tcpchat ${CERT:+${NODE_MODULES:+node-wss}} ;;
  esac
}
if [ -n "$CERT" ]; then
  TCPCHAT_TLS_FLAGS="--tls-cert $CERT --tls-key $KEY"
  NCAT_TLS_FLAGS="--ssl-cert $CERT --ssl-key $KEY"
else
  TCPCHAT_TLS_FLAGS="--tls-self-signed"
  NCAT_TLS_FLAGS=""
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_node_listening LOG: until the Node server writing LOG says where it listens; sets
# ADDR.
wait_node_listening() {
  until grep -q "listening on" "$1"; do sleep 0.02; done
  ADDR=$(grep -m1 -o 'listening on .*' "$1" | sed 's/listening on //')
}

# start_transport_server NAME TRANSPORT: a server of the transports' comparison (ws, tls
# or wss); sets SERVER_PID and ADDR, the address the clients connect to (tcpchat's web
# port for ws and wss).
start_transport_server() {
  local log="$WORK/server.log" port web tls_flags=""
  : >"$log"
  case "$1" in
    tcpchat)
      port=$(free_port)
      if [ "$2" != ws ]; then tls_flags=$TCPCHAT_TLS_FLAGS; fi
      if [ "$2" = tls ]; then
        # shellcheck disable=SC2086
        ./target/release/tcpchat --host 127.0.0.1 --port "$port" $tls_flags $TCPCHAT_FLAGS 2>"$log" &
      else
        web=$(free_port)
        # shellcheck disable=SC2086
        ./target/release/tcpchat --host 127.0.0.1 --port "$port" --web "127.0.0.1:$web" $tls_flags \
          $TCPCHAT_FLAGS 2>"$log" &
        port=$web
      fi
      SERVER_PID=$!
      until ss -ltn | grep -q "127.0.0.1:$port "; do sleep 0.02; done
      ADDR="127.0.0.1:$port"
      ;;
    node-ws)
      NODE_PATH=$NODE_MODULES node scripts/baselines/node-ws-chat.js 0 >"$log" 2>&1 &
      SERVER_PID=$!
      wait_node_listening "$log"
      ;;
    node-wss)
      NODE_PATH=$NODE_MODULES node scripts/baselines/node-ws-chat.js 0 "$CERT" "$KEY" >"$log" 2>&1 &
      SERVER_PID=$!
      wait_node_listening "$log"
      ;;
    node-tls)
      node scripts/baselines/node-tls-chat.js 0 "$CERT" "$KEY" >"$log" 2>&1 &
      SERVER_PID=$!
      wait_node_listening "$log"
      ;;
    ncat-ssl)
      port=$(free_port)
      # shellcheck disable=SC2086
      ncat --ssl $NCAT_TLS_FLAGS --chat -l -m 20000 127.0.0.1 "$port" >"$log" 2>&1 &
      SERVER_PID=$!
      until ss -ltn | grep -q "127.0.0.1:$port "; do sleep 0.02; done
      ADDR="127.0.0.1:$port"
      ;;
  esac
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

# stop_process PID...: TERM to each, then up to 2 s for each to end before KILL.
stop_process() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

stop_server() {
  stop_process "$SERVER_PID"
  SERVER_PID=""
}

# wait_listening PORT PID: until PID listens on 127.0.0.1:PORT; fails if PID ends first
# or after 10 s.
wait_listening() {
  local deadline=$((SECONDS + 10))
  until ss -ltn | grep -q "127.0.0.1:$1 "; do
    if ! kill -0 "$2" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.02
  done
}

# start_cluster: a Redis and three tcpchat nodes on free ports, linked; sets REDIS_PID,
# NODE_PIDS and NODE_ADDRS, or says why not in CLUSTER_ERROR and fails.
start_cluster() {
  local redis_port port n addr_args=()
  NODE_PIDS=()
  NODE_ADDRS=()
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  if ! wait_listening "$redis_port" "$REDIS_PID"; then
    CLUSTER_ERROR="redis-server did not start"
    return 1
  fi
  for n in 1 2 3; do
    port=$(free_port)
    # shellcheck disable=SC2086
    ./target/release/tcpchat --host 127.0.0.1 --port "$port" \
      --cluster "redis://127.0.0.1:$redis_port" --node-name "node$n" $TCPCHAT_FLAGS 2>"$WORK/node$n.log" &
    NODE_PIDS+=($!)
    NODE_ADDRS+=("127.0.0.1:$port")
    addr_args+=(--addr "127.0.0.1:$port")
  done
  for n in 0 1 2; do
    if ! wait_listening "${NODE_ADDRS[n]##*:}" "${NODE_PIDS[n]}"; then
      CLUSTER_ERROR="node$((n + 1)) did not start"
      return 1
    fi
  done
  # -q hides `listening on`, and a node listens before its Redis link is up: the nodes
  # are linked once a line said on each has reached the others.
  if ! "$BENCH" wait-linked "${addr_args[@]}" >/dev/null 2>"$WORK/linked.err"; then
    CLUSTER_ERROR="nodes not linked: $(tr -d '"' <"$WORK/linked.err")"
    return 1
  fi
}

stop_cluster() {
  stop_process "${NODE_PIDS[@]}"
  stop_process $REDIS_PID
  NODE_PIDS=()
  REDIS_PID=""
}

# run_cluster_comparison ROUND SCENARIO SETUP: SCENARIO against one node or the cluster;
# appends one raw line, scenario cluster-SCENARIO, server SETUP (one-node or cluster).
run_cluster_comparison() {
  local run=$1 scenario=$2 setup=$3 result="" addr pid args=() pids=()
  if [ "$setup" = one-node ]; then
    start_server tcpchat
    pids=("$SERVER_PID")
    args=(--addr "$ADDR" --pid "$SERVER_PID")
    echo "  [${SECONDS}s] round $run, cluster-$scenario: one node on $ADDR" >&2
  elif start_cluster; then
    # CPU time counts for the three nodes and Redis.
    pids=("${NODE_PIDS[@]}" "$REDIS_PID")
    for addr in "${NODE_ADDRS[@]}"; do args+=(--addr "$addr"); done
    for pid in "${pids[@]}"; do args+=(--pid "$pid"); done
    echo "  [${SECONDS}s] round $run, cluster-$scenario: 3 nodes on ${NODE_ADDRS[*]}" >&2
  else
    echo "  [${SECONDS}s] round $run, cluster-$scenario: $CLUSTER_ERROR" >&2
    result="{\"error\": \"${CLUSTER_ERROR:0:200}\"}"
  fi
  if [ -z "$result" ]; then
    if ! result=$(timeout 90 "$BENCH" "$scenario" "${args[@]}" $QUICK); then
      result='{"error": "timed out or failed"}'
    fi
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then result="${result%\}}, \"server_died\": 1}"; break; fi
    done
  fi
  echo "{\"server\": \"$setup\", \"scenario\": \"cluster-$scenario\", \"run\": $run, \"result\": $result}" >>"$RAW"
  if [ "$setup" = one-node ]; then stop_server; else stop_cluster; fi
}

# steal_rate RESULT STARTED WORST: the larger of WORST and the host's steal during the run
# RESULT reports, in ms per second of the run that began at STARTED ($EPOCHREALTIME).
steal_rate() {
  local steal
  steal=$(grep -o '"host_steal_ms": [0-9.]*' <<<"$1" | grep -o '[0-9.]*$' || echo 0)
  awk -v steal="${steal:-0}" -v started="$2" -v now="$EPOCHREALTIME" -v worst="$3" \
    'BEGIN { rate = steal / (now - started); printf "%.0f\n", (rate > worst ? rate : worst) }'
}

# compare RUN SCENARIO TRANSPORT SERVER...: SCENARIO against each SERVER back to back
# over TRANSPORT (tcp: the plain comparison, whose raw lines carry no transport); appends
# one raw line per server.
compare() {
  local run=$1 scenario=$2 transport=$3
  shift 3
  local label=$scenario transport_args=() transport_field=""
  if [ "$transport" != tcp ]; then
    label="$transport-$scenario"
    transport_args=(--transport "$transport")
    transport_field=", \"transport\": \"$transport\""
  fi
  # A round's servers are compared with each other, so they must have seen the same
  # machine: when the host took more than STEAL_LIMIT_MS_PER_S of CPU time per second
  # from any one of the runs, the scenario runs again for all of them (up to
  # MAX_ATTEMPTS in all), and the attempt the host disturbed least is kept.
  local best_lines=() best_steal="" attempts=0 attempt lines worst server started result line
  for attempt in $(seq "$MAX_ATTEMPTS"); do
    attempts=$attempt
    lines=() worst=0
    for server in "$@"; do
      if [ "$transport" = tcp ]; then start_server "$server"; else start_transport_server "$server" "$transport"; fi
      echo "  [${SECONDS}s] round $run, $label: $server on $ADDR" >&2
      started=$EPOCHREALTIME
      # A hard limit per scenario: a server that freezes is reported, not waited for.
      if ! result=$(timeout 90 "$BENCH" "$scenario" --addr "$ADDR" --pid "$SERVER_PID" \
        "${transport_args[@]}" $QUICK); then
        result='{"error": "timed out or failed"}'
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || result="${result%\}}, \"server_died\": 1}"
      worst=$(steal_rate "$result" "$started" "$worst")
      lines+=("{\"server\": \"$server\"$transport_field, \"scenario\": \"$scenario\", \"run\": $run, \"result\": $result")
      stop_server
    done
    if [ -z "$best_steal" ] || awk "BEGIN { exit !($worst < $best_steal) }"; then
      best_lines=("${lines[@]}") best_steal=$worst
    fi
    if awk "BEGIN { exit !($worst <= $STEAL_LIMIT_MS_PER_S) }"; then break; fi
    echo "  round $run, $label: the host took $worst ms/s from one run" \
      "$([ "$attempt" -lt "$MAX_ATTEMPTS" ] && echo "- again" || echo "- keeping the least disturbed")" >&2
  done
  for line in "${best_lines[@]}"; do echo "$line, \"attempts\": $attempts}" >>"$RAW"; done
}

echo "tcpchat runs with: tcpchat $TCPCHAT_FLAGS; node $(node -v 2>/dev/null || echo -); $(ncat --version 2>&1 | head -1 || echo ncat -)" >&2
echo "transports: ws: $(transport_servers ws); tls: $(transport_servers tls); wss: $(transport_servers wss) (tcpchat TLS: $TCPCHAT_TLS_FLAGS)" >&2
for run in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    compare "$run" "$scenario" tcp "${servers[@]}"
  done
  for scenario in "${CLUSTER_SCENARIOS[@]}"; do
    setups=(one-node cluster)
    if [ $((run % 2)) = 0 ]; then setups=(cluster one-node); fi
    for setup in "${setups[@]}"; do
      run_cluster_comparison "$run" "$scenario" "$setup"
    done
  done
  for transport in "${TRANSPORTS[@]}"; do
    read -ra transport_peers <<<"$(transport_servers "$transport")"
    for scenario in "${TRANSPORT_SCENARIOS[@]}"; do
      compare "$run" "$scenario" "$transport" "${transport_peers[@]}"
    done
  done
done

# What TLS costs per delivery: tcpchat against itself, plain and over TLS, in each round.
tls_runs=()
for run in $(seq "$ROUNDS"); do
  plain_port=$(free_port)
  ./target/release/tcpchat --host 127.0.0.1 --port "$plain_port" $TCPCHAT_FLAGS 2>/dev/null &
  plain_pid=$!
  tls_port=$(free_port)
  ./target/release/tcpchat --host 127.0.0.1 --port "$tls_port" --tls-self-signed $TCPCHAT_FLAGS 2>/dev/null &
  tls_pid=$!
  until ss -ltn | grep -q "127.0.0.1:$plain_port " && ss -ltn | grep -q "127.0.0.1:$tls_port "; do sleep 0.02; done
  echo "  [${SECONDS}s] tls-cost run $run" >&2
  if result=$(timeout 90 ./target/release/tls-cost --plain "127.0.0.1:$plain_port" --plain-pid "$plain_pid" \
    --tls "127.0.0.1:$tls_port" --tls-pid "$tls_pid" 2>"$WORK/tls-cost.log"); then
    tls_runs+=("$result")
  else
    echo "  tls-cost failed: $(tail -n 3 "$WORK/tls-cost.log")" >&2
  fi
  kill "$plain_pid" "$tls_pid" 2>/dev/null || true
  wait "$plain_pid" "$tls_pid" 2>/dev/null || true
done
tls_file="$RESULTS/${QUICK:+quick-}tls-cost.json"
printf '[%s]\n' "$(IFS=,; echo "${tls_runs[*]}")" >"$tls_file"
echo "tls-cost (server CPU ns per delivery, plain and TLS, each round): $(cat "$tls_file")" >&2

python3 scripts/bench_report.py "$RAW" "$RESULTS" "tcpchat $TCPCHAT_FLAGS" ${QUICK:+--quick}
