#!/usr/bin/env python3
"""Turns the benchmark's raw JSON lines into markdown tables, bench/results/latest.json and
an SVG plot of the stall scenario. Usage: bench_report.py RAW.jsonl RESULTS_DIR FLAGS [--quick]

Three tables:
1. every figure, the median over the rounds per server, with the ratios of the medians
   tcpchat/Node and tcpchat/ncat;
2. each scenario's main figures, tcpchat against the best other server of the same round
   (the servers of a round ran back to back), round by round, and the median of those ratios;
3. the big room's targets: p99 with churn / p99 without, and the churn's
   connections/s beside the big room / the churn scenario's against an empty server;
4. the cluster: fanout and latency against three tcpchat nodes and one Redis
   (raw rows `cluster-fanout` and `cluster-latency`, server `cluster`) and against one
   tcpchat node in the same round (server `one-node`): the medians of both, then the
   targets round by round (three nodes deliver at least as many lines/s as one, every
   line delivered, cross-node p99 at most 1 ms above one node's p99);
5. the transports (raw rows with a `transport`: ws, tls, wss): for each, the medians of
   tcpchat and its peers (Node with the ws package; the chapter's server over Node's tls
   and `ncat --ssl --chat`; Node with ws over https), then tcpchat against the best peer
   of the same round, round by round, and the median of those ratios.

A round whose server died or whose run failed counts for nothing: its cells say so."""
import json
import os
import platform
import statistics
import sys
import time

raw_path, out_dir, flags = sys.argv[1], sys.argv[2], sys.argv[3]
quick = "--quick" in sys.argv[4:]
all_rows = [json.loads(line) for line in open(raw_path) if line.strip()]
# The transports' runs have tables of their own (5.); everything before them is plain TCP.
rows = [r for r in all_rows if "transport" not in r]
transport_rows = [r for r in all_rows if "transport" in r]
servers = [s for s in ("tcpchat", "node", "ncat") if any(r["server"] == s for r in rows)]
peers = [s for s in servers if s != "tcpchat"]
rounds = sorted({r["run"] for r in rows})

# (scenario, metric, label, better): better is "high", "low" or "" (no ratio).
METRICS = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s (50 clients, 5 senders)", "high"),
    ("fanout", "delivery_ratio", "fanout: delivery ratio", "high"),
    ("fanout", "min_client_received", "fanout: least any client received", "high"),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery", "low"),
    ("fanout", "server_switches_per_1000_deliveries", "fanout: server context switches per 1,000 deliveries", "low"),
    ("fanout", "bench_cpu_s", "fanout: load generator CPU s", ""),
    ("fanout-large", "deliveries_per_s", "fanout-large: deliveries/s (500 clients, 2 senders × 20 lines/s)", "high"),
    ("fanout-large", "delivery_ratio", "fanout-large: delivery ratio", "high"),
    ("fanout-large", "server_cpu_s", "fanout-large: server CPU s", "low"),
    ("latency", "p50_ms", "latency: p50 ms (100 clients, 100 lines/s)", "low"),
    ("latency", "p99_ms", "latency: p99 ms", "low"),
    ("latency", "max_ms", "latency: max ms", "low"),
    ("latency", "server_switches_per_line", "latency: server context switches per line (all threads)", "low"),
    ("latency", "server_wait_us_per_line", "latency: server µs per line ready but waiting for a CPU (all threads)", "low"),
    ("capacity", "connected", "capacity: idle clients connected (10,000)", "high"),
    ("capacity", "received", "capacity: clients that got the broadcast", "high"),
    ("capacity", "last_receipt_ms", "capacity: last receipt of the broadcast, ms", "low"),
    ("capacity", "server_rss_kib", "capacity: server RSS KiB", "low"),
    ("capacity", "server_kib_per_client", "capacity: server KiB per client", "low"),
    ("capacity", "server_threads", "capacity: server threads", ""),
    ("churn", "connections_per_s", "churn: connections/s (8 loops)", "high"),
    ("churn", "errors", "churn: errors", ""),
    ("churn", "server_switches_per_connection", "churn: server context switches per connection (all threads)", "low"),
    ("churn", "server_wait_us_per_connection", "churn: server µs per connection ready but waiting for a CPU (all threads)", "low"),
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
    ("big-room", "connected", "big-room: clients in the room (3,000)", ""),
    ("big-room", "p50_ms", "big-room: p50 ms (10 senders × 10 lines/s, no churn)", "low"),
    ("big-room", "p99_ms", "big-room: p99 ms", "low"),
    ("big-room", "max_ms", "big-room: max ms", "low"),
    ("big-room", "delivery_ratio", "big-room: delivery ratio", "high"),
    ("big-room", "server_cpu_s", "big-room: server CPU s", "low"),
    ("big-room-churn", "connected", "big-room-churn: clients in the room (3,000)", ""),
    ("big-room-churn", "p50_ms", "big-room-churn: p50 ms (the same, 8 churn loops beside)", "low"),
    ("big-room-churn", "p99_ms", "big-room-churn: p99 ms", "low"),
    ("big-room-churn", "max_ms", "big-room-churn: max ms", "low"),
    ("big-room-churn", "delivery_ratio", "big-room-churn: delivery ratio", "high"),
    ("big-room-churn", "members_lost", "big-room-churn: room members disconnected", ""),
    ("big-room-churn", "churn_connections_per_s", "big-room-churn: churn connections/s (8 loops)", "high"),
    ("big-room-churn", "churn_errors", "big-room-churn: churn errors", ""),
    ("big-room-churn", "churn_first_line_p99_ms", "big-room-churn: churn's wait for the first line, p99 ms", "low"),
    ("big-room-churn", "server_cpu_s", "big-room-churn: server CPU s", ""),
]

