#!/usr/bin/env python3
# How to run: python3 benches/load/chart.py RESULTS.csv docs/perf.svg   (CSV from RESULTS_CSV of benches/load/variants or proxy-bench)
"""Draws req/s and p99 latency per proxy per variant as grouped bars in one SVG file.

Reads either CSV the load benchmarks write with RESULTS_CSV=path:
  benches/load/variants  columns variant, proxy, rps_median, p99_us, us_per_req, ...
  benches/load/proxy-bench (the shared harness)  columns variant, target, rps_median, p99_us,
                                                 proxy_cpu_us_per_req, ...
One panel per metric (--panels rps,p99 by default; `cpu` adds CPU µs per request, the figure to
rank proxies by on a 2-core machine), one group of bars per variant, one colour per proxy. The SVG
is written by hand, so the script needs nothing beyond Python's standard library.
"""

import argparse
import csv
import math
import sys
from xml.sax.saxutils import escape

# Known proxies keep their colour from chart to chart; others take the spares in turn.
COLOURS = {"nginx": "#4e9a06", "haproxy": "#3465a4", "direct": "#999999"}
OURS = "#d95f02"
SPARE = ["#75507b", "#c4a000", "#06989a", "#a40000", "#5c3566"]

PANELS = {
    # name: (CSV columns to try, axis label, scale applied to the value, tick/label format)
    "rps": (("rps_median",), "requests per second (median)", 1.0, "k"),
    "p99": (("p99_us",), "p99 latency, ms (median)", 1e-3, "ms"),
    "cpu": (("us_per_req", "proxy_cpu_us_per_req"), "proxy CPU per request, µs (median)", 1.0, "us"),
}

FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"
BAR_W = 26
BAR_GAP = 2
GROUP_GAP = 28
PANEL_H = 230
LEFT = 78
RIGHT = 20
TOP_LEGEND = 54


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        proxy_col = "proxy" if "proxy" in fields else "target" if "target" in fields else None
        if "variant" not in fields or proxy_col is None:
            raise SystemExit(f"chart.py: {path} has no variant and proxy/target columns (fields: {fields})")
        rows = []
        for row in reader:
            row["proxy"] = row[proxy_col]
            rows.append(row)
    if not rows:
        raise SystemExit(f"chart.py: {path} has no rows")
    return rows


def value(row, columns, scale):
    for col in columns:
        raw = (row.get(col) or "").strip()
        if raw and raw != "-":
            try:
                return float(raw) * scale
            except ValueError:
                return None
    return None


