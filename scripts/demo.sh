#!/usr/bin/env bash
# Try tcpchat by hand: a server on port 4001 (or $PORT) and three nc sessions side by
# side in tmux. Type in any nc pane; Ctrl-C in the server pane drains and stops it;
# `tmux kill-session -t tcpchat-demo` ends the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-4001}
cargo build --release --quiet
server="./target/release/tcpchat --port $PORT"

if ! command -v tmux >/dev/null; then
  echo "tmux not found (apt-get install tmux): starting the server alone."
  echo "In other terminals, run: nc 127.0.0.1 $PORT   (or: telnet 127.0.0.1 $PORT)"
  exec $server
fi

# Each nc pane waits until the server listens, so the panes may start in any order.
client="until nc -z 127.0.0.1 $PORT; do sleep 0.1; done; nc 127.0.0.1 $PORT"
tmux new-session -d -s tcpchat-demo -x 200 -y 50 "$server"
tmux split-window -h -t tcpchat-demo "$client"
tmux split-window -v -t tcpchat-demo "$client"
tmux split-window -v -t tcpchat-demo "$client"
tmux select-layout -t tcpchat-demo tiled
if [ -t 1 ] && [ -z "${TMUX:-}" ]; then
  exec tmux attach -t tcpchat-demo
fi
echo "demo running in tmux session tcpchat-demo: tmux attach -t tcpchat-demo"