# Each scenario's main figures, compared round by round with the best other server:
# (scenario, metric, label, what the figure is called in "reads as", better, fair).
# fair(result) says whether a run can be compared at all: a server that held only part
# of the clients asked for (ncat stops near 600) has less to carry, and a memory figure
# divided by the clients asked for would flatter it.
def holds_every_client(result):
    return result.get("connected") is not None and result.get("connected") == result.get("clients")


def always(result):
    return True


MAIN = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s", "deliveries/s", "high", always),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery", "ns per delivery", "low", always),
    ("fanout-large", "delivery_ratio", "fanout-large: delivery ratio", "delivery ratio", "high", always),
    ("fanout-large", "server_cpu_s", "fanout-large: server CPU s", "CPU s", "low", always),
    ("latency", "p99_ms", "latency: p99 ms", "p99", "low", always),
    ("capacity", "server_kib_per_client", "capacity: server KiB per idle client", "KiB per client", "low", holds_every_client),
    ("capacity", "last_receipt_ms", "capacity: last receipt of the broadcast, ms", "last receipt", "low", holds_every_client),
    ("churn", "connections_per_s", "churn: connections/s", "connections/s", "high", always),
    ("stall", "p99_during_ms", "stall: p99 ms of the others, during the stall", "p99", "low", always),
    ("stall", "rss_max_kib", "stall: server RSS KiB at most", "RSS", "low", always),
    ("big-room", "p99_ms", "big-room: p99 ms", "p99", "low", holds_every_client),
    ("big-room-churn", "p99_ms", "big-room-churn: p99 ms", "p99", "low", holds_every_client),
    ("big-room-churn", "churn_connections_per_s", "big-room-churn: churn connections/s", "connections/s", "high", holds_every_client),
]


def run_of(server, scenario, rnd):
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario and r["run"] == rnd:
            return r["result"]
    return None


def failure(result):
    """Why a run counts for nothing, or None when it counts."""
    if result is None:
        return "not run"
    if "error" in result:
        return result["error"]
    if result.get("server_died"):
        return "server died"
    return None


def number(result, metric):
    v = None if failure(result) else result.get(metric)
    return v if isinstance(v, (int, float)) else None


def values(server, scenario, metric):
    found = (number(run_of(server, scenario, rnd), metric) for rnd in rounds)
    return [v for v in found if v is not None]


def median(server, scenario, metric):
    v = values(server, scenario, metric)
    return statistics.median(v) if v else None


def error_of(server, scenario):
    for rnd in rounds:
        why = failure(run_of(server, scenario, rnd))
        if why:
            return why
    return None


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if float(v).is_integer():
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


# 1. Medians per server.
header = ["metric"] + servers + [f"tcpchat / {s}" for s in peers]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
summary = {}
for scenario, metric, label, better in METRICS:
    cells = [label]
    meds = {}
    for s in servers:
        m = median(s, scenario, metric)
        meds[s] = m
        cells.append(fmt(m) if m is not None else (error_of(s, scenario) or "–")[:40])
    for s in peers:
        r = ratio(meds.get("tcpchat"), meds.get(s))
        cells.append(f"{r:.2f}×" if better and r is not None else "")
    summary.setdefault(scenario, {})[metric] = meds
    lines.append("| " + " | ".join(cells) + " |")
table = "\n".join(lines)


# 2. tcpchat against the best other server, round by round.
def best_peer(scenario, metric, better, fair, rnd):
    """(server, value) of the best other server in round `rnd`, or (None, why not)."""
    candidates = []
    for s in peers:
        result = run_of(s, scenario, rnd)
        v = number(result, metric)
        if v is not None and fair(result):
            candidates.append((v, s))
    if not candidates:
        return None, "no peer ran it in full"
    v, s = (max if better == "high" else min)(candidates)
    return s, v


