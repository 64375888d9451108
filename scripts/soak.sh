#!/usr/bin/env bash
# Soak test: a tcpchat cluster under a steady, realistic mix of every kind of client for a
# long time, sampled every 5 s, to show that memory, descriptors and threads stay flat and
# that nothing said is lost.
#
#   scripts/soak.sh [DURATION]      DURATION in seconds (600) or as 90s, 10m, 1h, 1h30m;
#                                   10 minutes by default
#   SOAK_DIR=DIR scripts/soak.sh    the run directory (default target/soak); its previous
#                                   results are replaced
#   SOAK_SCALE=2 scripts/soak.sh    twice as many clients of each kind (default 1)
#   SOAK_BUILD=0 scripts/soak.sh    use the release binaries already built
#
# What it does, all on 127.0.0.1:
#  1. builds the release binaries (tcpchat, and soak-clients from bench/) and copies them
#     into the run directory, so that another build cannot replace them during the run;
#  2. starts a redis-server on a free port (no persistence) and two tcpchat nodes joined
#     through it (--cluster), each with the web page and WebSocket (--web) and metrics
#     (--metrics); node "tls" speaks TLS (a self-signed certificate made with openssl,
#     given as --tls-cert/--tls-key; --tls-self-signed without openssl), node "plain" does
#     not. With TLS every client port of a node speaks TLS, so the plain node is where nc
#     and telnet go: one TLS node and one plain node are what lets every kind of client in;
#  3. runs soak-clients (bench/src/bin/soak-clients/) for DURATION: 97 client slots, about
#     85 clients at once, saying about 30 lines/s in all (about 2,000 deliveries/s) and
#     opening about 8 connections/s, that join, chat, fall silent and leave over and over
#     (the mix is in its plan.rs; SOAK_SCALE scales it): real nc processes (typed
#     and scripted), telnet typists in character mode (Linux and Windows, negotiating as
#     each does, keys one by one with Backspace, Ctrl-W and Ctrl-U), browsers (the page,
#     then the WebSocket, ws and wss), TLS line clients, lurkers, connections that leave
#     without a word, page visitors, and witnesses that stay the whole run in two rooms and
#     check that every line reached them once, whole, in one order on both nodes;
#  4. samples every 5 s, for each node and Redis: RSS (VmRSS, KiB), open descriptors,
#     threads, connected clients (the metrics endpoint; Redis's INFO), into
#     RUN_DIR/samples.csv, with the phase of the run (starting, steady, stopping, after);
#  5. prints the driver's summary and, per process and metric, the first value after a
#     warm-up (a minute, or a tenth of a shorter run), the last, min, max and a verdict:
#     "growing" when the median of the steady run's last tenth is above that of its
#     second tenth by more than 5% and 1 MiB (RSS), or by more descriptors or threads than
#     the clients added explain (3, or 5%); and whether each node's descriptors and threads
#     went back to their idle count once everyone left. Draws RUN_DIR/soak.svg (RSS,
#     descriptors, threads and clients over time, per process).
#
# Needs: cargo, redis-server, netcat-openbsd (nc), python3 (the sampler and the report,
# standard library only), ss (iproute2), openssl (optional, see above). Every process it
# starts is stopped when it ends, Ctrl-C included.
#
# Exit status: 0 when the run was clean; 1 if a node died or exited uncleanly, panicked,
# stopped answering its metrics, the driver saw a failure (a line lost, duplicated,
# garbled or out of order, an error, a timeout), or a node's RSS, descriptors or threads
# grew; 2 on a bad argument or a missing program.
set -euo pipefail
cd "$(dirname "$0")/.."

INTERVAL=5

# parse_duration TEXT: seconds, from 600, 90s, 10m, 1h or 1h30m.
parse_duration() {
  local text=$1 total=0 number unit
  [[ $text =~ ^[0-9]+$ ]] && { echo "$text"; return; }
  [[ $text =~ ^([0-9]+[hms])+$ ]] || return 1
  while [[ $text =~ ^([0-9]+)([hms])(.*)$ ]]; do
    number=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} text=${BASH_REMATCH[3]}
    case $unit in
      h) total=$((total + number * 3600)) ;;
      m) total=$((total + number * 60)) ;;
      s) total=$((total + number)) ;;
    esac
  done
  echo "$total"
}

