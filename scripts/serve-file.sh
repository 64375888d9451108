#!/usr/bin/env bash
# Example: `tcpchat send FILE` serves a file to three nc readers at once; each gets it
# byte for byte, and the connection closes when the file ends.
source "$(dirname "$0")/lib.sh"
build
head -c 20000000 /dev/urandom >"$WORK/file.bin"
start_server send send "$WORK/file.bin"

readers=()
for reader in 1 2 3; do
  "$NC" 127.0.0.1 "$PORT" </dev/null >"$WORK/copy$reader.bin" &
  readers+=($!)
done
for pid in "${readers[@]}"; do wait "$pid" || fail "an nc reader failed"; done
for reader in 1 2 3; do
  cmp -s "$WORK/file.bin" "$WORK/copy$reader.bin" || fail "reader $reader got a different file"
done
stop_server
echo "serve-file example passed: 3 nc readers got the same 20 MB file"