per_round = []
header2 = ["main figure", "reads as"] + [f"round {rnd}" for rnd in rounds] + ["median"]
lines2 = ["| " + " | ".join(header2) + " |", "|" + "---|" * len(header2)]
for scenario, metric, label, short, better, fair in MAIN:
    way = "higher" if better == "high" else "lower"
    reads = f"tcpchat {short} / best peer {short}, {way} is better"
    entry = {"scenario": scenario, "metric": metric, "label": label, "reads": reads, "rounds": []}
    cells = [label, reads]
    ratios = []
    for rnd in rounds:
        mine = run_of("tcpchat", scenario, rnd)
        why = failure(mine)
        if why is None and not fair(mine):
            why = f"tcpchat held {fmt(mine.get('connected'))} of {fmt(mine.get('clients'))}"
        peer, best = best_peer(scenario, metric, better, fair, rnd)
        value = number(mine, metric)
        if why is None and peer is None:
            why = best
        r = ratio(value, best) if why is None else None
        if why is None and r is None:
            why = "no ratio"  # a figure missing, or a best peer at 0
        if r is not None:
            ratios.append(r)
            cells.append(f"{r:.2f}× ({peer})")
        else:
            cells.append(why[:40])
        entry["rounds"].append({"round": rnd, "ratio": r, "best_peer": peer, "tcpchat": value,
                                "best_peer_value": best if peer else None, "note": why})
    entry["median"] = statistics.median(ratios) if ratios else None
    cells.append(f"**{entry['median']:.2f}×**" if ratios else "–")
    per_round.append(entry)
    lines2.append("| " + " | ".join(cells) + " |")
table2 = "\n".join(lines2)

# 2b. The host's steal during each run: CPU time the virtual machine's host took away,
# which shows as a tail in whichever server was running then.
SCENARIOS = list(dict.fromkeys(r["scenario"] for r in rows if r["server"] in servers))
header6 = ["host steal ms during the run"] + [f"round {rnd}" for rnd in rounds]
lines6 = ["| " + " | ".join(header6) + " |", "|" + "---|" * len(header6)]
for scenario in SCENARIOS:
    cells = [scenario]
    for rnd in rounds:
        parts = []
        for server in servers:
            result = run_of(server, scenario, rnd)
            steal = result.get("host_steal_ms") if result else None
            parts.append(f"{server} {fmt(steal)}" if isinstance(steal, (int, float)) else f"{server} –")
        attempts = max((r.get("attempts", 1) for r in rows
                        if r["scenario"] == scenario and r["run"] == rnd), default=1)
        kept = f" (least disturbed of {attempts} tries)" if attempts > 1 else ""
        cells.append(", ".join(parts) + kept)
    lines6.append("| " + " | ".join(cells) + " |")
table6 = "\n".join(lines6)


# 3. The big room's targets, for every server: p99 with churn / p99 without (at most 2),
# and churn connections/s beside the big room / against an empty server (at least 0.5).
def pair_ratios(server, top, bottom):
    """Round by round top/bottom, each a (scenario, metric); with the two inputs."""
    out = []
    for rnd in rounds:
        a_run, b_run = run_of(server, top[0], rnd), run_of(server, bottom[0], rnd)
        a, b = number(a_run, top[1]), number(b_run, bottom[1])
        why = failure(a_run) or failure(b_run)
        out.append({"round": rnd, "ratio": ratio(a, b) if why is None else None,
                    "numerator": a, "denominator": b, "note": why})
    return out


TARGETS = [
    ("p99_churn_over_no_churn", "p99 with churn / p99 without churn", "at most 2",
     ("big-room-churn", "p99_ms"), ("big-room", "p99_ms"), lambda r: r <= 2),
    ("churn_rate_over_empty_server", "churn connections/s beside the big room / against an empty server (`churn`)",
     "at least 0.5", ("big-room-churn", "churn_connections_per_s"), ("churn", "connections_per_s"), lambda r: r >= 0.5),
]
targets = {}
header3 = ["big room"] + servers
lines3 = ["| " + " | ".join(header3) + " |", "|" + "---|" * len(header3)]


def round_list(items, key):
    return ", ".join(fmt(i[key]) if i[key] is not None else (i.get("note") or "–")[:24] for i in items)


lines3.append("| " + " | ".join(["clients in the room, big-room / big-room-churn (median)"] + [
    f"{fmt(median(s, 'big-room', 'connected'))} / {fmt(median(s, 'big-room-churn', 'connected'))}" for s in servers]) + " |")