if ! DURATION_S=$(parse_duration "${1:-10m}") || [ "$DURATION_S" -lt 30 ]; then
  echo "usage: scripts/soak.sh [DURATION]   (at least 30 s: 90, 90s, 10m, 1h, 1h30m)" >&2
  exit 2
fi
RUN_DIR=${SOAK_DIR:-target/soak}
SCALE=${SOAK_SCALE:-1}
NC=$(command -v nc.openbsd || true)
missing=()
for program in redis-server python3 ss cargo; do
  command -v "$program" >/dev/null || missing+=("$program")
done
[ -n "$NC" ] || missing+=("nc.openbsd (netcat-openbsd)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "soak: missing ${missing[*]}" >&2
  exit 2
fi

mkdir -p "$RUN_DIR/bin"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
rm -f "$RUN_DIR"/{samples.csv,soak.svg,report.txt,driver-summary.txt,driver.log,phase,phase.new} \
  "$RUN_DIR"/{node-plain.log,node-tls.log,redis.log,version.txt,tls.pem,tls.key}

REDIS_PID="" SAMPLER_PID="" DRIVER_PID="" TAIL_PID=""
NODE_PIDS=()
cleanup() {
  local pid
  trap - EXIT INT TERM
  for pid in $DRIVER_PID $TAIL_PID $SAMPLER_PID "${NODE_PIDS[@]}" $REDIS_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in $DRIVER_PID $SAMPLER_PID "${NODE_PIDS[@]}" $REDIS_PID; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT
trap 'echo "soak: terminated" >&2; exit 143' TERM

# 1. The binaries, copied so that other builds cannot replace them under a long run.
if [ "${SOAK_BUILD:-1}" != 0 ]; then
  cargo build --release --quiet -p tcpchat -p tcpchat-bench
fi
cp target/release/tcpchat target/release/soak-clients "$RUN_DIR/bin/"
BIN=$RUN_DIR/bin
{
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "uncommitted changes: $(git status --porcelain 2>/dev/null | wc -l) files"
  echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ), duration ${DURATION_S}s, scale $SCALE"
} >"$RUN_DIR/version.txt"
ulimit -n 20000 2>/dev/null || echo "soak: note: ulimit -n stays $(ulimit -n)" >&2

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening PID PORT...: until PID listens on each port; fails after 15 s or if it ends.
wait_listening() {
  local pid=$1 port deadline=$((SECONDS + 15))
  shift
  for port in "$@"; do
    until ss -ltn | grep -q "127.0.0.1:$port "; do
      if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
      sleep 0.05
    done
  done
}

# 2. Redis and the two nodes.
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$RUN_DIR/tls.key" -out "$RUN_DIR/tls.pem" 2>/dev/null
  TLS_ARGS=(--tls-cert "$RUN_DIR/tls.pem" --tls-key "$RUN_DIR/tls.key")
else
  TLS_ARGS=(--tls-self-signed)
fi

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$RUN_DIR/redis.log" 2>&1 &
REDIS_PID=$!
wait_listening "$REDIS_PID" "$REDIS_PORT" || { echo "soak: redis-server did not start" >&2; exit 1; }

declare -A CHAT_PORT WEB_PORT METRICS_PORT NODE_PID
for name in plain tls; do
  CHAT_PORT[$name]=$(free_port) WEB_PORT[$name]=$(free_port) METRICS_PORT[$name]=$(free_port)
  extra=()
  [ "$name" = tls ] && extra=("${TLS_ARGS[@]}")
  "$BIN/tcpchat" --host 127.0.0.1 --port "${CHAT_PORT[$name]}" \
    --web "127.0.0.1:${WEB_PORT[$name]}" --metrics "127.0.0.1:${METRICS_PORT[$name]}" \
    --cluster "redis://127.0.0.1:$REDIS_PORT" --node-name "soak-$name" --drain-timeout 5 \
    "${extra[@]}" 2>"$RUN_DIR/node-$name.log" &
  NODE_PID[$name]=$!
  NODE_PIDS+=($!)
done
for name in plain tls; do
  if ! wait_listening "${NODE_PID[$name]}" "${CHAT_PORT[$name]}" "${WEB_PORT[$name]}" "${METRICS_PORT[$name]}"; then
    echo "soak: node $name did not start:" >&2
    tail -n 5 "$RUN_DIR/node-$name.log" >&2
    exit 1
  fi
done
echo "soak: ${DURATION_S}s in $RUN_DIR; redis pid $REDIS_PID on $REDIS_PORT;" \
  "plain pid ${NODE_PID[plain]} on ${CHAT_PORT[plain]} (web ${WEB_PORT[plain]}, metrics ${METRICS_PORT[plain]});" \
  "tls pid ${NODE_PID[tls]} on ${CHAT_PORT[tls]} (web ${WEB_PORT[tls]}, metrics ${METRICS_PORT[tls]})" >&2

# 4. The sampler: one row per process every INTERVAL seconds, with the phase the driver
# writes (starting until it runs; after, once it has ended).
read -r -d '' SAMPLER <<'PYTHON' || true
import datetime, os, signal, socket, sys, time, urllib.request

out_path, phase_path, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
targets = [arg.split(":", 2) for arg in sys.argv[4:]]  # name:pid:url

def stop(*_):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)

