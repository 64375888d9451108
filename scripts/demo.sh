#!/usr/bin/env bash
# Try tcpchat by hand: a server on port 4001 (or $PORT) and three nc sessions side by
# side in tmux, one of them already in a second room to show that rooms do not hear
# each other. Type in any nc pane (/help lists the commands; the operator password is
# "demo"); Ctrl-C in the server pane drains and stops it;
# `tmux kill-session -t tcpchat-demo` ends the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-4001}
cargo build --release --quiet
server="./target/release/tcpchat --port $PORT --op-password demo"

if ! command -v tmux >/dev/null; then
  echo "tmux not found (apt-get install tmux): starting the server alone."
  echo "In other terminals, run: nc 127.0.0.1 $PORT   (or: telnet 127.0.0.1 $PORT)"
  echo "Then try /join games in one of them, and /rooms, /who, /time on, /op demo."
  exec $server
fi

# Each nc pane waits until the server listens, so the panes may start in any order.
wait_for_server="until nc -z 127.0.0.1 $PORT; do sleep 0.1; done"
client="$wait_for_server; nc 127.0.0.1 $PORT"
# The third session joins "games" first, then hands the keyboard over.
in_games="$wait_for_server; { echo '/join games'; cat; } | nc 127.0.0.1 $PORT"
tmux new-session -d -s tcpchat-demo -x 200 -y 50 "$server"
tmux split-window -h -t tcpchat-demo "$client"
tmux split-window -v -t tcpchat-demo "$client"
tmux split-window -v -t tcpchat-demo "$in_games"
tmux select-layout -t tcpchat-demo tiled
if [ -t 1 ] && [ -z "${TMUX:-}" ]; then
  exec tmux attach -t tcpchat-demo
fi
echo "demo running in tmux session tcpchat-demo: tmux attach -t tcpchat-demo"