for key, what, goal, top, bottom, met in TARGETS:
    per_server = {s: pair_ratios(s, top, bottom) for s in servers}
    lines3.append("| " + " | ".join([f"{what}: inputs per round"] + [
        "; ".join(f"{fmt(i['numerator'])} / {fmt(i['denominator'])}" if i["note"] is None else i["note"][:24]
                  for i in per_server[s]) for s in servers]) + " |")
    cells = [f"{what}: ratio per round → median (target: {goal})"]
    for s in servers:
        got = [i["ratio"] for i in per_server[s] if i["ratio"] is not None]
        med = statistics.median(got) if got else None
        verdict = "" if med is None else (" met" if met(med) else " missed")
        cells.append(f"{round_list(per_server[s], 'ratio')} → **{fmt(med)}**{verdict}")
        targets.setdefault(s, {})[key] = {"reads": what, "target": goal, "rounds": per_server[s],
                                          "median": med, "met": None if med is None else met(med)}
    lines3.append("| " + " | ".join(cells) + " |")
table3 = "\n".join(lines3)


# 4. The cluster against one node.
SETUPS = ("one-node", "cluster")
has_cluster = any(r["server"] in SETUPS for r in rows)
# (scenario, metric, label, better) as in METRICS; "lost" is computed from the counts.
CLUSTER_METRICS = [
    ("cluster-fanout", "deliveries_per_s", "fanout: deliveries/s (50 clients, 5 senders)", "high"),
    ("cluster-fanout", "delivery_ratio", "fanout: delivery ratio", "high"),
    ("cluster-fanout", "lost", "fanout: deliveries lost (expected − counted)", ""),
    ("cluster-fanout", "p50_ms", "fanout: p50 ms (at full speed: mostly waiting behind the windows)", "low"),
    ("cluster-fanout", "p99_ms", "fanout: p99 ms", "low"),
    ("cluster-fanout", "cross_node_p99_ms", "fanout: p99 ms of the cross-node deliveries", "low"),
    ("cluster-fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery (cluster: 3 nodes + Redis)", "low"),
    ("cluster-fanout", "bench_cpu_s", "fanout: load generator CPU s", ""),
    ("cluster-latency", "deliveries_per_s", "latency: deliveries/s (100 clients, 1 sender × 100 lines/s)", "high"),
    ("cluster-latency", "delivery_ratio", "latency: delivery ratio", "high"),
    ("cluster-latency", "lost", "latency: deliveries lost (expected − counted)", ""),
    ("cluster-latency", "p50_ms", "latency: p50 ms", "low"),
    ("cluster-latency", "p99_ms", "latency: p99 ms", "low"),
    ("cluster-latency", "cross_node_p50_ms", "latency: p50 ms of the cross-node deliveries", "low"),
    ("cluster-latency", "cross_node_p99_ms", "latency: p99 ms of the cross-node deliveries", "low"),
    ("cluster-latency", "max_ms", "latency: max ms", "low"),
    ("cluster-latency", "server_cpu_s", "latency: server CPU s (cluster: 3 nodes + Redis)", "low"),
]


def cluster_number(setup, scenario, rnd, metric):
    """A figure of one cluster comparison run; `lost` and an exact delivery ratio come
    from the counts (the ratio in the JSON has 6 decimals: a few lines lost among
    millions would read as 1)."""
    result = run_of(setup, scenario, rnd)
    delivered, expected = number(result, "deliveries"), number(result, "expected_deliveries")
    if metric == "lost":
        return expected - delivered if None not in (delivered, expected) else None
    if metric == "delivery_ratio" and None not in (delivered, expected) and expected > 0:
        return delivered / expected
    return number(result, metric)


def cluster_median(setup, scenario, metric):
    found = [cluster_number(setup, scenario, rnd, metric) for rnd in rounds]
    found = [v for v in found if v is not None]
    return statistics.median(found) if found else None


def cluster_why(setup, scenario, rnd):
    return failure(run_of(setup, scenario, rnd))


def fmt_ratio(v):
    """A delivery ratio: short when whole, with enough digits to show any loss."""
    if v is None:
        return "–"
    return "1" if v == 1 else f"{v:.6f}"


def fmt_diff(v):
    return "–" if v is None else f"{v:+.2f}"


