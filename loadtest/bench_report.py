#!/usr/bin/env python3
"""Turns the JSON results of loadtest/bench.sh into the Markdown tables of
docs/benchmarks.md and docs/scaling.md. Prints every table it has results for.

Usage: bench_report.py RESULTS_DIR [--before DIR] [--write docs/benchmarks.md]
                       [--write-fanout docs/benchmarks.md] [--write-scaling docs/scaling.md]
                       [--write-redis-cluster docs/benchmarks.md]
                       [--write-connections docs/benchmarks.md] [--storm-summary NAME]
  --before DIR     results of another server build (bench.sh with CHATTY_BIN=... and
                   BENCH_RESULTS=DIR): the fanout and scaling tables show its runs as
                   "before" beside RESULTS_DIR's as "after"
  --write          replaces what is between the `bench:begin` and `bench:end` markers with
                   the tables of the Chatty-against-the-reference scenarios (idle,
                   saturate, send, chaos, hostile, notify)
  --write-fanout   replaces what is between `<!-- fanout:begin -->` and
                   `<!-- fanout:end -->` with the fanout tables
  --write-scaling  replaces what is between `<!-- scaling:begin -->` and
                   `<!-- scaling:end -->` with the scaling table
  --write-redis-cluster
                   replaces what is between `<!-- redis-cluster:begin -->` and
                   `<!-- redis-cluster:end -->` with the single Redis against Redis
                   Cluster tables (send-cluster, chaos-redis-failover, chaos-redis-restart)
  --write-connections
                   replaces what is between `<!-- connections:begin -->` and
                   `<!-- connections:end -->` with the idle-at-scale, reconnect storm and
                   rolling restart tables
  --storm-summary NAME
                   prints the merged figures of the storm run NAME (the load processes'
                   NAME-p1.json, NAME-p2.json, ...) as JSON, and writes them to NAME.json
A file without the markers is an error: add them where the tables belong. Bus figures
read "n/a" for a server build that does not export them."""

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
MARKERS = {
    "bench": (BEGIN, END),
    "fanout": ("<!-- fanout:begin -->", "<!-- fanout:end -->"),
    "scaling": ("<!-- scaling:begin -->", "<!-- scaling:end -->"),
    "redis-cluster": ("<!-- redis-cluster:begin -->", "<!-- redis-cluster:end -->"),
    "connections": ("<!-- connections:begin -->", "<!-- connections:end -->"),
}
REDIS_SETUPS = {
    "single": "single Redis",
    "cluster": "Redis Cluster (3 masters + 3 replicas)",
}
REDIS_CHAOS = {
    "chaos-redis-failover": ("Redis Cluster", "a master killed, its replica takes over"),
    "chaos-redis-restart": ("single Redis", "crashed, back with no data (no persistence)"),
}
KINDS = ("chatty", "reference")
NAMES = {"chatty": "Chatty", "reference": "Reference (Node.js Socket.IO + Redis adapter)"}


def load(results, name):
    path = os.path.join(results, name + ".json")
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(results, name + ".quiet")) as f:
            r["_busy_before_pct"] = json.load(f).get("busy_before_pct")
    except (OSError, ValueError):
        pass
    return r


def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def ms(r, key):
    lat = (r or {}).get("latency") or {}
    return num(lat.get(key), "{:.1f}")


def load_avg(r):
    """1-minute load average / CPU other work used just before the run."""
    l = ((r or {}).get("usage") or {}).get("loadavg_before")
    text = "-" if not l else "{:.2f}".format(l[0])
    busy = (r or {}).get("_busy_before_pct")
    return text if busy is None else f"{text} / {busy}%"


def usage(r, key, fmt="{:,.0f}"):
    return num(((r or {}).get("usage") or {}).get(key), fmt)


def node_cpu(r):
    nodes = ((r or {}).get("usage") or {}).get("nodes") or []
    pcts = [n.get("cpu_pct") for n in nodes if n.get("cpu_pct") is not None]
    return "-" if not pcts else " / ".join("{:.0f}".format(p) for p in pcts)


def kept_up(r):
    """Deliveries while sending over what the acknowledged sends asked for."""
    if not r or not r.get("sent_per_sec"):
        return None
    return r["delivered_in_window_per_sec"] / (r["sent_per_sec"] * r["group_size"])


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.0f GB\", $2/1048576}' /proc/meminfo")
    return "; ".join(
        x
        for x in [
            f"{os.cpu_count()} vCPUs ({cpu})" if cpu else f"{os.cpu_count()} vCPUs",
            mem,
            f"Linux {platform.release()}",
            sh("psql --version | cut -d' ' -f3 | sed 's/^/PostgreSQL /'"),
            sh("redis-server --version | grep -o 'v=[0-9.]*' | sed 's/v=/Redis /'"),
            sh("nginx -v 2>&1 | cut -d/ -f2 | sed 's/^/nginx /'"),
            sh("node --version | sed 's/^v/Node.js /'"),
            sh("rustc --version | cut -d' ' -f1-2"),
        ]
        if x
    )