def status_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return line.split()[1]
    except OSError:
        return ""
    return ""

def scrape(url):
    # Clients connected now and whether the cluster link is up, from /metrics.
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    clients, link = 0, ""
    for line in text.splitlines():
        if line.startswith("tcpchat_clients{"):
            clients += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("tcpchat_cluster_link_up"):
            link = str(int(float(line.rsplit(" ", 1)[1])))
    return str(clients), link

def redis(url, *commands):
    host, port = url.removeprefix("redis://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        request = b""
        for command in commands:
            words = command.split()
            request += f"*{len(words)}\r\n".encode()
            for word in words:
                request += f"${len(word)}\r\n{word}\r\n".encode()
        request += b"*1\r\n$4\r\nQUIT\r\n"
        conn.sendall(request)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")

def redis_sample(url):
    reply = redis(url, "INFO clients", "XLEN tcpchat:events", "HLEN tcpchat:nicks")
    clients = next((l.split(":")[1].strip() for l in reply.splitlines() if l.startswith("connected_clients:")), "")
    integers = [l[1:] for l in reply.splitlines() if l.startswith(":")]
    return clients, (integers + ["", ""])[:2]

columns = "time,elapsed_s,phase,process,pid,alive,answered,rss_kib,fds,threads,clients,link_up,stream_entries,nick_claims"
with open(out_path, "w", buffering=1) as out:
    out.write(columns + "\n")
    started = time.monotonic()
    tick = 0
    while True:
        try:
            with open(phase_path) as f:
                phase = f.read().strip() or "starting"
        except OSError:
            phase = "starting"
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elapsed = f"{time.monotonic() - started:.1f}"
        for name, pid, url in targets:
            alive = os.path.isdir(f"/proc/{pid}")
            rss, threads, fds = status_field(pid, "VmRSS"), status_field(pid, "Threads"), ""
            try:
                fds = str(len(os.listdir(f"/proc/{pid}/fd")))
            except OSError:
                pass
            answered, clients, link, stream, nicks = "0", "", "", "", ""
            if alive:
                try:
                    if url.startswith("redis://"):
                        clients, (stream, nicks) = redis_sample(url)
                    else:
                        clients, link = scrape(url)
                    answered = "1"
                except Exception as error:
                    print(f"soak sampler: {name} did not answer: {error}", file=sys.stderr)
            row = [now, elapsed, phase, name, pid, "1" if alive else "0", answered, rss, fds, threads,
                   clients, link, stream, nicks]
            out.write(",".join(row) + "\n")
        tick += 1
        time.sleep(max(0.0, started + tick * interval - time.monotonic()))
PYTHON

echo starting >"$RUN_DIR/phase"
python3 -c "$SAMPLER" "$RUN_DIR/samples.csv" "$RUN_DIR/phase" "$INTERVAL" \
  "plain:${NODE_PID[plain]}:http://127.0.0.1:${METRICS_PORT[plain]}/metrics" \
  "tls:${NODE_PID[tls]}:http://127.0.0.1:${METRICS_PORT[tls]}/metrics" \
  "redis:$REDIS_PID:redis://127.0.0.1:$REDIS_PORT" &
SAMPLER_PID=$!
# Two idle samples first, to compare with the end.
sleep $((INTERVAL * 2))

# 3. The clients.
"$BIN/soak-clients" --duration "$DURATION_S" --scale "$SCALE" --nc "$NC" \
  --phase-file "$RUN_DIR/phase" \
  --node "plain,127.0.0.1:${CHAT_PORT[plain]},127.0.0.1:${WEB_PORT[plain]},${NODE_PID[plain]}" \
  --node "tls,127.0.0.1:${CHAT_PORT[tls]},127.0.0.1:${WEB_PORT[tls]},${NODE_PID[tls]}" \
  >"$RUN_DIR/driver-summary.txt" 2>"$RUN_DIR/driver.log" &
DRIVER_PID=$!
tail -f --pid "$DRIVER_PID" "$RUN_DIR/driver.log" >&2 &
TAIL_PID=$!
DRIVER_STATUS=0
wait "$DRIVER_PID" || DRIVER_STATUS=$?
DRIVER_PID=""
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=""

# Everyone has left: idle threads end within 2 s; two more samples show what is left.
echo after >"$RUN_DIR/phase"
sleep $((INTERVAL * 2 + 2))
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""

problems=()
[ "$DRIVER_STATUS" = 0 ] || problems+=("the driver saw failures (exit status $DRIVER_STATUS)")
for name in plain tls; do
  pid=${NODE_PID[$name]}
  if ! kill -0 "$pid" 2>/dev/null; then
    problems+=("node $name died during the run")
    continue
  fi
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$status" = 0 ] || problems+=("node $name exited with status $status on SIGTERM")
done
NODE_PIDS=()
kill -TERM "$REDIS_PID" 2>/dev/null || true
wait "$REDIS_PID" 2>/dev/null || true
REDIS_PID=""
for name in plain tls; do
  panics=$(grep -c "panicked" "$RUN_DIR/node-$name.log" || true)
  [ "$panics" = 0 ] || problems+=("node $name: $panics 'panicked' in its log")
  errors=$(grep -c " ERROR " "$RUN_DIR/node-$name.log" || true)
  [ "$errors" = 0 ] || problems+=("node $name: $errors ERROR lines in its log")
  warnings=$(grep -c " WARN " "$RUN_DIR/node-$name.log" || true)
  [ "$warnings" = 0 ] || echo "soak: note: node $name logged $warnings warnings, e.g. $(grep -m1 " WARN " "$RUN_DIR/node-$name.log")" >&2
done

# 5. The report: a table per process and metric, the plot, and the verdicts.
read -r -d '' REPORT <<'PYTHON' || true
import csv, statistics, sys

samples_path, svg_path = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(samples_path)))
processes = list(dict.fromkeys(row["process"] for row in rows))
nodes = [p for p in processes if p != "redis"]
METRICS = [("rss_kib", "RSS KiB"), ("fds", "descriptors"), ("threads", "threads"), ("clients", "clients")]
problems = []

