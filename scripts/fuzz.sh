#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, on the stable toolchain, and fails on
# a crash, a panic or a broken property (each target checks its parser's promises).
#
#   scripts/fuzz.sh          20 s per target (as CI runs it)
#   scripts/fuzz.sh 600      10 minutes per target
#   scripts/fuzz.sh 60 telnet   one target
#
# No cargo-fuzz: the targets are plain libFuzzer programs (libfuzzer-sys builds libFuzzer
# with the C++ compiler), and rustc's sanitizer-coverage pass is reached with stable
# `-C` flags, the ones cargo-fuzz passes, without `-Z` (so no nightly and no
# RUSTC_BOOTSTRAP). No AddressSanitizer either: the parsers are safe Rust, and a panic
# (every broken property is an assert) is what libFuzzer reports as a crash. Each target
# starts from its seeds in fuzz/seeds/TARGET and keeps what it finds in
# target/fuzz/corpus/TARGET; a crash is saved as target/fuzz/crash-* (replay it with
# target/fuzz/HOST/release/TARGET FILE), and becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(protocol telnet http_head websocket wire redis_reply)

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
# With --target, RUSTFLAGS reach the targets' code but not build scripts and proc macros,
# which must not be instrumented (nothing links libFuzzer into them).
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target-dir target/fuzz \
  --target "$host" --bins

for target in "${TARGETS[@]}"; do
  corpus=target/fuzz/corpus/$target
  mkdir -p "$corpus"
  cp fuzz/seeds/"$target"/* "$corpus"/
  echo "== fuzz $target for ${SECONDS_EACH}s"
  log=target/fuzz/$target.log
  if ! ./target/fuzz/"$host"/release/"$target" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -artifact_prefix=target/fuzz/ -max_len=70000 "$corpus" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz $target: a crash or a broken property (the input is in target/fuzz/)" >&2
    exit 1
  fi
  grep -E "^Done|number_of_executed_units" "$log" || true
done
