#!/usr/bin/env bash
# Smoke test: the release binary on a free port, three nc sessions that chat.
# Exits non-zero, with the logs, on the first thing that goes wrong.
source "$(dirname "$0")/lib.sh"
build
start_server server

# Each session reads its input from a FIFO kept open on descriptors 3, 4 and 5,
# so the script can type into it line by line.
for i in 1 2 3; do
  mkfifo "$WORK/in$i"
  "$NC" 127.0.0.1 "$PORT" <"$WORK/in$i" >"$WORK/client$i.log" &
  PIDS+=($!)
  eval "exec $((i + 2))>\"\$WORK/in$i\""
  wait_for "$WORK/client$i.log" "* welcome, guest-$i!"
done

echo "/nick ann" >&3
wait_for "$WORK/client2.log" "* guest-1 is now ann"
echo "hello from ann" >&3
wait_for "$WORK/client2.log" "[ann] hello from ann"
wait_for "$WORK/client3.log" "[ann] hello from ann"
echo "/me waves back" >&4
wait_for "$WORK/client1.log" "[guest-2] * waves back"
printf 'telnet style\r\n' >&5
wait_for "$WORK/client1.log" "[guest-3] telnet style"
echo "/msg ann just you" >&5
wait_for "$WORK/client1.log" "[guest-3 -> you] just you"
grep -qF "just you" "$WORK/client2.log" && fail "a private message reached a third client"
grep -qF "hello from ann" "$WORK/client1.log" && fail "the sender got its own line back"

echo "/quit done" >&4
wait_for "$WORK/client1.log" "* guest-2 left (quit: done)"
echo "/quit" >&3
wait_for "$WORK/client3.log" "* ann left (quit)"
echo "/quit" >&5
wait_for "$WORK/client3.log" "* bye!"
stop_server
wait_for "$WORK/server.log" "server closed"
echo "smoke test passed: three nc sessions chatted"
