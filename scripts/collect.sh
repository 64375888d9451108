#!/usr/bin/env bash
# Example: a collector. `tcpchat dump FILE` appends what five nc senders send at once;
# every line arrives, none torn, each sender's lines in order.
source "$(dirname "$0")/lib.sh"
build
collected="$WORK/collected.txt"
echo "existing line" >"$collected"
start_server dump dump "$collected"

senders=()
for sender in 1 2 3 4 5; do
  seq 1 2000 | sed "s/^/sender $sender line /" | "$NC" -N 127.0.0.1 "$PORT" &
  senders+=($!)
done
for pid in "${senders[@]}"; do wait "$pid" || fail "an nc sender failed"; done
stop_server

[ "$(head -n 1 "$collected")" = "existing line" ] || fail "the file was truncated"
[ "$(wc -l <"$collected")" -eq 10001 ] || fail "expected 10001 lines, got $(wc -l <"$collected")"
for sender in 1 2 3 4 5; do
  grep "^sender $sender line " "$collected" | cut -d' ' -f4 >"$WORK/order.txt"
  seq 1 2000 | cmp -s - "$WORK/order.txt" || fail "sender $sender's lines are missing or out of order"
done
echo "collect example passed: 5 nc senders, 10000 lines stored, none lost or torn"