def series(process, metric, phases=None):
    return [(float(r["elapsed_s"]), float(r[metric])) for r in rows
            if r["process"] == process and r[metric] != "" and (phases is None or r["phase"] in phases)]

steady = [float(r["elapsed_s"]) for r in rows if r["phase"] == "steady"]
if len(steady) < 10:
    print("soak report: fewer than 10 samples of the steady run: no verdict")
    sys.exit(1)
start, end = min(steady), max(steady)
span = end - start
warm_up = min(60.0, span / 10)

def slope(points):
    # Least squares, per second.
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0

def median_between(points, low, high):
    values = [v for t, v in points if low <= t <= high]
    return statistics.median(values) if values else None

print(f"steady run: {span:.0f} s sampled every few seconds; warm-up {warm_up:.0f} s; "
      f"verdicts compare the medians of its second tenth and its last tenth")
header = f"{'process':<8} {'metric':<12} {'first':>9} {'last':>9} {'min':>9} {'max':>9} {'2nd 10th':>9} {'last 10th':>9} {'idle before/after':>18}  verdict"
print(header)
print("-" * len(header))
for process in processes:
    clients = series(process, "clients", {"steady"})
    client_growth = 0.0
    c2 = median_between(clients, start + span / 10, start + span / 5)
    c10 = median_between(clients, end - span / 10, end)
    if c2 is not None and c10 is not None:
        client_growth = c10 - c2
    for metric, label in METRICS:
        points = series(process, metric, {"steady"})
        after_warm_up = [(t, v) for t, v in points if t >= start + warm_up]
        if not after_warm_up:
            continue
        values = [v for _, v in after_warm_up]
        m2 = median_between(points, start + span / 10, start + span / 5)
        m10 = median_between(points, end - span / 10, end)
        verdict, idle = "", ""
        if m2 is not None and m10 is not None and metric != "clients":
            if metric == "rss_kib":
                # A few percent of a few MiB is the allocator settling; a leak passes both.
                growing = m10 > m2 * 1.05 and m10 - m2 > 1024
                change = f"{(m10 / m2 - 1) * 100:+.1f}%, {m10 - m2:+.0f} KiB; trend {slope(after_warm_up) * 3600:+.0f} KiB/h"
                verdict = f"growing ({change})" if growing else f"flat ({change})"
            else:
                # Each client is a descriptor and a thread: growth the clients explain is load.
                excess = (m10 - m2) - client_growth
                growing = excess > max(3.0, 0.05 * m2)
                verdict = f"growing (+{excess:.0f} beyond the clients)" if growing else f"flat ({excess:+.0f} beyond the clients)"
            if process == "redis":
                # Its stream keeps the last ~100,000 events: it fills for the first half hour.
                verdict += " (informational)"
            elif growing:
                problems.append(f"{process} {label} {verdict}")
        if process in nodes and metric in ("fds", "threads"):
            before = series(process, metric, {"starting"})
            after = series(process, metric, {"after"})
            if before and after:
                idle = f"{before[-1][1]:.0f}/{after[-1][1]:.0f}"
                if after[-1][1] > before[-1][1] + 2:
                    problems.append(f"{process} {label}: {after[-1][1]:.0f} once everyone left, {before[-1][1]:.0f} before anyone came")
                    idle += " (not back)"
        fmt = lambda v: "-" if v is None else f"{v:.0f}"
        print(f"{process:<8} {label:<12} {fmt(values[0]):>9} {fmt(values[-1]):>9} {fmt(min(values)):>9} {fmt(max(values)):>9} {fmt(m2):>9} {fmt(m10):>9} {idle:>18}  {verdict}")