def nice_step(top, ticks=5):
    """A 1-2-5 step that puts about `ticks` gridlines under `top`."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt(v, kind):
    if kind == "k":
        return f"{v / 1000:.0f}k" if v >= 10000 else f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if kind == "ms":
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def tick(t, step, kind):
    """Gridline labels with as many decimals as the step needs (0, 0.5, 1 rather than 0.00)."""
    if kind == "k" and step >= 100:
        t, step, suffix = t / 1000, step / 1000, "k"
    else:
        suffix = ""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{t:.{decimals}f}{suffix}" if t else "0"


def colour_for(proxies):
    spare = iter(SPARE * 4)
    out = {}
    for p in proxies:
        out[p] = COLOURS.get(p) or (OURS if p in ("gatehouse", "ours") else next(spare))
    return out


def panel(svg, y0, width, variants, proxies, data, spec, colours):
    """One bar chart: `data[(variant, proxy)]` values, groups along x, a labelled y axis."""
    _, label, _, kind = spec
    plot_h = PANEL_H - 50
    base = y0 + 10 + plot_h
    top_value = max([v for v in data.values() if v is not None] or [1])
    step = nice_step(top_value)
    y_max = step * math.ceil(top_value / step * 1.08)  # headroom for value labels
    scale = plot_h / y_max
    right = width - RIGHT
    # Gridlines and tick labels first, so bars draw over them.
    for n in range(round(y_max / step) + 1):
        t = n * step
        y = base - t * scale
        svg.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>')
        svg.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">{tick(t, step, kind)}</text>')
    mid = y0 + 10 + plot_h / 2
    svg.append(f'<text x="16" y="{mid:.1f}" transform="rotate(-90 16 {mid:.1f})" text-anchor="middle" '
               f'font-size="12" fill="#222">{escape(label)}</text>')
    group_w = len(proxies) * (BAR_W + BAR_GAP) - BAR_GAP
    slot = (right - LEFT) / len(variants)  # groups spread evenly over the plot's width
    for k, v in enumerate(variants):
        x = LEFT + k * slot + (slot - group_w) / 2
        for i, p in enumerate(proxies):
            val = data.get((v, p))
            if val is None:
                continue
            bx = x + i * (BAR_W + BAR_GAP)
            h = val * scale
            svg.append(f'<rect x="{bx:.1f}" y="{base - h:.1f}" width="{BAR_W}" height="{h:.1f}" fill="{colours[p]}">'
                       f'<title>{escape(f"{v} / {p}: {fmt(val, kind)}")}</title></rect>')
            svg.append(f'<text x="{bx + BAR_W / 2:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" font-size="9" '
                       f'fill="#333">{fmt(val, kind)}</text>')
        svg.append(f'<text x="{x + group_w / 2:.1f}" y="{base + 16:.1f}" text-anchor="middle" font-size="12" '
                   f'fill="#222">{escape(v)}</text>')
    svg.append(f'<line x1="{LEFT}" y1="{base}" x2="{right}" y2="{base}" stroke="#333" stroke-width="1"/>')
    svg.append(f'<line x1="{LEFT}" y1="{y0 + 10}" x2="{LEFT}" y2="{base}" stroke="#333" stroke-width="1"/>')


def render(rows, panels, title):
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    proxies = list(dict.fromkeys(r["proxy"] for r in rows))
    colours = colour_for(proxies)
    group_w = len(proxies) * (BAR_W + BAR_GAP) - BAR_GAP
    legend_w = sum(30 + 7 * len(p) for p in proxies)
    # Wide enough for the bars, the title and the legend (about 9.5 px per character, bold at 15 px).
    width = round(max(LEFT + RIGHT + len(variants) * (group_w + GROUP_GAP), LEFT + 9.5 * len(title) + RIGHT,
                      LEFT + legend_w + RIGHT))
    height = TOP_LEGEND + len(panels) * PANEL_H + 10
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="{FONT}">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold" fill="#111">{escape(title)}</text>',
    ]
    # Legend: one swatch per proxy, in the order the bars stand in each group.
    lx = LEFT
    for p in proxies:
        svg.append(f'<rect x="{lx}" y="32" width="12" height="12" fill="{colours[p]}"/>')
        svg.append(f'<text x="{lx + 17}" y="42" font-size="12" fill="#222">{escape(p)}</text>')
        lx += 30 + 7 * len(p)
    for n, name in enumerate(panels):
        spec = PANELS[name]
        data = {(r["variant"], r["proxy"]): value(r, spec[0], spec[2]) for r in rows}
        if all(v is None for v in data.values()):
            raise SystemExit(f"chart.py: no {name} figures in the CSV (columns {', '.join(spec[0])})")
        panel(svg, TOP_LEGEND + n * PANEL_H, width, variants, proxies, data, spec, colours)
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="RESULTS_CSV of benches/load/variants or benches/load/proxy-bench")
    parser.add_argument("svg", help="where to write the chart, e.g. docs/perf.svg")
    parser.add_argument("--panels", default="rps,p99", help="comma list of rps, p99, cpu (default rps,p99)")
    parser.add_argument("--title", default="Gatehouse, nginx and HAProxy on one core (wrk, loopback)")
    parser.add_argument("--proxies", help="comma list: only these proxies, in this order (e.g. nginx,haproxy,gatehouse)")
    args = parser.parse_args(argv)
    panels = [p.strip() for p in args.panels.split(",") if p.strip()]
    unknown = [p for p in panels if p not in PANELS]
    if unknown or not panels:
        parser.error(f"unknown panel(s) {unknown}; known: {', '.join(PANELS)}")
    rows = read_rows(args.csv)
    if args.proxies:
        order = [p.strip() for p in args.proxies.split(",")]
        rows = sorted((r for r in rows if r["proxy"] in order), key=lambda r: order.index(r["proxy"]))
        if not rows:
            parser.error(f"none of {order} in {args.csv}")
    # Variants keep the CSV's order even when rows were re-sorted by proxy.
    variant_order = list(dict.fromkeys(r["variant"] for r in read_rows(args.csv)))
    rows.sort(key=lambda r: variant_order.index(r["variant"]))
    with open(args.svg, "w") as f:
        f.write(render(rows, panels, args.title))
    print(f"chart.py: wrote {args.svg} ({len(rows)} bars per panel, panels {', '.join(panels)})", file=sys.stderr)


if __name__ == "__main__":
    main()
