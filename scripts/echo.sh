#!/usr/bin/env bash
# Example: the chapter's echo server, once with --once (it exits after one client, like
# `nc -l`), checked with nc.
source "$(dirname "$0")/lib.sh"
build
start_server echo echo --once

printf 'hello\nsecond line\n  QUIT \nnot echoed\n' | "$NC" 127.0.0.1 "$PORT" >"$WORK/reply.txt"
printf '%s\n' 'Hello! You can start typing. Type "quit" to exit!' 'hello' 'second line' 'Bye Bye!' \
  >"$WORK/expected.txt"
cmp -s "$WORK/expected.txt" "$WORK/reply.txt" || fail "echo replied: $(cat "$WORK/reply.txt")"
wait_exit "$SERVER_PID"
wait_for "$WORK/echo.log" "server closed"
echo "echo example passed: greeting, two lines back, Bye Bye!, and --once exited"
