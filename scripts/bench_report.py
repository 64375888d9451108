#!/usr/bin/env python3
"""Turns the benchmark's raw JSON lines into a markdown table (medians over runs, with
ratios tcpchat/Node and tcpchat/ncat), bench/results/latest.json and an SVG plot of the
stall scenario. Usage: bench_report.py RAW.jsonl RESULTS_DIR FLAGS [--quick]"""
import json
import os
import platform
import statistics
import sys
import time

raw_path, out_dir, flags = sys.argv[1], sys.argv[2], sys.argv[3]
quick = "--quick" in sys.argv[4:]
rows = [json.loads(line) for line in open(raw_path) if line.strip()]
servers = [s for s in ("tcpchat", "node", "ncat") if any(r["server"] == s for r in rows)]

# (scenario, metric, label, better): better is "high", "low" or "" (no ratio).
METRICS = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s (50 clients, 5 senders)", "high"),
    ("fanout", "delivery_ratio", "fanout: delivery ratio", "high"),
    ("fanout", "min_client_received", "fanout: least any client received", "high"),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery", "low"),
    ("fanout", "bench_cpu_s", "fanout: load generator CPU s", ""),
    ("fanout-large", "deliveries_per_s", "fanout-large: deliveries/s (500 clients, 2 senders × 20 lines/s)", "high"),
    ("fanout-large", "delivery_ratio", "fanout-large: delivery ratio", "high"),
    ("fanout-large", "server_cpu_s", "fanout-large: server CPU s", "low"),
    ("latency", "p50_ms", "latency: p50 ms (100 clients, 100 lines/s)", "low"),
    ("latency", "p99_ms", "latency: p99 ms", "low"),
    ("latency", "max_ms", "latency: max ms", "low"),
    ("capacity", "connected", "capacity: idle clients connected (10,000)", "high"),
    ("capacity", "received", "capacity: clients that got the broadcast", "high"),
    ("capacity", "last_receipt_ms", "capacity: last receipt of the broadcast, ms", "low"),
    ("capacity", "server_rss_kib", "capacity: server RSS KiB", "low"),
    ("capacity", "server_kib_per_client", "capacity: server KiB per client", "low"),
    ("capacity", "server_threads", "capacity: server threads", ""),
    ("churn", "connections_per_s", "churn: connections/s (8 loops)", "high"),
    ("churn", "errors", "churn: errors", ""),
    ("churn", "fds_before", "churn: server fds before", ""),
    ("churn", "fds_after", "churn: server fds after", ""),
    ("churn", "threads_before", "churn: server threads before", ""),
    ("churn", "threads_after", "churn: server threads after", ""),
    ("churn", "rss_before_kib", "churn: server RSS KiB before", ""),
    ("churn", "rss_after_kib", "churn: server RSS KiB after", ""),
    ("stall", "p99_before_ms", "stall: p99 ms of the others, before the stall", "low"),
    ("stall", "p99_during_ms", "stall: p99 ms of the others, during the stall", "low"),
    ("stall", "frozen_seconds", "stall: seconds with no delivery at all", "low"),
    ("stall", "stalled_disconnected_after_s", "stall: stalled client disconnected after s", ""),
    ("stall", "rss_start_kib", "stall: server RSS KiB at start", ""),
    ("stall", "rss_max_kib", "stall: server RSS KiB at most", "low"),
]


def values(server, scenario, metric):
    found = []
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario:
            v = r["result"].get(metric)
            if isinstance(v, (int, float)):
                found.append(v)
    return found


def median(server, scenario, metric):
    v = values(server, scenario, metric)
    return statistics.median(v) if v else None


def error_of(server, scenario):
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario:
            if "error" in r["result"]:
                return r["result"]["error"]
            if r["result"].get("server_died"):
                return "server died"
    return None


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


header = ["metric"] + servers + [f"tcpchat / {s}" for s in servers if s != "tcpchat"]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
summary = {}
for scenario, metric, label, better in METRICS:
    cells = [label]
    meds = {}
    for s in servers:
        err = error_of(s, scenario)
        m = median(s, scenario, metric)
        meds[s] = m
        cells.append(fmt(m) if m is not None else (err or "–")[:40])
    for s in servers:
        if s == "tcpchat":
            continue
        a, b = meds.get("tcpchat"), meds.get(s)
        cells.append(f"{a / b:.2f}×" if better and a is not None and b not in (None, 0) else "")
    summary.setdefault(scenario, {})[metric] = meds
    lines.append("| " + " | ".join(cells) + " |")
table = "\n".join(lines)

machine = f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"
note = (f"{'Quick smoke run' if quick else 'Medians of 3 runs (fanout, fanout-large, latency); one run of capacity, churn, stall'}"
        f" on {machine}, {time.strftime('%Y-%m-%d')}. tcpchat ran as `{flags}`.")
if quick:
    note += " Quick mode: shorter runs, 100 clients in fanout-large, 200 in capacity; not for comparison."
print(note)
print()
print(table)

os.makedirs(out_dir, exist_ok=True)
name = "quick" if quick else "latest"
with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump({"machine": machine, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "flags": flags,
               "quick": quick, "medians": summary, "runs": rows}, f, indent=1)
with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(note + "\n\n" + table + "\n")

# The stall scenario: deliveries per second to the other clients, one line per server.
series = {}
for r in rows:
    if r["scenario"] == "stall" and "deliveries_per_second" in r["result"]:
        series[r["server"]] = r["result"]["deliveries_per_second"]
if series:
    width, height, pad = 640, 320, 50
    longest = max(len(v) for v in series.values())
    top = max(max(v) for v in series.values() if v) or 1
    colours = {"tcpchat": "#1f77b4", "node": "#2ca02c", "ncat": "#d62728"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle">stall: deliveries per second to the other 20 clients (a non-reading client joins at 5 s)</text>',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - 10}" y2="{height - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="30" x2="{pad}" y2="{height - pad}" stroke="black"/>',
           f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">seconds</text>',
           f'<text x="{pad - 5}" y="34" text-anchor="end">{top:,.0f}</text>',
           f'<text x="{pad - 5}" y="{height - pad}" text-anchor="end">0</text>']
    for i, (server, points) in enumerate(series.items()):
        xs = [pad + (width - pad - 10) * (k + 1) / max(longest, 1) for k in range(len(points))]
        ys = [height - pad - (height - pad - 30) * p / top for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        colour = colours.get(server, "black")
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        svg.append(f'<text x="{width - 120}" y="{50 + 16 * i}" fill="{colour}">{server}</text>')
    svg.append("</svg>")
    with open(os.path.join(out_dir, f"{name}-stall.svg"), "w") as f:
        f.write("\n".join(svg) + "\n")