for process in nodes:
    during = [r for r in rows if r["process"] == process and r["phase"] == "steady"]
    if any(r["alive"] == "0" for r in during):
        problems.append(f"{process} died during the run")
    unanswered = sum(1 for r in during if r["alive"] == "1" and r["answered"] == "0")
    if unanswered:
        problems.append(f"{process} did not answer {unanswered} metrics scrapes")
    if any(r["link_up"] == "0" for r in during):
        problems.append(f"{process} lost its cluster link")
redis_rows = [r for r in rows if r["process"] == "redis" and r["phase"] == "steady" and r["stream_entries"]]
if redis_rows:
    print(f"redis: stream entries {redis_rows[0]['stream_entries']} -> {redis_rows[-1]['stream_entries']}, "
          f"nick claims {redis_rows[0]['nick_claims']} -> {redis_rows[-1]['nick_claims']}")

# The plot: one panel per process (columns) and metric (rows), downsampled to at most
# 200 points each (the mean of each time bucket), hand-written SVG.
W, H, LEFT, TOP, GAP = 300, 110, 60, 40, 30
columns = len(processes)
width = LEFT + columns * (W + GAP)
height = TOP + len(METRICS) * (H + GAP) + 20
total = max(float(r["elapsed_s"]) for r in rows) or 1.0
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
       f'<rect width="{width}" height="{height}" fill="white"/>',
       f'<text x="{LEFT}" y="18" font-size="14">tcpchat soak: {span / 60:.0f} min steady; shaded: the steady run</text>']