cluster = {}
table4 = table5 = ""
if has_cluster:
    lines4 = ["| cluster (3 nodes + Redis) vs one node: medians | one node | cluster | cluster / one node |",
              "|---|---|---|---|"]
    medians4 = {}
    for scenario, metric, label, better in CLUSTER_METRICS:
        meds = {s: cluster_median(s, scenario, metric) for s in SETUPS}
        medians4.setdefault(scenario, {})[metric] = meds
        cells = [label]
        for s in SETUPS:
            m = meds[s]
            if m is None:
                why = next((w for w in (cluster_why(s, scenario, rnd) for rnd in rounds) if w), None)
                cells.append((why or "–")[:40])
            else:
                cells.append(fmt_ratio(m) if metric == "delivery_ratio" else fmt(m))
        r = ratio(meds["cluster"], meds["one-node"])
        cells.append(f"{r:.2f}×" if better and r is not None else "")
        lines4.append("| " + " | ".join(cells) + " |")
    # The CPU of each of the cluster's processes, from the last round that has it.
    for scenario in ("cluster-fanout", "cluster-latency"):
        by_process = next((run_of("cluster", scenario, rnd).get("server_cpu_ms_by_process")
                           for rnd in reversed(rounds)
                           if run_of("cluster", scenario, rnd) and not cluster_why("cluster", scenario, rnd)
                           and run_of("cluster", scenario, rnd).get("server_cpu_ms_by_process")), None)
        if by_process:
            names = [f"node{i + 1}" for i in range(len(by_process) - 1)] + ["Redis"]
            spent = ", ".join(f"{n} {fmt(ms)}" for n, ms in zip(names, by_process))
            lines4.append(f"| {scenario.removeprefix('cluster-')}: CPU ms of each process (last round) |  | {spent} |  |")
    table4 = "\n".join(lines4)

    def compared(scenario, metric, how):
        """Round by round, cluster against one node: how is "ratio" or "difference"."""
        def value_of(rnd):
            why = cluster_why("cluster", scenario, rnd) or cluster_why("one-node", scenario, rnd)
            c = cluster_number("cluster", scenario, rnd, metric)
            o = cluster_number("one-node", scenario, rnd, metric if how != "cross-difference" else "p99_ms")
            if why is None and (c is None or o is None):
                why = "a figure is missing"
            if why:
                return {"round": rnd, "value": None, "cluster": c, "one_node": o, "note": why}
            v = ratio(c, o) if how == "ratio" else c - o
            return {"round": rnd, "value": v, "cluster": c, "one_node": o, "note": None}
        return [value_of(rnd) for rnd in rounds]

    def cluster_only(scenario, metric):
        def value_of(rnd):
            why = cluster_why("cluster", scenario, rnd)
            c = cluster_number("cluster", scenario, rnd, metric)
            lost = cluster_number("cluster", scenario, rnd, "lost")
            if why is None and c is None:
                why = "a figure is missing"
            return {"round": rnd, "value": None if why else c, "cluster": c, "lost": lost, "note": why}
        return [value_of(rnd) for rnd in rounds]

    def ratio_cell(i):
        return f"{i['value']:.2f}× ({fmt(i['cluster'])} / {fmt(i['one_node'])})"

    def diff_cell(i):
        return f"{fmt_diff(i['value'])} ({fmt(i['cluster'])} − {fmt(i['one_node'])})"

    def delivered_cell(i):
        lost = f", {fmt(i['lost'])} lost" if i.get("lost") else ""
        return f"{fmt_ratio(i['value'])}{lost}"

    # (key, label, target, per-round items, cell, median cell, met): met is None for a
    # figure shown beside the targets without one of its own.
    CLUSTER_TARGETS = [
        ("fanout_deliveries_per_s_ratio", "fanout: deliveries/s, cluster / one node", "at least 1×",
         compared("cluster-fanout", "deliveries_per_s", "ratio"), ratio_cell, lambda m: f"{m:.2f}×",
         lambda v: v >= 1),
        ("fanout_delivery_ratio", "fanout: delivery ratio of the cluster", "1",
         cluster_only("cluster-fanout", "delivery_ratio"), delivered_cell, fmt_ratio, lambda v: v >= 1),
        ("latency_delivery_ratio", "latency: delivery ratio of the cluster", "1",
         cluster_only("cluster-latency", "delivery_ratio"), delivered_cell, fmt_ratio, lambda v: v >= 1),
        ("latency_cross_node_p99_over_one_node_ms",
         "latency: cross-node p99 of the cluster − p99 of one node, ms", "at most +1 ms",
         compared("cluster-latency", "cross_node_p99_ms", "cross-difference"), diff_cell, fmt_diff,
         lambda v: v <= 1),
        ("latency_p99_ratio", "latency: p99, cluster / one node (all deliveries)", "",
         compared("cluster-latency", "p99_ms", "ratio"), ratio_cell, lambda m: f"{m:.2f}×", None),
        ("latency_p99_difference_ms", "latency: p99, cluster − one node, ms (all deliveries)", "",
         compared("cluster-latency", "p99_ms", "difference"), diff_cell, fmt_diff, None),
        ("latency_p50_ratio", "latency: p50, cluster / one node", "",
         compared("cluster-latency", "p50_ms", "ratio"), ratio_cell, lambda m: f"{m:.2f}×", None),
        ("fanout_p99_ratio", "fanout: p99 at full speed, cluster / one node", "",
         compared("cluster-fanout", "p99_ms", "ratio"), ratio_cell, lambda m: f"{m:.2f}×", None),
        ("fanout_p99_difference_ms", "fanout: p99 at full speed, cluster − one node, ms", "",
         compared("cluster-fanout", "p99_ms", "difference"), diff_cell, fmt_diff, None),
    ]
    header5 = ["cluster vs one node, round by round"] + [f"round {rnd}" for rnd in rounds] + ["median"]
    lines5 = ["| " + " | ".join(header5) + " |", "|" + "---|" * len(header5)]
    targets5 = {}
    for key, label, goal, items, cell, median_cell, met in CLUSTER_TARGETS:
        cells = [f"{label} (target: {goal})" if goal else label]
        for i in items:
            cells.append(cell(i) if i["value"] is not None else (i["note"] or "–")[:40])
        got = [i["value"] for i in items if i["value"] is not None]
        med = statistics.median(got) if got else None
        verdict = ""
        if met is not None and med is not None:
            rounds_met = sum(1 for v in got if met(v))
            verdict = f" {'met' if met(med) else 'missed'} ({rounds_met} of {len(items)} rounds met)"
        cells.append(f"**{median_cell(med)}**{verdict}" if med is not None else "–")
        lines5.append("| " + " | ".join(cells) + " |")
        targets5[key] = {"reads": label, "target": goal or None, "rounds": items, "median": med,
                         "met": None if met is None or med is None else met(med)}
    table5 = "\n".join(lines5)
    cluster = {"medians": medians4, "round_by_round": targets5}


