#!/usr/bin/env python3
"""Turn perf/run.sh raw measurements into a Markdown table and an SVG bar chart.

Standard library only. Usage (run.sh does this):
  report.py --raw raw.tsv --meta meta.txt --commands commands.txt \
            --twemproxy-conf nutcracker.yml --out-dir perf/results
Re-render from a saved run:  report.py --raw perf/results/latest.tsv --out-dir DIR
(meta/commands are optional; without them the header is shorter).
"""
import argparse
import csv
import os
import shutil
import statistics
from html import escape

TARGETS = ["direct", "twemproxy", "proxy-cache", "proxy-nocache"]
LABELS = {
    "direct": "redis-server (direct)",
    "twemproxy": "twemproxy",
    "proxy-cache": "redis-proxy (cache)",
    "proxy-nocache": "redis-proxy (--capacity 0)",
}
COLORS = {
    "direct": "#8c8c8c",
    "twemproxy": "#e08a2c",
    "proxy-cache": "#1f6fb4",
    "proxy-nocache": "#8fc1e8",
}
CASES = [("GET", "100"), ("GET", "1"), ("SET", "100"), ("SET", "1")]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def load_raw(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load_meta(path):
    meta = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


def aggregate(rows, clk_tck):
    """(section, target, test, pipeline) -> medians over rounds."""
    groups = {}
    for r in rows:
        key = (r["section"], r["target"], r["test"].upper(), r["pipeline"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        def per_mop(field, r):
            t, n = num(r[field]), num(r["n"])
            if t is None or not n or num(r["rps"]) is None:
                return None
            return (t / clk_tck) / (n / 1e6)

        out[key] = {
            "rps": median(num(r["rps"]) for r in rs),
            "p50": median(num(r["p50_ms"]) for r in rs),
            "p99": median(num(r["p99_ms"]) for r in rs),
            "server_cpu": median(per_mop("server_ticks", r) for r in rs),
            "redis_cpu": median(per_mop("redis_ticks", r) for r in rs),
            "n": rs[0]["n"],
            "rounds": len(rs),
        }
    return out


def f_rps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def f_ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def f_num(v, d=2):
    return "n/a" if v is None else f"{v:.{d}f}"


def main_table(agg):
    hdr = ["Target", "Test", "-P", "ops/s", "vs direct", "vs twemproxy",
           "server CPU s/Mop", "redis CPU s/Mop (behind)", "total CPU s/Mop",
           "p50 ms", "p99 ms"]
    lines = ["| " + " | ".join(hdr) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|"]
    for test, pipe in CASES:
        d = agg.get(("main", "direct", test, pipe), {}).get("rps")
        tw = agg.get(("main", "twemproxy", test, pipe), {}).get("rps")
        for t in TARGETS:
            a = agg.get(("main", t, test, pipe))
            if not a:
                continue
            srv, red = a["server_cpu"], a["redis_cpu"]
            if t == "direct":
                red_s, tot = "—", srv
            else:
                red_s = f_num(red)
                tot = None if srv is None or red is None else srv + red
            lines.append("| " + " | ".join([
                LABELS[t], test, pipe, f_rps(a["rps"]), f_ratio(a["rps"], d),
                f_ratio(a["rps"], tw), f_num(srv), red_s, f_num(tot),
                f_num(a["p50"], 3), f_num(a["p99"], 3)]) + " |")
    return "\n".join(lines)


def scaling_table(agg):
    rows = sorted((k, v) for k, v in agg.items() if k[0] == "scaling")
    if not rows:
        return None
    base = agg.get(("scaling", "proxy-cache-t1", "GET", "100"), {}).get("rps")
    hdr = ["Proxy", "Test", "-P", "ops/s", "vs --threads 1", "server CPU s/Mop",
           "redis CPU s/Mop (behind)", "p50 ms", "p99 ms"]
    lines = ["| " + " | ".join(hdr) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|"]
    for (_, t, test, pipe), a in rows:
        label = t.replace("proxy-cache-t", "redis-proxy (cache) --threads ")
        lines.append("| " + " | ".join([
            label, test, pipe, f_rps(a["rps"]), f_ratio(a["rps"], base),
            f_num(a["server_cpu"]), f_num(a["redis_cpu"]),
            f_num(a["p50"], 3), f_num(a["p99"], 3)]) + " |")
    return "\n".join(lines)


def machine_line(meta):
    parts = []
    if meta.get("cpu"):
        parts.append(meta["cpu"])
    if meta.get("cores"):
        parts.append(f"{meta['cores']} cores")
    if meta.get("kernel"):
        parts.append(f"Linux {meta['kernel']}")
    if meta.get("redis"):
        parts.append(f"redis {meta['redis']}")
    return ", ".join(parts)


def write_md(path, agg, meta, commands, tw_conf):
    out = ["# redis-proxy benchmark: latest run", ""]
    if meta:
        out += [
            f"- Date: {meta.get('date', '?')}",
            f"- Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, "
            f"kernel {meta.get('kernel', '?')}",
            f"- redis-server {meta.get('redis', '?')}, redis-benchmark "
            f"{meta.get('redis_benchmark', '?')}, nutcracker (twemproxy) {meta.get('nutcracker', '?')}",
            f"- Proxy: `{meta.get('proxy_bin', '?')}` at git {meta.get('proxy_rev', '?')}, "
            f"`--threads {meta.get('proxy_threads', '?')}` in the main table",
            f"- Load: {meta.get('clients', '?')} clients, {meta.get('keyspace', '?')} keys, "
            f"{meta.get('datasize', '?')}-byte values; PERF_SCALE={meta.get('scale', '?')}, "
            f"PERF_ROUNDS={meta.get('rounds', '?')} (medians over rounds)",
            "",
        ]
    out += [
        "## Throughput, CPU and latency",
        "",
        main_table(agg),
        "",
        "- *vs direct* / *vs twemproxy*: ops/s divided by redis-server direct / twemproxy "
        "ops/s for the same test and pipeline depth.",
        "- *server CPU s/Mop*: CPU seconds (user+sys, all threads, from /proc/PID/stat) of the "
        "process the benchmark talks to, per million requests. *redis CPU s/Mop (behind)*: the "
        "backing redis-server's CPU during the same run; *total* = both.",
        "- GET through `redis-proxy (cache)` is served from a pre-warmed cache (all keys "
        "hits). SET is forwarded by both redis-proxy variants.",
        "- p50/p99: redis-benchmark's per-request latency percentiles (ms).",
        "",
    ]
    st = scaling_table(agg)
    if st:
        out += ["## Thread scaling (redis-proxy with cache, GET -P 100)", "", st, "",
                f"The machine has {meta.get('cores', '?')} cores, shared with the "
                "single-threaded redis-benchmark client.", ""]
    if commands:
        out += ["## Command lines", "", "```", commands.rstrip("\n"), "```", ""]
    if tw_conf:
        out += ["twemproxy config (`$TMP/nutcracker.yml`):", "", "```yaml",
                tw_conf.rstrip("\n"), "```", ""]
    out += ["Chart: [latest.svg](latest.svg). Raw per-run data: [latest.tsv](latest.tsv).", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))
    return "\n".join(out)


def nice_max(v):
    for step in (0.25, 0.5, 1, 2, 5, 10, 20, 50):
        top = step * (int(v / step) + 1)
        if top / step <= 8:
            return top, step
    return v, v / 4


def write_svg(path, agg, meta):
    W, H = 920, 520
    left, right, top, bottom = 70, 20, 110, 70
    pw, ph = W - left - right, H - top - bottom
    ratios = {}
    for test, pipe in CASES:
        d = agg.get(("main", "direct", test, pipe), {}).get("rps")
        for t in TARGETS:
            r = agg.get(("main", t, test, pipe), {}).get("rps")
            ratios[(test, pipe, t)] = r / d if r is not None and d else None
    vmax = max([v for v in ratios.values() if v is not None] + [1.0])
    ymax, step = nice_max(vmax * 1.08)

    def y(v):
        return top + ph - ph * v / ymax

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif">',
         f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
         f'<text x="{W / 2}" y="28" text-anchor="middle" font-size="19" font-weight="bold">'
         'Throughput relative to redis-server direct (higher is better)</text>']
    sub = machine_line(meta)
    if sub:
        s.append(f'<text x="{W / 2}" y="50" text-anchor="middle" font-size="12" fill="#444">'
                 f'{escape(sub)}</text>')
    if meta.get("date"):
        s.append(f'<text x="{W / 2}" y="67" text-anchor="middle" font-size="12" fill="#444">'
                 f'{escape(meta["date"])} · {escape(meta.get("clients", "?"))} clients, '
                 f'{escape(meta.get("datasize", "?"))}-byte values · redis-proxy --threads '
                 f'{escape(meta.get("proxy_threads", "?"))} · scale {escape(meta.get("scale", "?"))}'
                 '</text>')
    # legend
    lx = left
    for t in TARGETS:
        s.append(f'<rect x="{lx}" y="82" width="14" height="14" fill="{COLORS[t]}"/>')
        s.append(f'<text x="{lx + 19}" y="94" font-size="13">{escape(LABELS[t])}</text>')
        lx += 26 + 7.4 * len(LABELS[t])
    # grid + y axis
    v = 0.0
    while v <= ymax + 1e-9:
        yy = y(v)
        s.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{W - right}" y2="{yy:.1f}" '
                 f'stroke="#e3e3e3"/>')
        s.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" font-size="12">'
                 f'{v:g}x</text>')
        v += step
    s.append(f'<line x1="{left}" y1="{y(1):.1f}" x2="{W - right}" y2="{y(1):.1f}" '
             'stroke="#555" stroke-dasharray="5,4"/>')
    s.append(f'<text transform="translate(18,{top + ph / 2}) rotate(-90)" text-anchor="middle" '
             'font-size="13">ops/s ÷ redis-server direct ops/s</text>')
    # bars
    gw = pw / len(CASES)
    bw = gw * 0.8 / len(TARGETS)
    for gi, (test, pipe) in enumerate(CASES):
        gx = left + gi * gw + gw * 0.1
        for ti, t in enumerate(TARGETS):
            r = ratios[(test, pipe, t)]
            x = gx + ti * bw
            if r is None:
                s.append(f'<text x="{x + bw / 2:.1f}" y="{y(0) - 6:.1f}" text-anchor="middle" '
                         'font-size="11" fill="#a00">n/a</text>')
                continue
            s.append(f'<rect x="{x + 2:.1f}" y="{y(r):.1f}" width="{bw - 4:.1f}" '
                     f'height="{y(0) - y(r):.1f}" fill="{COLORS[t]}"><title>'
                     f'{escape(LABELS[t])} {test} -P {pipe}: '
                     f'{f_rps(agg[("main", t, test, pipe)]["rps"])} ops/s</title></rect>')
            s.append(f'<text x="{x + bw / 2:.1f}" y="{y(r) - 5:.1f}" text-anchor="middle" '
                     f'font-size="12">{r:.2f}</text>')
        d = agg.get(("main", "direct", test, pipe), {}).get("rps")
        cx = left + gi * gw + gw / 2
        s.append(f'<text x="{cx:.1f}" y="{top + ph + 22}" text-anchor="middle" font-size="14" '
                 f'font-weight="bold">{test} -P {pipe}</text>')
        s.append(f'<text x="{cx:.1f}" y="{top + ph + 40}" text-anchor="middle" font-size="11" '
                 f'fill="#555">direct = {f_rps(d)} ops/s</text>')
    s.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{W - right}" y2="{y(0):.1f}" stroke="#333"/>')
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta")
    ap.add_argument("--commands")
    ap.add_argument("--twemproxy-conf")
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()

    rows = load_raw(a.raw)
    meta = load_meta(a.meta)
    clk = float(meta.get("clk_tck") or os.sysconf("SC_CLK_TCK"))
    agg = aggregate(rows, clk)
    commands = open(a.commands).read() if a.commands and os.path.exists(a.commands) else ""
    tw_conf = (open(a.twemproxy_conf).read()
               if a.twemproxy_conf and os.path.exists(a.twemproxy_conf) else "")

    os.makedirs(a.out_dir, exist_ok=True)
    raw_out = os.path.join(a.out_dir, "latest.tsv")
    if os.path.abspath(a.raw) != os.path.abspath(raw_out):
        shutil.copyfile(a.raw, raw_out)
    md = write_md(os.path.join(a.out_dir, "latest.md"), agg, meta, commands, tw_conf)
    write_svg(os.path.join(a.out_dir, "latest.svg"), agg, meta)
    print(md)


if __name__ == "__main__":
    main()