def table(header, rows):
    """A Markdown table, or "" when no run gave it a row, so that the report leaves it out."""
    if not rows:
        return ""
    separator = "|" + "---|" * (header.count("|") - 1)
    return "\n".join([header, separator, *rows])


def loaded(results, scenario):
    """(kind, results) of each server whose run of the scenario left results."""
    for kind in KINDS:
        r = load(results, f"{kind}-{scenario}")
        if r:
            yield kind, r


def idle_table(results):
    rows = []
    for kind, r in loaded(results, "idle"):
        before = sum(n["rss_bytes"] for n in r["nodes_before"]) / 1048576
        after = sum(n["rss_bytes"] for n in r["nodes_after"]) / 1048576
        rows.append(
            f"| {NAMES[kind]} | {r['connected']:,} | {r['connect_errors']} | {r['connect_secs']:.1f} "
            f"| {before:.1f} | {after:.1f} | **{num(r.get('kb_per_connection'), '{:.1f}')}** | {load_avg(r)} |"
        )
    return table(
        "| server | idle sockets | connect errors | connect s | RSS before MiB | RSS after MiB | KB per connection | load |",
        rows,
    )


def numbered_runs(results, name, point=r"\d+"):
    """(what the file name numbers the run by, its results) of each run named `name-point`."""
    for f in os.listdir(results):
        m = re.fullmatch(rf"{name}-({point})\.json", f)
        if m:
            yield m.group(1), load(results, f[:-5])


def rate_steps(results, kind):
    return sorted((int(rate), r) for rate, r in numbered_runs(results, f"{kind}-rate"))


def saturation_table(results):
    rows = []
    for kind in KINDS:
        for rate, r in rate_steps(results, kind):
            if not r:
                rows.append(f"| {NAMES[kind]} | {rate:,} | failed |||||||||")
                continue
            k = kept_up(r)
            rows.append(
                f"| {NAMES[kind]} | {rate:,} | {r['sent_per_sec']:,.0f} | {r['delivered_in_window_per_sec']:,.0f} "
                f"| {num(k and 100 * k, '{:.0f}%')} | {ms(r, 'p50_ms')} | {ms(r, 'p99_ms')} | {ms(r, 'max_ms')} "
                f"| {node_cpu(r)} | {usage(r, 'pg_commits_per_sec')} | {usage(r, 'machine_busy_pct', '{:.0f}%')} | {load_avg(r)} |"
            )
    return table(
        "| server | offered msg/s | acked msg/s | delivered/s while sending | kept up | p50 ms | p99 ms | max ms | node CPU % | PG commits/s | machine busy | load |",
        rows,
    )