# 5. The transports: each against its own peers, as the plain tables do it.
TRANSPORTS = [("ws", "WebSocket (ws://)"), ("tls", "TLS"), ("wss", "WebSocket over TLS (wss://)")]
SERVER_NAMES = {"tcpchat": "tcpchat", "node-ws": "node + ws", "node-tls": "node tls",
                "ncat-ssl": "ncat --ssl", "node-wss": "node + ws, https"}
# (scenario, metric, label, better) as in METRICS; handshake figures for TLS and wss only.
TRANSPORT_METRICS = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s (50 clients, 5 senders)", "high"),
    ("fanout", "delivery_ratio", "fanout: delivery ratio", "high"),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery", "low"),
    ("fanout", "bench_cpu_s", "fanout: load generator CPU s", ""),
    ("latency", "p50_ms", "latency: p50 ms (100 clients, 100 lines/s)", "low"),
    ("latency", "p99_ms", "latency: p99 ms", "low"),
    ("latency", "max_ms", "latency: max ms", "low"),
    ("latency", "delivery_ratio", "latency: delivery ratio", "high"),
    ("latency", "server_cpu_s", "latency: server CPU s", "low"),
    ("capacity", "connected", "capacity: idle clients connected (2,000)", "high"),
    ("capacity", "received", "capacity: clients that got the broadcast", "high"),
    ("capacity", "server_kib_per_client_growth", "capacity: server KiB per idle client (RSS growth / clients)", "low"),
    ("capacity", "server_rss_before_kib", "capacity: server RSS KiB before the first client", ""),
    ("capacity", "server_rss_kib", "capacity: server RSS KiB with them all", "low"),
    ("capacity", "connect_s", "capacity: seconds to connect them all (handshakes included)", "low"),
    ("capacity", "resumed_handshakes", "capacity: TLS handshakes resumed", ""),
    ("capacity", "bench_cpu_s", "capacity: load generator CPU s", ""),
    ("churn", "connections_per_s", "churn: connections/s (8 loops)", "high"),
    ("churn", "errors", "churn: errors", ""),
    ("churn", "server_cpu_us_per_connection", "churn: server CPU µs per connection", "low"),
    ("churn", "full_handshakes", "churn: full TLS handshakes", ""),
    ("churn", "resumed_handshakes", "churn: TLS handshakes resumed (session tickets)", ""),
    ("churn", "fds_before", "churn: server fds before", ""),
    ("churn", "fds_after", "churn: server fds after", ""),
    ("churn", "bench_cpu_s", "churn: load generator CPU s", ""),
]
TRANSPORT_MAIN = [
    ("fanout", "deliveries_per_s", "fanout: deliveries/s", "deliveries/s", "high", always),
    ("fanout", "server_ns_per_delivery", "fanout: server CPU ns per delivery", "ns per delivery", "low", always),
    ("latency", "p99_ms", "latency: p99 ms", "p99", "low", always),
    ("capacity", "server_kib_per_client_growth", "capacity: server KiB per idle client", "KiB per client", "low",
     holds_every_client),
    ("churn", "connections_per_s", "churn: connections/s", "connections/s", "high", always),
    ("churn", "server_cpu_us_per_connection", "churn: server CPU µs per connection", "µs per connection", "low",
     always),
]