for col, process in enumerate(processes):
    x0 = LEFT + col * (W + GAP)
    out.append(f'<text x="{x0 + W / 2}" y="{TOP - 6}" text-anchor="middle" font-weight="bold">{process}</text>')
    for row_index, (metric, label) in enumerate(METRICS):
        y0 = TOP + row_index * (H + GAP)
        points = series(process, metric)
        out.append(f'<rect x="{x0}" y="{y0}" width="{W}" height="{H}" fill="none" stroke="#999"/>')
        sx = lambda t: x0 + W * t / total
        out.append(f'<rect x="{sx(start):.1f}" y="{y0}" width="{sx(end) - sx(start):.1f}" height="{H}" fill="#eef4ff"/>')
        out.append(f'<text x="{x0 + W - 3}" y="{y0 + 11}" text-anchor="end">{label}</text>')
        if not points:
            continue
        buckets = {}
        for t, v in points:
            buckets.setdefault(int(t / total * 199.999), []).append((t, v))
        reduced = [(statistics.fmean(t for t, _ in b), statistics.fmean(v for _, v in b)) for _, b in sorted(buckets.items())]
        low, high = min(v for _, v in reduced), max(v for _, v in reduced)
        if high == low:
            high = low + 1
        low_axis = low - (high - low) * 0.05
        high_axis = high + (high - low) * 0.05
        sy = lambda v: y0 + H - H * (v - low_axis) / (high_axis - low_axis)
        path = " ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in reduced)
        out.append(f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.2" points="{path}"/>')
        out.append(f'<text x="{x0 + 3}" y="{y0 + 11}" fill="#555">{high:.0f}</text>')
        out.append(f'<text x="{x0 + 3}" y="{y0 + H - 3}" fill="#555">{low:.0f}</text>')
    out.append(f'<text x="{x0 + W}" y="{TOP + len(METRICS) * (H + GAP) - GAP + 14}" text-anchor="end" fill="#555">{total / 60:.1f} min</text>')
out.append("</svg>")
with open(svg_path, "w") as svg:
    svg.write("\n".join(out) + "\n")
if problems:
    print("growing or not answering:")
    for problem in problems:
        print(f"  {problem}")
    sys.exit(1)
PYTHON

echo
cat "$RUN_DIR/driver-summary.txt"
echo
report_status=0
python3 -c "$REPORT" "$RUN_DIR/samples.csv" "$RUN_DIR/soak.svg" | tee "$RUN_DIR/report.txt" || report_status=$?
[ "$report_status" = 0 ] || problems+=("the report found growth or a node not answering (see above)")

echo
echo "samples: $RUN_DIR/samples.csv; plot: $RUN_DIR/soak.svg; logs: $RUN_DIR/*.log"
if [ ${#problems[@]} -gt 0 ]; then
  echo "soak: FAIL"
  for problem in "${problems[@]}"; do echo "  $problem"; done
  exit 1
fi
echo "soak: PASS"
