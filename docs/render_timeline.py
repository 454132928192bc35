#!/usr/bin/env python3
"""Renders a workpool timeline (Chrome trace-event JSON, as `examples/timeline.rs` writes it)
as an SVG picture, with the standard library only: one row per track (worker slots, then the
calling threads), a box per span (task, worker start, wait), a mark per death and timeout.

Perfetto's UI needs the network, which the machine this was made on does not have; this draws
the same events from the same file, so the picture is the data, not a mock-up.

    python3 docs/render_timeline.py timeline.json docs/timeline.svg
"""

import html
import os
import json
import sys

WIDTH, LEFT, RIGHT, ROW, TOP = 1100, 110, 70, 34, 40
PALETTE = ["#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7"]


def short(name):
    return name.rsplit("::", 1)[-1]


def main(src, dst):
    events = json.load(open(src))["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    tids = sorted(names)
    row = {tid: i for i, tid in enumerate(tids)}
    timed = [e for e in events if e.get("ph") in ("X", "i")]
    end = max(e["ts"] + e.get("dur", 0) for e in timed) or 1.0
    scale = (WIDTH - LEFT - RIGHT) / end
    colours, legend = {}, []

    def colour(name):
        if name not in colours:
            colours[name] = PALETTE[len(colours) % len(PALETTE)]
            legend.append(name)
        return colours[name]

    height = TOP + ROW * len(tids) + 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="16" font-size="13">workpool timeline: {html.escape(os.path.basename(src))} '
           f'({end / 1000:.0f} ms)</text>']
    for tid in tids:
        y = TOP + row[tid] * ROW
        out.append(f'<rect x="{LEFT}" y="{y}" width="{WIDTH - LEFT - RIGHT}" height="{ROW - 8}" fill="#f3f3f3"/>')
        out.append(f'<text x="8" y="{y + ROW / 2}">{html.escape(names[tid])}</text>')
    # Spans; neighbours of one name closer than a pixel are drawn as one box (thousands of tiny
    # tasks would otherwise be thousands of invisible boxes).
    boxes = {}
    for e in sorted((e for e in timed if e["ph"] == "X" and e["tid"] in row), key=lambda e: e["ts"]):
        kind = {"spawn": "start worker", "wait": "wait"}.get(e.get("cat"), short(e["name"]))
        if e.get("args", {}).get("failed"):
            kind = short(e["name"]) + " (its worker died)"
        x0, x1 = LEFT + e["ts"] * scale, LEFT + (e["ts"] + e["dur"]) * scale
        key = (e["tid"], kind)
        last = boxes.setdefault(key, [])
        if last and x0 - last[-1][1] < 1.0 and x1 - x0 < 2.0 and last[-1][1] - last[-1][0] < 2.0:
            last[-1][1] = max(last[-1][1], x1)
            last[-1][2] += 1
        else:
            last.append([x0, x1, 1])
    fixed = {"start worker": "#bab0ac", "wait": "#d3d3d3"}
    for (tid, kind), spans in boxes.items():
        fill = "#e15759" if "died" in kind else fixed.get(kind) or colour(kind)
        if kind in fixed and kind not in legend:
            colours[kind] = fill
            legend.append(kind)
        y = TOP + row[tid] * ROW + 2
        for x0, x1, n in spans:
            title = f"{kind} × {n}" if n > 1 else kind
            out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.8):.1f}" height="{ROW - 12}" '
                       f'fill="{fill}" stroke="white" stroke-width="0.6"><title>{html.escape(title)}</title></rect>')
            if x1 - x0 > 8 * len(kind):
                out.append(f'<text x="{x0 + 4:.1f}" y="{y + ROW / 2}" fill="white">{html.escape(kind)}</text>')
    # Instants: deaths (with the signal), timeouts, Ctrl-C.
    for e in timed:
        if e["ph"] != "i":
            continue
        x = LEFT + e["ts"] * scale
        if e.get("s") == "g":
            out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{TOP + ROW * len(tids)}" '
                       'stroke="#e15759" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{x + 3:.1f}" y="{TOP - 8}" fill="#e15759">{html.escape(e["name"])}</text>')
            continue
        if e["tid"] not in row or e["name"] not in ("death", "timeout"):
            continue
        y = TOP + row[e["tid"]] * ROW
        args = e.get("args", {})
        label = args.get("signal") or args.get("cause") or e["name"] if e["name"] == "death" else "timeout"
        stroke = "#e15759" if e["name"] == "death" else "#f28e2b"
        out.append(f'<line x1="{x:.1f}" y1="{y - 2}" x2="{x:.1f}" y2="{y + ROW - 6}" stroke="{stroke}" '
                   'stroke-width="2"/>')
        dy = 9 if e["name"] == "timeout" else ROW - 9
        out.append(f'<text x="{x + 3:.1f}" y="{y + dy}" fill="{stroke}" font-weight="bold">'
                   f'{html.escape(label)}</text>')
    # Time axis.
    axis = TOP + ROW * len(tids) + 4
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if end / 1000 / s <= 12)
    t = 0
    while t * 1000 <= end:
        x = LEFT + t * 1000 * scale
        out.append(f'<line x1="{x:.1f}" y1="{axis}" x2="{x:.1f}" y2="{axis + 5}" stroke="black"/>')
        out.append(f'<text x="{x:.1f}" y="{axis + 17}" text-anchor="middle">{t} ms</text>')
        t += step
    x = LEFT
    for kind in legend + ["death", "timeout"]:
        fill = {"death": "#e15759", "timeout": "#f28e2b"}.get(kind, colours.get(kind))
        out.append(f'<rect x="{x}" y="{axis + 30}" width="12" height="12" fill="{fill}"/>')
        out.append(f'<text x="{x + 16}" y="{axis + 40}">{html.escape(kind)}</text>')
        x += 24 + 7 * len(kind)
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) >= 3 else ["timeline.json", "docs/timeline.svg"]))