def transport_run_of(transport, server, scenario, rnd):
    for r in transport_rows:
        if (r["transport"], r["server"], r["scenario"], r["run"]) == (transport, server, scenario, rnd):
            return r["result"]
    return None


def transport_tables(transport):
    """The medians table, the round-by-round table and their JSON, for one transport."""
    t_rows = [r for r in transport_rows if r["transport"] == transport]
    t_servers = list(dict.fromkeys(["tcpchat"] + [r["server"] for r in t_rows]))
    t_peers = [s for s in t_servers if s != "tcpchat"]
    t_rounds = sorted({r["run"] for r in t_rows})

    def found(server, scenario, metric):
        got = (number(transport_run_of(transport, server, scenario, rnd), metric) for rnd in t_rounds)
        return [v for v in got if v is not None]

    def why_not(server, scenario):
        reasons = (failure(transport_run_of(transport, server, scenario, rnd)) for rnd in t_rounds)
        return next((w for w in reasons if w), None)

    names = [SERVER_NAMES.get(s, s) for s in t_servers]
    header = ["metric"] + names + [f"tcpchat / {SERVER_NAMES.get(s, s)}" for s in t_peers]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    medians = {}
    for scenario, metric, label, better in TRANSPORT_METRICS:
        if "handshakes" in metric and transport == "ws":
            continue
        meds = {}
        cells = [label]
        for s in t_servers:
            v = found(s, scenario, metric)
            meds[s] = statistics.median(v) if v else None
            cells.append(fmt(meds[s]) if meds[s] is not None else (why_not(s, scenario) or "–")[:40])
        for s in t_peers:
            r = ratio(meds.get("tcpchat"), meds.get(s))
            cells.append(f"{r:.2f}×" if better and r is not None else "")
        medians.setdefault(scenario, {})[metric] = meds
        out.append("| " + " | ".join(cells) + " |")
    medians_table = "\n".join(out)

    header2 = ["main figure", "reads as"] + [f"round {rnd}" for rnd in t_rounds] + ["median"]
    out2 = ["| " + " | ".join(header2) + " |", "|" + "---|" * len(header2)]
    entries = []
    for scenario, metric, label, short, better, fair in TRANSPORT_MAIN:
        way = "higher" if better == "high" else "lower"
        entry = {"scenario": scenario, "metric": metric, "label": label,
                 "reads": f"tcpchat {short} / best peer {short}, {way} is better", "rounds": []}
        cells = [label, entry["reads"]]
        ratios = []
        for rnd in t_rounds:
            mine = transport_run_of(transport, "tcpchat", scenario, rnd)
            value = number(mine, metric)
            why = failure(mine)
            if why is None and not fair(mine):
                why = f"tcpchat held {fmt(mine.get('connected'))} of {fmt(mine.get('clients'))}"
            candidates = []
            for s in t_peers:
                theirs = transport_run_of(transport, s, scenario, rnd)
                v = number(theirs, metric)
                if v is not None and fair(theirs):
                    candidates.append((v, s))
            best, peer = (max if better == "high" else min)(candidates) if candidates else (None, None)
            if why is None and peer is None:
                why = "no peer ran it in full"
            r = ratio(value, best) if why is None else None
            if why is None and r is None:
                why = "no ratio"
            if r is not None:
                ratios.append(r)
                cells.append(f"{r:.2f}× ({SERVER_NAMES.get(peer, peer)})")
            else:
                cells.append(why[:40])
            entry["rounds"].append({"round": rnd, "ratio": r, "best_peer": peer, "tcpchat": value,
                                    "best_peer_value": best, "note": why})
        entry["median"] = statistics.median(ratios) if ratios else None
        cells.append(f"**{entry['median']:.2f}×**" if ratios else "–")
        entries.append(entry)
        out2.append("| " + " | ".join(cells) + " |")
    rounds_table = "\n".join(out2)

    header3 = ["host steal ms during the run"] + [f"round {rnd}" for rnd in t_rounds]
    out3 = ["| " + " | ".join(header3) + " |", "|" + "---|" * len(header3)]
    for scenario in dict.fromkeys(r["scenario"] for r in t_rows):
        cells = [f"{transport}-{scenario}"]
        for rnd in t_rounds:
            parts = []
            for s in t_servers:
                result = transport_run_of(transport, s, scenario, rnd)
                steal = result.get("host_steal_ms") if result else None
                parts.append(f"{SERVER_NAMES.get(s, s)} {fmt(steal) if isinstance(steal, (int, float)) else '–'}")
            attempts = max((r.get("attempts", 1) for r in t_rows if r["scenario"] == scenario and r["run"] == rnd),
                           default=1)
            cells.append(", ".join(parts) + (f" (least disturbed of {attempts} tries)" if attempts > 1 else ""))
        out3.append("| " + " | ".join(cells) + " |")
    steal_table = "\n".join(out3)
    return medians_table, rounds_table, steal_table, {"servers": t_servers, "medians": medians,
                                                      "per_round_ratios": entries}


