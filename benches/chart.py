#!/usr/bin/env python3
"""Medians of benches/run_benchmarks.sh results, as Markdown tables and an SVG chart.

    python3 benches/chart.py                       # newest benches/results/*.jsonl
    python3 benches/chart.py FILE.jsonl [...]      # these files, pooled
    python3 benches/chart.py --svg OUT.svg FILE    # chart somewhere else

Prints the tables (medians with min-max ranges, ratios, targets) to stdout and writes
benches/bench.svg: one panel per headline metric, one bar per server with its median
(thin line: min-max over the runs), and the issue's target drawn as a dashed line.

Files from the WebSocket set (`SET=ws benches/run_benchmarks.sh`: servers ours_ws and
tungstenite, with our TCP server "ours" in the same rounds) also get the WebSocket ratios,
paired per run (WebSocket ÷ our TCP, WebSocket ÷ tokio-tungstenite), and the WebSocket
targets; their chart goes to benches/bench-ws.svg unless --svg says otherwise, so the TCP
chart that BENCHMARKS.md shows is not overwritten.
Plain Python 3, no third-party packages.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys
from html import escape

HERE = os.path.dirname(os.path.abspath(__file__))

SERVERS = ["ours", "ours_ws", "raw", "tokio", "tokio_st", "tungstenite", "tungstenite_mt", "python"]
NAMES = {
    "ours": "repod (ours)",
    "ours_ws": "repod WebSocket (ours)",
    "raw": "raw floor",
    "tokio": "tokio multi-thread",
    "tokio_st": "tokio current-thread",
    "tungstenite": "tokio-tungstenite current-thread",
    "tungstenite_mt": "tokio-tungstenite multi-thread",
    "python": "Python repod",
}
SHORT = {
    "ours": "repod",
    "ours_ws": "repod WS",
    "raw": "raw",
    "tokio": "tokio",
    "tokio_st": "tokio 1T",
    "tungstenite": "tungstenite 1T",
    "tungstenite_mt": "tungstenite",
    "python": "Python",
}
COLORS = {
    "ours": "#e8590c",
    "ours_ws": "#f59f00",
    "raw": "#868e96",
    "tokio": "#1c7ed6",
    "tokio_st": "#74c0fc",
    "tungstenite": "#7048e8",
    "tungstenite_mt": "#b197fc",
    "python": "#37b24d",
}
# Servers of the WebSocket set, and the TCP baselines of the main set.
WS_SERVERS = ("ours_ws", "tungstenite", "tungstenite_mt")
TCP_BASELINES = ("raw", "tokio", "tokio_st", "python")

# (label, field, title, unit, scale, better, target(medians) -> (value, text) or None)
def _t_rtt(field):
    def f(m):
        raw = m.get(("raw", "rtt1", field))
        return (raw * 1.05, "target <= 1.05x raw") if raw else None

    return f


def _t_throughput(m):
    tok, raw = m.get(("tokio", "throughput", "ops_per_sec")), m.get(("raw", "throughput", "ops_per_sec"))
    vals = [v for v in (2 * tok if tok else None, 0.8 * raw if raw else None) if v]
    return (max(vals), "target >= max(2x tokio, 0.8x raw)") if vals else None


def _t_fanout(m):
    tok = m.get(("tokio", "fanout", "p99_us"))
    return (tok / 2, "target <= tokio / 2") if tok else None


PANELS = [
    ("rtt1", "p50_us", "RTT p50, 1 client", "µs", 1, "lower", _t_rtt("p50_us")),
    ("rtt1", "p99_us", "RTT p99, 1 client", "µs", 1, "lower", _t_rtt("p99_us")),
    ("rtt50", "ops_per_sec", "Ping-pong, 50 clients", "k round trips/s", 1e-3, "higher", None),
    ("throughput", "ops_per_sec", "Pipelined 50 x 16 x 64 B", "k replies/s", 1e-3, "higher", _t_throughput),
    ("fanout", "p99_us", "Fan-out 500 @ 30 Hz: p99 latency", "ms", 1e-3, "lower", _t_fanout),
    ("conns", "bytes_per_conn", "15,000 idle connections: RSS", "bytes/conn", 1, "lower",
     lambda m: (1024, "target <= 1 KiB")),
]

# The WebSocket set's targets, on medians (the chart's dashed lines).
def _t_ws_rtt(m):
    tcp = m.get(("ours", "rtt1", "p50_us"))
    return (tcp * 1.10, "WS target <= 1.10x repod TCP") if tcp else None


def _t_ws_throughput(m):
    tung = m.get(("tungstenite", "throughput", "ops_per_sec"))
    return (2 * tung, "WS target >= 2x tungstenite 1T") if tung else None


WS_PANELS = [
    ("rtt1", "p50_us", "RTT p50, 1 client", "µs", 1, "lower", _t_ws_rtt),
    ("rtt1", "p99_us", "RTT p99, 1 client", "µs", 1, "lower", None),
    ("throughput", "ops_per_sec", "Pipelined 50 x 16 x 64 B", "k replies/s", 1e-3, "higher", _t_ws_throughput),
    ("conns", "bytes_per_conn", "15,000 idle connections: RSS", "bytes/conn", 1, "lower",
     lambda m: (1024, "target <= 1 KiB")),
    ("conns", "connect_secs", "15,000 connections: connect + upgrade + greet", "s", 1, "lower", None),
    ("rtt50", "ops_per_sec", "Ping-pong, 50 clients", "k round trips/s", 1e-3, "higher", None),
]

# WebSocket ratios: (label, field, title, better), ours_ws ÷ each of WS_VS
WS_RATIOS = [
    ("rtt1", "p50_us", "RTT p50, 1 client (µs)", "lower"),
    ("rtt1", "p99_us", "RTT p99, 1 client (µs)", "lower"),
    ("rtt1", "ops_per_sec", "RTT, 1 client (round trips/s)", "higher"),
    ("rtt50", "ops_per_sec", "Ping-pong, 50 clients (round trips/s)", "higher"),
    ("throughput", "ops_per_sec", "Pipelined 50 x 16 x 64 B (replies/s)", "higher"),
    ("throughput", "p99_us", "Pipelined 50 x 16 x 64 B: p99 latency (µs)", "lower"),
    ("fanout", "p99_us", "Fan-out: p99 latency (µs)", "lower"),
    ("conns", "bytes_per_conn", "15,000 idle connections: RSS (bytes/conn)", "lower"),
    ("conns", "connect_secs", "15,000 connections: connect + greet (s)", "lower"),
]
WS_VS = [("ours", "vs our TCP"), ("tungstenite", "vs tungstenite 1T"),
         ("tungstenite_mt", "vs tungstenite MT")]

# Columns of the Markdown tables: (label, [(field, header, format)])
TABLES = [
    ("rtt1", "RTT, 1 client, strict ping-pong, 64 B", [
        ("ops_per_sec", "round trips/s", "{:,.0f}"),
        ("p50_us", "p50 µs", "{:.1f}"),
        ("p99_us", "p99 µs", "{:.1f}"),
        ("p999_us", "p99.9 µs", "{:.1f}"),
    ]),
    ("rtt50", "Ping-pong, 50 clients, 1 in flight each, 64 B", [
        ("ops_per_sec", "round trips/s", "{:,.0f}"),
        ("p50_us", "p50 µs", "{:.1f}"),
        ("p99_us", "p99 µs", "{:.1f}"),
    ]),
    ("throughput", "Pipelined, 50 clients x window 16, 64 B", [
        ("ops_per_sec", "replies/s", "{:,.0f}"),
        ("mb_per_sec", "payload MB/s", "{:.1f}"),
        ("wire_mb_per_sec", "wire MB/s", "{:.1f}"),
        ("p50_us", "p50 µs", "{:,.0f}"),
        ("p99_us", "p99 µs", "{:,.0f}"),
    ]),
    ("fanout", "Fan-out, 500 clients, 30 broadcasts/s, 200 B", [
        ("ops_per_sec", "deliveries/s", "{:,.0f}"),
        ("loss", "lost", "{:,.0f}"),
        ("p50_us", "p50 µs", "{:,.0f}"),
        ("p99_us", "p99 µs", "{:,.0f}"),
        ("p999_us", "p99.9 µs", "{:,.0f}"),
    ]),
    ("conns", "15,000 idle connections, each greeted", [
        ("bytes_per_conn", "RSS bytes/conn", "{:,.0f}"),
        ("connect_secs", "connect + greet s", "{:.2f}"),
    ]),
]


def load(paths):
    rows, errors = [], []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                r["_file"] = p
                (errors if "error" in r else rows).append(r)
    return rows, errors


def collect(rows):
    """{(server, label, field): [values]}"""
    vals = {}
    for r in rows:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals.setdefault((r["server"], r["label"], k), []).append(float(v))
    return vals


def fmt(f, v):
    return "—" if v is None else f.format(v)


def paired(rows):
    """{(label, field, other): [ours / other per run]}, pairing the two servers' results of
    the same run of the same file. Runs are interleaved, so a pair was measured minutes apart
    at most, in the same state of a machine whose speed drifts between two modes."""
    by = {}
    for r in rows:
        by[(r["_file"], r.get("run"), r["server"], r["label"])] = r
    out = {}
    for (f, run, srv, label), r in by.items():
        if srv != "ours":
            continue
        for other in ("raw", "tokio", "tokio_st", "python"):
            o = by.get((f, run, other, label))
            if not o:
                continue
            for _l, field, *_ in [p for p in PANELS if p[0] == label]:
                a, b = r.get(field), o.get(field)
                if a and b:
                    out.setdefault((label, field, other), []).append(a / b)
    return out


def markdown(vals, med, errors, rows=()):
    out = []
    runs = max((len(v) for v in vals.values()), default=0)
    out.append(f"Medians of up to {runs} runs; [min–max] in brackets.\n")
    for label, title, cols in TABLES:
        servers = [s for s in SERVERS if (s, label, cols[0][0]) in vals]
        if not servers:
            continue
        out.append(f"**{title}**\n")
        out.append("| server | runs | " + " | ".join(h for _, h, _ in cols) + " |")
        out.append("| --- | --- |" + " --- |" * len(cols))
        for s in servers:
            cells = []
            for field, _, f in cols:
                v = vals.get((s, label, field))
                if not v:
                    cells.append("—")
                elif len(v) == 1 or min(v) == max(v):
                    cells.append(fmt(f, statistics.median(v)))
                else:
                    cells.append(f"{fmt(f, statistics.median(v))} [{fmt(f, min(v))}–{fmt(f, max(v))}]")
            n = len(vals.get((s, label, cols[0][0]), []))
            out.append(f"| {NAMES[s]} | {n} | " + " | ".join(cells) + " |")
        out.append("")
    if any(k[0] in WS_SERVERS for k in vals):
        out.append(ws_markdown(vals, med, rows))
    if not any(k[0] in TCP_BASELINES for k in vals):
        # The WebSocket set: no TCP baseline to compare "ours" with.
        if errors:
            out.append(failed(errors))
        return "\n".join(out)
    # ratios
    out.append("**Ratios of medians (ours ÷ other)**\n")
    out.append("| metric | better | vs raw | vs tokio | vs tokio 1T | vs Python |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for label, field, title, unit, _scale, better, _t in PANELS:
        ours = med.get(("ours", label, field))
        if ours is None:
            continue
        cells = []
        for s in ("raw", "tokio", "tokio_st", "python"):
            o = med.get((s, label, field))
            cells.append(f"{ours / o:.2f}" if o else "—")
        out.append(f"| {title} ({unit.replace('k ', '')}) | {better} | " + " | ".join(cells) + " |")
    out.append("")
    pairs = paired(rows)
    if pairs:
        out.append("**Paired ratios (ours ÷ other, median of per-run ratios [min–max])**\n")
        out.append("| metric | better | vs raw | vs tokio | vs tokio 1T | vs Python |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for label, field, title, unit, _scale, better, _t in PANELS:
            cells = []
            for s_ in ("raw", "tokio", "tokio_st", "python"):
                v = pairs.get((label, field, s_))
                cells.append(f"{statistics.median(v):.2f} [{min(v):.2f}–{max(v):.2f}]" if v else "—")
            if any(c != "—" for c in cells):
                out.append(f"| {title} ({unit.replace('k ', '')}) | {better} | " + " | ".join(cells) + " |")
        out.append("")
    if errors:
        out.append(failed(errors))
    return "\n".join(out)


def failed(errors):
    out = ["**Failed runs**\n"]
    for e in errors:
        out.append(f"- {e['server']} {e['label']} run {e['run']}: {e['error']}")
    out.append("")
    return "\n".join(out)


def paired_with(rows, base, others, fields):
    """{(label, field, other): [base / other per run]}: the two servers' results of the same
    run of the same file (the same round, so the same state of the machine)."""
    by = {}
    for r in rows:
        by[(r["_file"], r.get("run"), r["server"], r["label"])] = r
    out = {}
    for (f, run, srv, label), r in by.items():
        if srv != base:
            continue
        for other in others:
            o = by.get((f, run, other, label))
            if not o:
                continue
            for lab, field in fields:
                if lab != label:
                    continue
                a, b = r.get(field), o.get(field)
                if a and b:
                    out.setdefault((label, field, other), []).append(a / b)
    return out


def ratio(v):
    """Two decimals, or two significant digits below 0.1 (e.g. 0.0029)."""
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def ws_markdown(vals, med, rows):
    """The WebSocket set: ours_ws against our own TCP server and tokio-tungstenite."""
    out = []
    vs = [(s, h) for s, h in WS_VS if any(k[0] == s for k in vals)]
    fields = [(l, f) for l, f, _t, _b in WS_RATIOS]
    pairs = paired_with(rows, "ours_ws", [s for s, _ in vs], fields)
    shown = [r for r in WS_RATIOS if ("ours_ws", r[0], r[1]) in vals]
    if not shown or not vs:
        return ""
    out.append("**WebSocket: ratios of medians (repod WebSocket ÷ other)**\n")
    out.append("| metric | better | " + " | ".join(h for _, h in vs) + " |")
    out.append("| --- | --- |" + " --- |" * len(vs))
    for label, field, title, better in shown:
        ours = med[("ours_ws", label, field)]
        cells = [ratio(ours / med[(s, label, field)]) if med.get((s, label, field)) else "—"
                 for s, _ in vs]
        out.append(f"| {title} | {better} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("**WebSocket: paired ratios (repod WebSocket ÷ other, median of per-run ratios "
               "[min–max])**\n")
    out.append("| metric | better | " + " | ".join(h for _, h in vs) + " |")
    out.append("| --- | --- |" + " --- |" * len(vs))
    for label, field, title, better in shown:
        cells = []
        for s, _ in vs:
            v = pairs.get((label, field, s))
            cells.append(f"{ratio(statistics.median(v))} [{ratio(min(v))}–{ratio(max(v))}] (n={len(v)})"
                         if v else "—")
        out.append(f"| {title} | {better} | " + " | ".join(cells) + " |")
    out.append("")
    # targets
    out.append("**WebSocket targets**\n")
    out.append("| target | measured | met? |")
    out.append("| --- | --- | --- |")

    def verdict(ok):
        return "yes" if ok else "**no**"

    v = pairs.get(("rtt1", "p50_us", "ours"))
    if v:
        m = statistics.median(v)
        out.append(f"| RTT p50, 1 client, WebSocket ≤ 1.10x our TCP | paired {m:.2f}x "
                   f"[{min(v):.2f}–{max(v):.2f}], {len(v)} runs | {verdict(m <= 1.10)} |")
    v = pairs.get(("throughput", "ops_per_sec", "tungstenite"))
    if v:
        m = statistics.median(v)
        out.append(f"| Pipelined 50 x 16 x 64 B, WebSocket ≥ 2x tokio-tungstenite | paired {m:.2f}x "
                   f"[{min(v):.2f}–{max(v):.2f}], {len(v)} runs | {verdict(m >= 2)} |")
    v = vals.get(("ours_ws", "conns", "bytes_per_conn"))
    if v:
        m = statistics.median(v)
        out.append(f"| 15,000 idle WebSocket connections ≤ 1 KiB RSS each | {m:,.0f} bytes "
                   f"[{min(v):,.0f}–{max(v):,.0f}], {len(v)} runs | {verdict(m <= 1024)} |")
    out.append("")
    return "\n".join(out)


def nice_max(v):
    if v <= 0:
        return 1.0
    import math

    exp = math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * 10**exp >= v:
            return m * 10**exp
    return 10 ** (exp + 1)


def num(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def svg(vals, med, title_note, panels=PANELS,
        title="repod echo_server vs baselines (medians, loopback)"):
    pw, ph = 360, 250  # panel size
    cols = 3
    rows_n = (len(panels) + cols - 1) // cols
    top = 70
    legend_h = 30
    width, height = pw * cols + 20, top + ph * rows_n + legend_h + 10
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="26" text-anchor="middle" font-size="18" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<text x="{width / 2}" y="46" text-anchor="middle" font-size="12" fill="#555">'
        f"{escape(title_note)}</text>",
    ]
    for i, (label, field, title, unit, scale, better, target) in enumerate(panels):
        px = 10 + (i % cols) * pw
        py = top + (i // cols) * ph
        servers = [s for s in SERVERS if (s, label, field) in vals]
        o.append(f'<g transform="translate({px},{py})">')
        o.append(f'<text x="{pw / 2}" y="0" text-anchor="middle" font-size="13" font-weight="bold">'
                 f"{escape(title)}</text>")
        o.append(f'<text x="{pw / 2}" y="15" text-anchor="middle" font-size="11" fill="#555">'
                 f"{escape(unit)}, {better} is better</text>")
        x0, y0, cw, chh = 45, 30, pw - 60, ph - 80  # chart area
        if not servers:
            o.append(f'<text x="{pw / 2}" y="{y0 + chh / 2}" text-anchor="middle" font-size="12">'
                     "no data</text></g>")
            continue
        tgt = target(med) if target else None
        hi = max(max(vals[(s, label, field)]) for s in servers) * scale
        if tgt:
            hi = max(hi, tgt[0] * scale)
        top_v = nice_max(hi * 1.08)
        ys = lambda v: y0 + chh - (v / top_v) * chh  # noqa: E731
        for k in range(5):
            gv = top_v * k / 4
            y = ys(gv)
            o.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + cw}" y2="{y:.1f}" stroke="#e9ecef"/>')
            o.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#666">'
                     f"{num(gv)}</text>")
        slot = cw / len(servers)
        bw = min(44, slot * 0.7)
        for j, s in enumerate(servers):
            v = vals[(s, label, field)]
            m = statistics.median(v) * scale
            cx = x0 + slot * (j + 0.5)
            y = ys(m)
            o.append(f'<rect x="{cx - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                     f'height="{y0 + chh - y:.1f}" fill="{COLORS[s]}"/>')
            if len(v) > 1:
                lo, hi_ = min(v) * scale, max(v) * scale
                o.append(f'<line x1="{cx:.1f}" y1="{ys(lo):.1f}" x2="{cx:.1f}" y2="{ys(hi_):.1f}" '
                         'stroke="#212529" stroke-width="1"/>')
            o.append(f'<text x="{cx:.1f}" y="{min(y, ys(max(v) * scale)) - 4:.1f}" text-anchor="middle" '
                     f'font-size="11" font-weight="{"bold" if s == "ours" else "normal"}">{num(m)}</text>')
            o.append(f'<text x="{cx:.1f}" y="{y0 + chh + 14}" text-anchor="middle" font-size="10">'
                     f"{escape(SHORT[s])}</text>")
        o.append(f'<line x1="{x0}" y1="{y0 + chh}" x2="{x0 + cw}" y2="{y0 + chh}" stroke="#333"/>')
        if tgt:
            ty = ys(tgt[0] * scale)
            o.append(f'<line x1="{x0}" y1="{ty:.1f}" x2="{x0 + cw}" y2="{ty:.1f}" stroke="#c92a2a" '
                     'stroke-width="1.5" stroke-dasharray="5,3"/>')
            o.append(f'<text x="{x0 + cw}" y="{y0 + chh + 30}" text-anchor="end" font-size="10" '
                     f'fill="#c92a2a">- - {escape(tgt[1])} ({num(tgt[0] * scale)})</text>')
        o.append("</g>")
    ly = height - legend_h + 5
    lx = 20
    present = {k[0] for k in vals}
    # Every TCP server (as always), and the WebSocket ones that ran; the WebSocket set's chart
    # lists only the servers it has.
    legend = [s for s in SERVERS if s in present or (panels is PANELS and s not in WS_SERVERS)]
    for s in legend:
        o.append(f'<rect x="{lx}" y="{ly}" width="14" height="14" fill="{COLORS[s]}"/>')
        o.append(f'<text x="{lx + 19}" y="{ly + 12}" font-size="12">{escape(NAMES[s])}</text>')
        lx += 40 + 7 * len(NAMES[s])
    o.append(f'<text x="{lx + 10}" y="{ly + 12}" font-size="11" fill="#555">'
             "bar: median; thin line: min–max of runs</text>")
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main(argv):
    out_svg = None
    paths = []
    it = iter(argv)
    for a in it:
        if a == "--svg":
            out_svg = next(it)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            paths.append(a)
    if not paths:
        found = sorted(glob.glob(os.path.join(HERE, "results", "*.jsonl")))
        if not found:
            print("no results: run benches/run_benchmarks.sh first", file=sys.stderr)
            return 1
        paths = [found[-1]]
    rows, errors = load(paths)
    vals = collect(rows)
    med = {k: statistics.median(v) for k, v in vals.items()}
    pins = sorted({r.get("pin") for r in rows})
    runs = max((len(v) for v in vals.values()), default=0)
    note = (f"{', '.join(os.path.basename(p) for p in paths)}: up to {runs} runs per server and scenario; "
            + ("server on CPU 0, loadgen on CPU 1" if pins == [1] else "not pinned" if pins == [0]
               else "server and loadgen both on CPU 0" if pins == [2] else "mixed pinning")
            + ("; every CPU kept awake (WARM=1)" if any(r.get("warm") for r in rows) else ""))
    print(markdown(vals, med, errors, rows))
    ws_set = any(k[0] in WS_SERVERS for k in vals) and not any(k[0] in TCP_BASELINES for k in vals)
    if out_svg is None:
        out_svg = os.path.join(HERE, "bench-ws.svg" if ws_set else "bench.svg")
    with open(out_svg, "w", encoding="utf-8") as f:
        if ws_set:
            panels = [p for p in WS_PANELS if any((s, p[0], p[1]) in vals for s in SERVERS)]
            f.write(svg(vals, med, note, panels,
                        "repod echo_server over WebSocket vs tokio-tungstenite and our TCP "
                        "(medians, loopback)"))
        else:
            f.write(svg(vals, med, note))
    print(f"wrote {os.path.relpath(out_svg)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
