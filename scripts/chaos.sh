#!/usr/bin/env bash
# Runs the cluster's chaos test for a while (tests/it/chaos/, `long_chaos_run`): three
# release-built nodes and a redis-server on 127.0.0.1, nodes killed and restarted, Redis
# paused and restarted empty, a node cut from Redis, while clients chat; then checks that
# no line was doubled, lost (beyond what a killed node took with it) or seen out of order,
# and that every node lives. Prints the run's table; exits with the test's status.
#
#   scripts/chaos.sh            300 s of faults, a seed from the clock (printed)
#   scripts/chaos.sh 1800       30 minutes
#   scripts/chaos.sh 300 42     seed 42: the same faults as the run that printed it
#
# Needs redis-server (apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || {
  echo "chaos.sh: redis-server not found (apt-get install redis-server)" >&2
  exit 1
}
export TCPCHAT_CHAOS_SECONDS=${1:-300}
if [ -n "${2:-}" ]; then export TCPCHAT_CHAOS_SEED=$2; fi
exec cargo test --release --test it chaos::long_chaos_run -- --ignored --nocapture