def saturation_of(results, kind):
    try:
        with open(os.path.join(results, f"{kind}-saturation")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def send_table(results):
    rows = []
    for kind in KINDS:
        sat = saturation_of(results, kind)
        for share in (50, 90):
            r = load(results, f"{kind}-send-{share}")
            if not r:
                continue
            rows.append(
                f"| {NAMES[kind]} | {share}% of {num(sat)} | {r['target_rate']:,.0f} | {r['delivered_in_window_per_sec']:,.0f} "
                f"| {ms(r, 'p50_ms')} | {ms(r, 'p90_ms')} | **{ms(r, 'p99_ms')}** | {ms(r, 'p999_ms')} | {ms(r, 'max_ms')} "
                f"| {r['lost']} | {r['duplicated']} | {r['out_of_order']} | {usage(r, 'nodes_cpu_ms_per_1k_deliveries', '{:.0f}')} "
                f"| {usage(r, 'pg_commits_per_sec')} | {load_avg(r)} |"
            )
    return table(
        "| server | load point | msg/s | delivered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | out of order | node CPU-ms per 1k deliveries | PG commits/s | load |",
        rows,
    )


def ratio_table(results):
    c, ref = saturation_of(results, "chatty"), saturation_of(results, "reference")
    rows = []
    if c and ref:
        rows.append(f"| saturation (msg/s sent, groups of 10) | {c:,} | {ref:,} | **{c / ref:.1f}x** |")
    for share in (50, 90):
        a, b = load(results, f"chatty-send-{share}"), load(results, f"reference-send-{share}")
        if a and b:
            da, db = a["delivered_in_window_per_sec"], b["delivered_in_window_per_sec"]
            rows.append(
                f"| delivered/s at {share}% of own saturation | {da:,.0f} | {db:,.0f} | **{da / db:.1f}x** |"
                if db
                else f"| delivered/s at {share}% | {da:,.0f} | {db:,.0f} | - |"
            )
            rows.append(f"| p99 ms at {share}% of own saturation | {ms(a, 'p99_ms')} | {ms(b, 'p99_ms')} | |")
    a, b = load(results, "chatty-idle"), load(results, "reference-idle")
    if a and b and (a.get("kb_per_connection") or 0) > 0 and (b.get("kb_per_connection") or 0) > 0:
        rows.append(
            f"| KB per idle connection | {a['kb_per_connection']:.1f} | {b['kb_per_connection']:.1f} "
            f"| **{b['kb_per_connection'] / a['kb_per_connection']:.1f}x less** |"
        )
    return table("| measure | Chatty | reference | ratio |", rows)


def chaos_table(results):
    rows = []
    for kind, r in loaded(results, "chaos"):
        res = r.get("resume") or {}
        events = ", ".join(
            f"{e['action']}{' ' + str(e['node']) if e.get('node') else ''} @{e['at_secs']:.0f}s" for e in r.get("chaos", [])
        )
        rows.append(
            f"| {NAMES[kind]} | {r['target_rate']:,.0f} | {r['acked']:,} | {r['send_errors']} | {r['delivered']:,} "
            f"| **{r['lost']}** | **{r['duplicated']}** | {r['out_of_order']} | {res.get('reconnects', '-')} "
            f"| {res.get('recovered_by_sync', '-')} | {res.get('redelivered', '-')} | {res.get('send_retries', '-')} "
            f"| {res.get('sync_errors', '-')} | {ms(r, 'p50_ms')} | {ms(r, 'p99_ms')} | {ms(r, 'max_ms')} | {load_avg(r)} | {events} |"
        )
    return table(
        "| server | msg/s | acked | unacked | delivered | lost | dup | out of order (live) | reconnects | recovered by sync | redelivered | send retries | failed syncs | p50 ms | p99 ms | max ms | load | what happened |",
        rows,
    )


def hostile_runs(results):
    return sorted((int(i), r) for i, r in numbered_runs(results, "chatty-hostile"))


def probe(p):
    """p50 / p99 / max of a victim probe, in ms."""
    if not p or not p.get("count"):
        return "-"
    return "{:.1f} / **{:.1f}** / {:.1f}".format(p["p50_ms"], p["p99_ms"], p["max_ms"])


def corrected(p):
    """p99 corrected for coordinated omission (a stall stands for every probe it held up)."""
    return num((p or {}).get("p99_corrected_ms"), "{:.1f}")


def failures(*probes):
    counts = {}
    for p in probes:
        for k, n in ((p or {}).get("failures") or {}).items():
            counts[k] = counts.get(k, 0) + n
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "0"


def hostile_table(results):
    rows = []
    for i, r in hostile_runs(results):
        if not r:
            rows.append(f"| {i} | failed ||||||||||||||")
            continue
        a, burst, base = r["attacker"], r["victim_burst"], r["victim_baseline"]
        t = a["total"]
        gone = a.get("disconnected_at_secs")
        err = (a.get("first_error") or {}).get("code") if isinstance(a.get("first_error"), dict) else None
        rows.append(
            f"| {i} | {r['events']:,} in {a['emit_secs']:.2f} s | {num(a.get('last_ack_secs'), '{:.1f} s')} | {r['victim_burst']['secs']:.1f} s | {t['ok']:,} | {t['limited']:,} | {t['unavailable']:,} "
            f"| {t['refused_other']:,} | {t['unacked']:,} "
            f"| {'-' if gone is None else '{:.1f} s ({})'.format(gone, a.get('disconnected_by'))}{'' if not err else ', ' + err} "
            f"| {probe(burst['rest'])} | {probe(burst['socket_rtt'])} "
            f"| {corrected(burst['rest'])} ; {corrected(burst['socket_rtt'])} "
            f"| {probe(base['rest'])} ; {probe(base['socket_rtt'])} | {failures(burst['rest'], burst['socket_rtt'])} "
            f"| {usage(r, 'machine_busy_pct', '{:.0f}%')} |"
        )
    return table(
        "| run | attacker events | last ack | victim window | acked ok | 429 | 503 | other refusals | unacked | attacker disconnected | "
        "victim REST ms p50 / p99 / max | victim socket RTT ms p50 / p99 / max | p99 corrected for coordinated omission REST ; RTT | "
        "baseline REST ; RTT | victim failures | machine busy |",
        rows,
    )


def notify_runs(results):
    """The notify scenario's runs: the idle one first, then by share of saturation."""
    return sorted(
        (-1 if point == "idle" else int(point), point, r)
        for point, r in numbered_runs(results, "chatty-notify", r"idle|\d+")
    )


def notify_table(results):
    rows = []
    sat = saturation_of(results, "chatty")
    for _, point, r in notify_runs(results):
        where = "idle" if point == "idle" else f"{point}% of {num(sat) if sat else 'saturation'}"
        if not r:
            rows.append(f"| {where} | failed ||||||||||||")
            continue
        n = r.get("notifications") or {}
        lat = n.get("latency") or {}
        rows.append(
            f"| {where} | {r['users']:,} in groups of {r['group_size']} | {r['target_rate']:,.0f} | {r['acked']:,} "
            f"| {r['delivered']:,} | {ms(r, 'p50_ms')} / {ms(r, 'p99_ms')} | {num(n.get('events'))} | {num(n.get('unparsed'))} "
            f"| {num(lat.get('p50_ms'), '{:.1f}')} | {num(lat.get('p90_ms'), '{:.1f}')} | **{num(lat.get('p99_ms'), '{:.1f}')}** "
            f"| {num(lat.get('max_ms'), '{:.1f}')} | {load_avg(r)} |"
        )
    return table(
        "| load point | users | msg/s | acked | message deliveries | message p50 / p99 ms | notifications | unparsed "
        "| notification p50 ms | p90 ms | p99 ms | max ms | load |",
        rows,
    )


def n_a(v, fmt="{:,.0f}"):
    """A figure the server may not export: "n/a" rather than "-" when it did not."""
    return "n/a" if v is None else fmt.format(v)


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def node_rows(r):
    """(node usage, chat sockets at the end, whether sockets were sent to it) per node."""
    u = (r or {}).get("usage") or {}
    sockets = {n["node"]: n.get("chat_connections", 0) for n in r.get("nodes_after") or []}
    targets = set(r.get("socket_nodes") or [])
    for n in u.get("nodes") or []:
        # Results from before `socket_nodes` was recorded: a node with sockets was a target.
        loaded = n["node"] in targets if targets else sockets.get(n["node"], 0) > 0
        yield n, sockets.get(n["node"]), loaded


def bus_received(n):
    if n.get("bus_received") is None:
        return "n/a"
    return "{:,} ({:,.0f}/s)".format(n["bus_received"], n.get("bus_received_per_sec") or 0)


def cpu_secs(n):
    if n.get("cpu_secs") is None:
        return "-"
    return "{:.2f} s ({:.0f}%)".format(n["cpu_secs"], n.get("cpu_pct") or 0)


def builds(results, before):
    """(label, results dir) of each build compared: just RESULTS_DIR, or before and after."""
    return [("before", before), ("after", results)] if before else [("", results)]


def fanout_summary(r):
    """Loaded and idle nodes' mean CPU seconds and idle nodes' mean bus messages/s."""
    rows = list(node_rows(r))
    loaded = mean([n.get("cpu_secs") for n, _, l in rows if l])
    idle = mean([n.get("cpu_secs") for n, _, l in rows if not l])
    idle_bus = mean([n.get("bus_received_per_sec") for n, _, l in rows if not l])
    return loaded, idle, idle_bus


def fanout_tables(results, before=None):
    runs = [(label, load(d, "chatty-fanout")) for label, d in builds(results, before)]
    runs = [(label, r) for label, r in runs if r]
    if not runs:
        return ""
    parts = []
    for label, r in runs:
        rows = list(node_rows(r))
        loaded = sum(1 for _, _, l in rows if l)
        parts.append(
            f"{label + ': ' if label else ''}{len(rows)} nodes, sockets straight to {loaded} of them; "
            f"{r['target_rate']:,.0f} msg/s from {r['users']:,} users in groups of {r['group_size']}, "
            f"{usage(r, 'secs', '{:.0f}')} s of sending."
        )
    columns = ("sockets", "CPU s (% of a core)", "bus messages received (/s)", "channels at end")
    sides = " | ".join(f"{label + ': ' if label else ''}{c}" for label, _ in runs for c in columns)
    by_node = {}
    for side, (_, r) in enumerate(runs):
        for k, (n, sockets, loaded) in enumerate(node_rows(r)):
            row = by_node.setdefault(k, [f"{k + 1} ({'loaded' if loaded else 'idle'})"] + [""] * (4 * len(runs)))
            row[1 + 4 * side : 5 + 4 * side] = [
                num(sockets),
                cpu_secs(n),
                bus_received(n),
                n_a(n.get("bus_channels")),
            ]
    per_node = table(f"| node | {sides} |", ["| " + " | ".join(row) + " |" for _, row in sorted(by_node.items())])
    summary_rows = []
    for label, r in runs:
        loaded, idle, idle_bus = fanout_summary(r)
        ratio = idle / loaded if loaded and idle is not None else None
        summary_rows.append(
            f"| {label or 'this build'} | {r['target_rate']:,.0f} | {r['delivered_in_window_per_sec']:,.0f} "
            f"| {ms(r, 'p50_ms')} | {ms(r, 'p99_ms')} | {r['lost']} | {r['duplicated']} | {r['out_of_order']} "
            f"| {num(loaded, '{:.2f}')} | {num(idle, '{:.2f}')} | **{num(ratio, '{:.2f}')}** "
            f"| {n_a(idle_bus)} | {load_avg(r)} |"
        )
    summary = table(
        "| build | msg/s | delivered/s while sending | p50 ms | p99 ms | lost | dup | out of order "
        "| loaded nodes' CPU s (mean) | idle nodes' CPU s (mean) | idle / loaded CPU "
        "| idle nodes' bus messages/s (mean) | load |",
        summary_rows,
    )
    return "\n\n".join([" ".join(parts), summary, per_node])


def scaling_runs(results):
    return sorted((int(n), r) for n, r in numbered_runs(results, "chatty-scaling"))


def scaling_table(results, before=None):
    rows = []
    for label, d in builds(results, before):
        for n, r in scaling_runs(d) if os.path.isdir(d) else []:
            build = f"{label} | " if before else ""
            if not r:
                rows.append(f"| {build}{n} | failed |" + "|" * 14)
                continue
            u = r.get("usage") or {}
            nodes = u.get("nodes") or []
            pcts = [x.get("cpu_pct") for x in nodes if x.get("cpu_pct") is not None]
            cores = sum(x["cpu_secs"] for x in nodes if x.get("cpu_secs") is not None) / u["secs"] if pcts else None
            redis = u.get("redis_cpu_secs")
            rows.append(
                f"| {build}{n} | {r['target_rate']:,.0f} | {r['sent_per_sec']:,.0f} | {r['delivered_in_window_per_sec']:,.0f} "
                f"| {ms(r, 'p50_ms')} | **{ms(r, 'p99_ms')}** | {r['lost']} | {r['duplicated']} | {r['out_of_order']} "
                f"| {num(mean(pcts), '{:.0f}%')} | {num(max(pcts) if pcts else None, '{:.0f}%')} | {num(cores, '{:.2f}')} "
                f"| {n_a(mean([x.get('bus_received_per_sec') for x in nodes]))} "
                f"| {num(redis and redis / u['secs'], '{:.3f}')} | {usage(r, 'machine_busy_pct', '{:.0f}%')} | {load_avg(r)} |"
            )
    return table(
        f"| {'build | ' if before else ''}nodes | offered msg/s | acked msg/s | delivered/s while sending | p50 ms | p99 ms "
        "| lost | dup | out of order | node CPU % (mean) | node CPU % (max) | all nodes' CPU (cores) "
        "| bus messages received/s per node (mean) | Redis CPU (cores) | machine busy | load |",
        rows,
    )


def scaling_report(results, before=None):
    t = scaling_table(results, before)
    if not t:
        return ""
    r = next((r for _, r in scaling_runs(results) if r), None)
    what = (
        f"The same offered load on each cluster size, through nginx: {r['target_rate']:,.0f} msg/s from "
        f"{r['users']:,} users in groups of {r['group_size']}. "
        if r
        else ""
    )
    return f"{what}Machine: {machine()}.\n\n{t}\n"


def fanout_report(results, before=None):
    t = fanout_tables(results, before)
    return f"{t}\n" if t else ""


def redis_send_runs(results):
    """(rate, setup, results) of the send-cluster runs, by rate, single Redis first."""
    runs = []
    for setup in REDIS_SETUPS:
        for rate, r in numbered_runs(results, f"chatty-redis-{setup}"):
            runs.append((int(rate), list(REDIS_SETUPS).index(setup), setup, r))
    return [(rate, setup, r) for rate, _, setup, r in sorted(runs, key=lambda x: x[:2])]


def per_sec(r, key):
    """A usage total over the seconds of sending."""
    u = (r or {}).get("usage") or {}
    v, secs = u.get(key), u.get("secs")
    return v / secs if v is not None and secs else None


def redis_send_table(results):
    rows = []
    sat = saturation_of(results, "chatty")
    for rate, setup, r in redis_send_runs(results):
        point = f"{rate:,} ({100 * rate / sat:.0f}% of {sat:,})" if sat else f"{rate:,}"
        if not r:
            rows.append(f"| {point} | {REDIS_SETUPS[setup]} | failed |" + "|" * 12)
            continue
        rows.append(
            f"| {point} | {REDIS_SETUPS[setup]} | {r['sent_per_sec']:,.0f} | {r['delivered_in_window_per_sec']:,.0f} "
            f"| {ms(r, 'p50_ms')} | **{ms(r, 'p99_ms')}** | {ms(r, 'p999_ms')} | {ms(r, 'max_ms')} "
            f"| {r['lost']} | {r['duplicated']} | {r['out_of_order']} "
            f"| {usage(r, 'nodes_cpu_ms_per_1k_deliveries', '{:.0f}')} | {num(per_sec(r, 'redis_cpu_secs'), '{:.3f}')} "
            f"| {usage(r, 'redis_commands_per_sec')} | {load_avg(r)} |"
        )
    return table(
        "| offered msg/s | Redis | acked msg/s | delivered/s while sending | p50 ms | p99 ms | p99.9 ms | max ms "
        "| lost | dup | out of order | node CPU-ms per 1k deliveries | Redis CPU (cores, all processes) "
        "| Redis commands/s | load |",
        rows,
    )


def presence_cell(a):
    if not a:
        return "-"
    if a.get("presence_unread"):
        return "unread (no token worked)"
    settled = a.get("presence_settled_after_secs")
    when = "never all" if settled is None else f"all {settled:.1f} s after"
    return f"{a['not_online']:,} of {a['expected_online']:,} ({when})"


def redis_chaos_table(results):
    rows = []
    for scenario, (setup, blow) in REDIS_CHAOS.items():
        r = load(results, f"chatty-{scenario}")
        if not r:
            continue
        a = r.get("aftermath") or {}
        res = r.get("resume") or {}
        events = ", ".join(
            f"{e['action']}{' ' + str(e['node']) if e.get('node') else ''} @{e['at_secs']:.0f}s "
            f"({e['took_secs']:.1f} s{'' if e.get('ok', True) else ', FAILED'})"
            for e in r.get("chaos", [])
        )
        rows.append(
            f"| {setup}: {blow} | {r['target_rate']:,.0f} | {r['acked']:,} | {r['send_errors']} | {r['delivered']:,} "
            f"| **{r['lost']}** | **{r['duplicated']}** "
            f"| **{num(a.get('logged_out'))}** of {num(a.get('devices_checked'))} | {num(a.get('reconnects_refused_for_session'))} "
            f"| {presence_cell(a)} | {res.get('reconnects', '-')} | {res.get('recovered_by_sync', '-')} "
            f"| {res.get('send_retries', '-')} | {ms(r, 'p99_ms')} | {ms(r, 'max_ms')} | {load_avg(r)} | {events} |"
        )
    return table(
        "| what happened to Redis | msg/s | acked | unacked | delivered | lost | dup | devices logged out "
        "| reconnects refused (no session) | users with a device not shown online | reconnects | recovered by sync "
        "| send retries | p99 ms | max ms | load | events |",
        rows,
    )


def redis_cluster_report(results):
    parts = []
    send = redis_send_table(results)
    if send:
        r = next((r for _, _, r in redis_send_runs(results) if r), None)
        what = (
            f"The same offered load on each Redis, through nginx: {r['users']:,} users in groups of "
            f"{r['group_size']}, {usage(r, 'secs', '{:.0f}')} s of sending per run. "
            if r
            else ""
        )
        parts.append(f"{what}Machine: {machine()}.\n\n{send}")
    chaos = redis_chaos_table(results)
    if chaos:
        parts.append(
            "Losing Redis's data while sending: no message may be lost or stored twice, no device "
            "logged out (every device's first token still works), and every user with a "
            "connected device shown online within the presence lease after the event.\n\n" + chaos
        )
    return "\n\n".join(parts) + "\n" if parts else ""


def report(results):
    parts = [
        f"Machine: {machine()}. The `load` columns give the 1-minute load average when the run "
        "started (it still carries the previous run for a minute) / the CPU share other work "
        "used in the 3 s before it."
    ]
    for title, table in (
        ("Chatty against the reference", ratio_table(results)),
        ("Scenario 1: idle authenticated sockets, one node", idle_table(results)),
        ("Scenario 2a: finding saturation (3 nodes behind nginx, 2,000 users in groups of 10)", saturation_table(results)),
        ("Scenario 2b: sustained sends at 50% and 90% of saturation", send_table(results)),
        ("Scenario 3: node kills and a Redis crash while sending", chaos_table(results)),
        ("Scenario 4: one hostile socket's burst, felt by another user (Chatty only)", hostile_table(results)),
        (
            "Scenario 5: message notification latency, send to `notification` event (Chatty only; "
            "notifications collapse per conversation, so fewer than deliveries is not loss)",
            notify_table(results),
        ),
    ):
        if table:
            parts.append(f"#### {title}\n\n{table}")
    return "\n\n".join(parts) + "\n"


def time_to_fraction(times, n, fraction, start):
    """Seconds from `start` until `fraction` of `n` things had happened (as the load tool's
    storm.rs computes it); None when fewer than that ever did."""
    if n == 0:
        return 0.0
    needed = min(max(math.ceil(fraction * n), 1), n)
    if len(times) < needed:
        return None
    return round(max(sorted(times)[needed - 1] - start, 0.0), 3)


def tail(samples):
    """(p99 by nearest rank, max) of a latency sample, or (None, None)."""
    if not samples:
        return None, None
    s = sorted(samples)
    return s[min(max(math.ceil(0.99 * len(s)), 1), len(s)) - 1], s[-1]


def storm_parts(results, name):
    """The results of the load processes of one storm run, in process order."""
    parts = []
    for f in os.listdir(results):
        m = re.fullmatch(re.escape(name) + r"-p(\d+)\.json", f)
        if m:
            r = load(results, f[: -len(".json")])
            if r:
                parts.append((int(m.group(1)), r))
    return [r for _, r in sorted(parts, key=lambda p: p[0])]


def merge_storm(parts):
    """One storm from its load processes' raw samples: the clock starts at the first socket
    drop any of them saw."""
    storms = [p.get("storm") for p in parts if p.get("storm")]
    if not storms:
        return None
    kills = [e for p in parts for e in p.get("chaos", []) if e["action"] == "kill-node"]
    # From the kill command (its process knows when it ran it), else the first drop seen.
    start = kills[0]["at_epoch"] if kills and kills[0].get("at_epoch") else min(s["started_at"] for s in storms)
    dropped = sum(s["dropped"] for s in storms)
    back = [t for s in storms for t in s["back_at"]]
    resumed = [t for s in storms for t in s["resumed_at"]]
    acks = [t for s in storms for t in s["others_ack"]["samples_ms"]]
    deliveries = [t for s in storms for t in s["others_delivery"]["samples_ms"]]
    after = [p.get("aftermath") or {} for p in parts]
    ack_p99, ack_max = tail(acks)
    del_p99, del_max = tail(deliveries)
    rates = [p.get("reconnect_rate") for p in parts if p.get("reconnect_rate")]
    per_sec = {}
    for r in rates:
        for t in r["back_at"]:
            if t >= math.floor(start):
                k = int(math.floor(t - math.floor(start)))
                per_sec[k] = per_sec.get(k, 0) + 1
    series = [per_sec.get(k, 0) for k in range(max(per_sec) + 1)] if per_sec else []
    return {
        # One target: the balancer; several: the nodes themselves, walked on reconnect.
        "via": "nginx" if all(len(p.get("socket_nodes", [])) == 1 for p in parts) else "direct",
        "processes": len(parts),
        "sockets": sum(p["connected"] for p in parts),
        "connect_errors": sum(p["connect_errors"] for p in parts),
        "killed_node": kills[0]["node"] if kills else None,
        "kill_to_first_drop_secs": round(min(min(s["dropped_at"]) for s in storms if s["dropped_at"]) - start, 3)
        if any(s["dropped_at"] for s in storms)
        else None,
        "dropped": dropped,
        "back_99_secs": time_to_fraction(back, dropped, 0.99, start),
        "back_all_secs": time_to_fraction(back, dropped, 1.0, start),
        "resumed_99_secs": time_to_fraction(resumed, dropped, 0.99, start),
        "resumed_all_secs": time_to_fraction(resumed, dropped, 1.0, start),
        "not_back": dropped - len(back),
        "dropped_before_kill": sum(s.get("dropped_before", 0) for s in storms),
        "failed_attempts": sum(s["failed_attempts"] for s in storms),
        "window_secs": storms[0]["window_secs"],
        "others_sends": len(acks),
        "others_unacked": sum(s["others_unacked"] for s in storms),
        "others_ack_p99_ms": ack_p99,
        "others_ack_max_ms": ack_max,
        "others_deliveries": len(deliveries),
        "others_delivery_p99_ms": del_p99,
        "others_delivery_max_ms": del_max,
        "reconnects_per_sec": series,
        "reconnects_peak_per_sec": max(series) if series else 0,
        "sent": sum(p["sent"] for p in parts),
        "acked": sum(p["acked"] for p in parts),
        "delivered": sum(p["delivered"] for p in parts),
        "lost": sum(p["lost"] for p in parts),
        "duplicated": sum(p["duplicated"] for p in parts),
        "logged_out": sum(a.get("logged_out", 0) for a in after),
        "expected_online": sum(a.get("expected_online", 0) for a in after),
        "not_online": sum(a.get("not_online", 0) for a in after),
        "presence_checked": all(p.get("aftermath") for p in parts),
        "loadavg_before": ((parts[0].get("usage") or {}).get("loadavg_before")),
    }


def storm_summary(results, name):
    merged = merge_storm(storm_parts(results, name))
    if merged is None:
        sys.exit(f"no storm figures in {results}/{name}-p*.json")
    with open(os.path.join(results, name + ".json"), "w") as f:
        json.dump(merged, f, indent=2)
    print(json.dumps(merged, indent=2))


def secs(v):
    return "never" if v is None else f"{v:.2f}"


def idle_scale_table(results):
    rows = []
    for kind, r in loaded(results, "idle"):
        rows.append(
            f"| {NAMES[kind]} | {r['connected']:,} | {r['connect_errors']} | {r['connect_secs']:.1f} "
            f"| **{num(r.get('connect_per_sec'))}** | **{num(r.get('kb_per_connection'), '{:.1f}')}** "
            f"| **{node_cpu(r)}** | {usage(r, 'secs', '{:.0f}')} | {load_avg(r)} |"
        )
    return table(
        "| server | idle sockets | connect errors | connect s | sockets/s while connecting | KB per socket "
        "| node CPU % while idle (of one core) | held s | load |",
        rows,
    )


def storm_table(results):
    m = merge_storm(storm_parts(results, "chatty-storm"))
    if not m:
        return ""
    presence = (
        f"{m['expected_online'] - m['not_online']:,} of {m['expected_online']:,} online"
        if m["presence_checked"]
        else "not checked"
    )
    la = m.get("loadavg_before")
    return table(
        "| via | sockets (processes) | dropped by the kill | 99% back s | all back s | 99% resumed s | all resumed s "
        "| not back | failed attempts | peak reconnects/s | others' sends | ack p99 / max ms | delivery p99 / max ms "
        "| lost | dup | logged out | presence after | load |",
        [
            f"| {m['via']} | {m['sockets']:,} ({m['processes']}) | {m['dropped']:,} | **{secs(m['back_99_secs'])}** "
            f"| **{secs(m['back_all_secs'])}** | {secs(m['resumed_99_secs'])} | {secs(m['resumed_all_secs'])} "
            f"| {m['not_back']} | {m['failed_attempts']:,} | {m['reconnects_peak_per_sec']:,} | {m['others_sends']:,} "
            f"| **{num(m['others_ack_p99_ms'], '{:.1f}')}** / {num(m['others_ack_max_ms'], '{:.1f}')} "
            f"| **{num(m['others_delivery_p99_ms'], '{:.1f}')}** / {num(m['others_delivery_max_ms'], '{:.1f}')} "
            f"| **{m['lost']}** | **{m['duplicated']}** | {m['logged_out']} | {presence} "
            f"| {'-' if not la else '{:.2f}'.format(la[0])} |"
        ],
    )


def rolling_table(results):
    rows = []
    for mode in ("burst", "paced"):
        r = load(results, f"chatty-rolling-{mode}")
        if not r:
            continue
        rate = r.get("reconnect_rate") or {}
        res = r.get("resume") or {}
        roll = next((e for e in r.get("chaos", []) if e["action"] == "rolling-restart"), None)
        series = rate.get("per_sec") or []
        a = r.get("aftermath") or {}
        rows.append(
            f"| {mode} | {r['connected']:,} | {num(roll and roll['took_secs'], '{:.0f}')} "
            f"| {rate.get('reconnects', 0):,} | **{rate.get('peak_per_sec', 0):,}** "
            f"| {' '.join(str(n) for n in series)} | **{r['lost']}** | **{r['duplicated']}** "
            f"| {res.get('reconnect_failures', '-')} | {ms(r, 'p99_ms')} | {num((r.get('ack_latency') or {}).get('p99_ms'), '{:.1f}')} "
            f"| {a.get('not_online', '-')} | {load_avg(r)} |"
        )
    return table(
        "| drain | sockets | rolling restart s | reconnects | peak reconnects/s | reconnects per second "
        "(from the first drop) | lost | dup | failed attempts | delivery p99 ms | ack p99 ms | not online after | load |",
        rows,
    )


def connections_report(results):
    parts = []
    for title, t in (
        ("Idle sockets at scale, one node", idle_scale_table(results)),
        ("Reconnect storm: one of three nodes killed", storm_table(results)),
        ("Rolling restart: every node drained in turn", rolling_table(results)),
    ):
        if t:
            parts.append(f"#### {title}\n\n{t}")
    if not parts:
        return ""
    return f"Machine: {machine()}.\n\n" + "\n\n".join(parts) + "\n"


def write(path, which, text):
    begin, end = MARKERS[which]
    if not text:
        # An empty section would erase what the document had for want of results here.
        print(f"bench: no {which} results; {path} left as it was", file=sys.stderr)
        return
    with open(path) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        sys.exit(f"{path} has no {begin} ... {end} markers")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{text}{end}{tail}")
    print(f"bench: {which} tables written to {path}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--before")
    p.add_argument("--write")
    p.add_argument("--write-fanout")
    p.add_argument("--write-scaling")
    p.add_argument("--write-redis-cluster")
    p.add_argument("--write-connections")
    p.add_argument("--storm-summary")
    a = p.parse_args()
    if a.storm_summary:
        storm_summary(a.results, a.storm_summary)
        return
    if a.before and not os.path.isdir(a.before):
        sys.exit(f"--before {a.before}: no such directory")
    text = report(a.results)
    fanout = fanout_report(a.results, a.before)
    scaling = scaling_report(a.results, a.before)
    redis_cluster = redis_cluster_report(a.results)
    connections = connections_report(a.results)
    print(text)
    if fanout:
        print(f"#### Fanout: what nodes without the sockets of a message spend on it\n\n{fanout}")
    if scaling:
        print(f"#### Scaling: one load, more nodes\n\n{scaling}")
    if redis_cluster:
        print(f"#### A single Redis against a Redis Cluster\n\n{redis_cluster}")
    if connections:
        print(f"#### Connections: idle sockets at scale, reconnect storms, paced drain\n\n{connections}")
    if a.write:
        write(a.write, "bench", text)
    if a.write_connections:
        write(a.write_connections, "connections", connections)
    if a.write_fanout:
        write(a.write_fanout, "fanout", fanout)
    if a.write_scaling:
        write(a.write_scaling, "scaling", scaling)
    if a.write_redis_cluster:
        write(a.write_redis_cluster, "redis-cluster", redis_cluster)


if __name__ == "__main__":
    main()
