# Helpers shared by the scripts: build, start a server on a free port, wait for output.
# Source it; it sets up a temporary folder and cleans up on exit.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TCPCHAT=${TCPCHAT:-./target/release/tcpchat}
# OpenBSD netcat (Debian's default nc): the scripts use its -N (close the connection's
# sending side at the end of input).
NC=${NC:-$(command -v nc.openbsd || echo nc)}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; cat "$log" >&2; }; done
  exit 1
}

build() {
  command -v "$NC" >/dev/null || fail "$NC not found (apt-get install netcat-openbsd)"
  cargo build --release --quiet
}

# wait_for FILE PATTERN: polls FILE for a fixed string, for at most 10 s.
wait_for() {
  for _ in $(seq 200); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "no \"$2\" in $1"
}

# start_server NAME ARGS...: runs tcpchat on 127.0.0.1 and a free port, log in
# $WORK/NAME.log; sets PORT and SERVER_PID.
start_server() {
  local name=$1; shift
  "$TCPCHAT" "$@" --host 127.0.0.1 --port 0 2>"$WORK/$name.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_for "$WORK/$name.log" "listening on "
  PORT=$(grep -m1 -o 'listening on .*' "$WORK/$name.log" | sed 's/.*://')
}

# wait_exit PID: the process must exit with status 0 within 10 s.
wait_exit() {
  for _ in $(seq 200); do
    kill -0 "$1" 2>/dev/null || { wait "$1" || fail "process $1 exited with status $?"; return 0; }
    sleep 0.05
  done
  fail "process $1 still running"
}

# stop_server: Ctrl-C, then the exit status must be 0.
stop_server() {
  kill -INT "$SERVER_PID"
  wait "$SERVER_PID" || fail "server exited with status $?"
}