transports = {}
transport_report = ""
if transport_rows:
    transport_report = (
        "\n## Transports\n\nEach transport against its peers, in the same rounds: fanout, latency, capacity"
        " (2,000 idle clients; 200 in quick mode) and churn, every line one WebSocket text message over ws and"
        " wss. The load generator speaks TLS with rustls, accepts any certificate and keeps one session store"
        " per run, so that a connection resumes an earlier one's session as a browser's would (churn's"
        " connections; capacity's connect before reading any ticket over TLS, and read them during the"
        " WebSocket upgrade over wss). Memory per idle client is the growth of the server's RSS from before"
        " the first client to all of them idle, over the clients connected.\n")
    for transport, title in TRANSPORTS:
        if not any(r["transport"] == transport for r in transport_rows):
            continue
        medians_table, rounds_table, steal_table, data = transport_tables(transport)
        transports[transport] = data
        transport_report += (f"\n### {title}\n\n{medians_table}\n\ntcpchat against the best peer of the same"
                             f" round, and the median of those ratios.\n\n{rounds_table}\n\n{steal_table}\n")

machine = f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"
note = (f"{'Quick smoke run (1 round)' if quick else f'Medians of {len(rounds)} rounds'}"
        f" on {machine}, {time.strftime('%Y-%m-%d')}. tcpchat ran as `{flags}`."
        " A round runs every scenario once, against each server back to back.")
if quick:
    note += (" Quick mode: shorter runs, 100 clients in fanout-large, 200 in capacity and in the"
             " big room; not for comparison.")
note2 = ("tcpchat against the best other server of the same round (a peer that did not hold every"
         " client of capacity or the big room is not compared), and the median of those ratios.")
note3 = ("The big room under churn: each server against itself, in the same round. The churn loops"
         " wait for the server's first line; Node sends none of its own, so its loops wait for the"
         " next line said in the room.")
note6 = ("CPU time the machine's host took from it (steal in /proc/stat, all CPUs) during each"
         " run: a round whose tail stands out for one server alone usually has it."
         + ("" if quick else " When the host took more than 20 ms per second from any server's"
            " run, the scenario ran again for all three, up to 3 tries, and the try it disturbed"
            " least was kept."))
report = (f"{note}\n\n{table}\n\n{note2}\n\n{table2}\n\n{note6}\n\n{table6}\n\n"
          f"{note3}\n\n{table3}\n")
if has_cluster:
    note4 = ("The cluster: three tcpchat nodes and one Redis on this machine, the clients"
             " (senders too) spread round-robin over the nodes, against one tcpchat node in the same"
             " round, back to back (one node first in odd rounds, the cluster first in even ones)."
             " Each cluster run starts its own Redis and nodes and waits until a line said on each"
             " node reaches the others. A cross-node delivery is one whose sender is on another node"
             " than its receiver (on 3 nodes, two thirds of them); every line goes through Redis,"
             " even to the sender's own node. The cluster's server CPU is that of its three nodes and"
             " Redis together.")
    report += f"\n{note4}\n\n{table4}\n\n{table5}\n"
else:
    report += "\nThe cluster comparison did not run (redis-server is not installed, or BENCH_CLUSTER=0).\n"
report += transport_report
print(report)

os.makedirs(out_dir, exist_ok=True)
name = "quick" if quick else "latest"
with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump({"machine": machine, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "flags": flags,
               "quick": quick, "rounds": len(rounds), "medians": summary,
               "per_round_ratios": per_round, "big_room_targets": targets, "cluster": cluster or None,
               "runs": rows, "transports": transports or None, "transport_runs": transport_rows}, f, indent=1)
with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(report)

# The stall scenario: deliveries per second to the other clients, one line per server,
# from the last round.
series = {}
last_round = None
for r in rows:
    if r["scenario"] == "stall" and "deliveries_per_second" in r["result"]:
        series[r["server"]] = r["result"]["deliveries_per_second"]
        last_round = r["run"]
if series:
    width, height, pad = 640, 320, 50
    longest = max(len(v) for v in series.values())
    top = max(max(v) for v in series.values() if v) or 1
    colours = {"tcpchat": "#1f77b4", "node": "#2ca02c", "ncat": "#d62728"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle">stall: deliveries per second to the other 20 clients (a non-reading client joins at 5 s)</text>',
           f'<text x="{width - 120}" y="34">round {last_round}</text>',
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
