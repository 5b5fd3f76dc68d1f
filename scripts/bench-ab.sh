#!/usr/bin/env bash
# bench-ab.sh: one Go benchmark of two revisions, side by side in one run.
#
#   scripts/bench-ab.sh BASE PKG BENCH [ROUNDS] [BENCHTIME]
#   scripts/bench-ab.sh 7502b87 ./engines/etcd 'ServiceCycle$' 8 4s
#
# Builds PKG's test binary at BASE (in a temporary worktree) and from the
# working tree, then runs BENCH with each in ROUNDS interleaved rounds,
# alternating which goes first (this machine's speed drifts by tens of
# percent within minutes, so a "before" measured now and an "after"
# measured later would compare two machines). Prints every run, then the
# median of each side and the median of the per-round ratios new/base.
set -euo pipefail

if [ $# -lt 3 ]; then
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
fi
base=$1 pkg=$2 bench=$3 rounds=${4:-5} benchtime=${5:-3s}
GO=${GO:-go}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git -C "$root" worktree add --detach "$work/base" "$base" >/dev/null
(cd "$work/base" && $GO test -c -o "$work/base.test" "$pkg")
(cd "$root" && $GO test -c -o "$work/new.test" "$pkg")

results=$work/results
: >"$results"
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="base new"; else order="new base"; fi
	for side in $order; do
		# ns/op of every benchmark line, tagged with round and side.
		"$work/$side.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" -test.benchmem |
			awk -v r="$r" -v s="$side" '/^Benchmark/ { for (i = 3; i <= NF; i++) if ($i == "ns/op") print r, s, $1, $(i-1) }' |
			tee -a "$results"
	done
done

echo
echo "medians (ns/op; lower is faster) and the median of per-round ratios new/base:"
awk '
	{ key = $3; v[key, $2, $1] = $4; names[key] = 1; if ($1 > n) n = $1 }
	function median(a, k,   i, j, t) {
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	END {
		for (key in names) {
			kb = kn = kr = 0
			for (r = 1; r <= n; r++) {
				b = v[key, "base", r]; w = v[key, "new", r]
				if (b != "") base[++kb] = b
				if (w != "") nw[++kn] = w
				if (b != "" && w != "") ratio[++kr] = w / b
			}
			printf "%s: base %.0f, new %.0f ns/op; new/base per round: median %.3f (%d rounds)\n",
				key, median(base, kb), median(nw, kn), median(ratio, kr), kr
		}
	}' "$results"
