#!/usr/bin/env python3
"""Turns the JSON results of loadtest/bench.sh into the Markdown tables of
docs/benchmarks.md. Usage: bench_report.py RESULTS_DIR [--write docs/benchmarks.md]
(--write replaces what is between the `bench:begin` and `bench:end` markers)."""

import json
import os
import platform
import re
import subprocess
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
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


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    text = report(sys.argv[1])
    print(text)
    if len(sys.argv) >= 4 and sys.argv[2] == "--write":
        path = sys.argv[3]
        with open(path) as f:
            doc = f.read()
        if BEGIN not in doc or END not in doc:
            sys.exit(f"{path} has no {BEGIN} ... {END} markers")
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(path, "w") as f:
            f.write(f"{head}{BEGIN}\n{text}{END}{tail}")
        print(f"bench: tables written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
