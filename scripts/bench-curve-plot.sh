#!/usr/bin/env bash
# Draws latency against throughput from a curve JSON that
# scripts/bench-compare.sh wrote (docs/bench-curve.json by default), without
# running anything: one line per engine or peer, p50 solid and p99 dashed,
# both axes logarithmic. Needs gnuplot (installed with apt-get when missing)
# and python3.
#
#   scripts/bench-curve-plot.sh docs/bench-curve.json              # writes docs/bench-curve.png
#   scripts/bench-curve-plot.sh docs/bench-curve.json other.png
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 CURVE.json [OUT.png]" >&2
	exit 2
fi
in=$1
out=${2:-${in%.json}.png}
if ! command -v gnuplot >/dev/null; then
	echo "bench-curve-plot: installing gnuplot-nox" >&2
	apt-get install -y gnuplot-nox >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y gnuplot-nox >/dev/null 2>&1; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The JSON becomes a data file (one block per series, points in the order
# of the offered rate) and the gnuplot program that draws it.
python3 - "$in" "$tmp/curve.dat" "$out" >"$tmp/curve.gp" <<'PY'
import json, sys

src, dat, out = sys.argv[1:4]
d = json.load(open(src))
# Colours of the Okabe-Ito palette (told apart with colour blindness too);
# Locklock's engines filled circles, the peers open squares.
style = {
    "memory": ("#0072B2", 7), "badger": ("#D55E00", 7), "etcd": ("#009E73", 7),
    "redis": ("#000000", 4), "etcd-mutex": ("#E69F00", 4),
}
def q(s):  # a gnuplot single-quoted string
    return "'" + str(s).replace("'", "''") + "'"
def qq(lines):  # a gnuplot double-quoted string of several lines
    return '"' + "\\n".join(str(l).replace("\\", "\\\\").replace('"', '\\"') for l in lines) + '"'

series = [s for s in d["series"] if any(p["engine"] == s["engine"] for p in d["points"])]
with open(dat, "w") as f:
    for s in series:
        f.write(f"# {s['engine']}: achieved p50_ms p99_ms offered\n")
        pts = sorted((p for p in d["points"] if p["engine"] == s["engine"]), key=lambda p: p["offered"])
        for p in pts:
            if p["achieved"] > 0 and p["p50_ms"] > 0:
                f.write(f"{p['achieved']} {p['p50_ms']} {p['p99_ms']} {p['offered']}\n")
        f.write("\n\n")

cores = "server on CPU 0, load on CPU 1 (pinned)" if d["pinned"] else "server and load sharing all cores (not pinned)"
title = [f"Locklock and peers: acquire latency against throughput, {d['concurrency']} clients, open loop",
         f"{d['date']} · commit {d['commit']} · {cores} · {d['step_seconds']:g} s a step"]
print(f"""set terminal pngcairo size 1280,860 font 'DejaVu Sans,11' linewidth 1.4 noenhanced
set output {q(out)}
set title {qq(title)}
set logscale xy
set xlabel 'achieved lock cycles/s (acquire + release), log scale'
set ylabel 'acquire latency, ms, from when the cycle was due (log scale)'
set format x '%.0s%c'
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0
set xlabel offset 0,0.3
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key below center horizontal maxcols 3 Left reverse spacing 1.2 width 2
set datafile separator whitespace""")
# Ticks at 1, 2 and 5 of each decade the data spans, labelled (gnuplot
# labels only the decades of a log axis).
xs = [p["achieved"] for p in d["points"] if p["achieved"] > 0]
if xs:
    import math
    ticks = []
    for e in range(math.floor(math.log10(min(xs))) - 1, math.ceil(math.log10(max(xs))) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            label = f"{v // 1000}k" if v >= 1000 else str(v)
            ticks.append(f"'{label}' {v}")
    print("set xtics (" + ", ".join(ticks) + ")")
plots = []
for i, s in enumerate(series):
    color, pt = style.get(s["engine"], ("#666666", 8))
    plots.append(f"{q(dat)} index {i} using 1:2 with linespoints lc rgb {q(color)} lw 2 pt {pt} ps 1.1 dt 1 title {q(s['label'])}")
    plots.append(f"{q(dat)} index {i} using 1:3 with linespoints lc rgb {q(color)} lw 2 pt {pt} ps 1.1 dt 2 notitle")
# The two line styles, explained once in the legend.
plots.append("NaN with lines lc rgb 'white' title ' '")
plots.append("NaN with lines lc rgb '#444444' lw 2 dt 1 title 'p50 (solid)'")
plots.append("NaN with lines lc rgb '#444444' lw 2 dt 2 title 'p99 (dashed)'")
for a in d.get("absent", []):
    plots.append(f"NaN with lines lc rgb 'white' title {q('absent: ' + a['peer'])}")
print("plot " + ", \\\n     ".join(plots))
PY
gnuplot "$tmp/curve.gp"
echo "bench-curve-plot: wrote $out" >&2
