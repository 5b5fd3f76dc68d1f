#!/usr/bin/env bash
# bench-etcd.sh: the etcd engine over HTTP beside etcd's own
# concurrency.Mutex, on the same etcd member, in one run.
#
#   scripts/bench-etcd.sh                 # pinned, then shared cores
#   PINS=1 ROUNDS=7 scripts/bench-etcd.sh # pinned only, 7 rounds
#   LL=/path/to/locklock scripts/bench-etcd.sh  # another build of the server
#
# One Debian etcd member (installed with apt-get when missing) and
# `locklock serve --engine etcd` on it; CONC (64) workers of `locklock bench
# --mode cycle` against the server, and CONC workers of scripts/peerload --kind etcd-mutex
# (concurrency.Mutex Lock + Unlock of fresh keys, one session each) against
# etcd itself, in ROUNDS interleaved rounds of DUR, alternating which goes
# first. PIN=1 runs the servers (etcd and locklock) on CPU 0 and the load
# generators on CPU 1, as scripts/bench-compare.sh does; PIN=0 lets all of
# them share both cores. Prints every round, the medians and the median of
# the per-round ratios engine ÷ Mutex.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONC=${CONC:-64}
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}
PINS=${PINS:-1 0}


. scripts/benchlib.sh
need etcd etcd-server

if [ -z "${LL:-}" ]; then
	CGO_ENABLED=0 $GO build -o "$work/locklock" ./cmd/locklock
	LL="$work/locklock"
fi
CGO_ENABLED=0 $GO build -o "$work/peerload" ./scripts/peerload

echo "machine: $(nproc) cores, $(uname -r), $($GO version | cut -d' ' -f3), $(etcd --version | head -1)"
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
results="$work/results.tsv" # pin, round, figure, value
for pin in $PINS; do
	if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
		SRV=(taskset -c 0)
		CLI=(taskset -c 1)
	else
		SRV=()
		CLI=()
	fi
	ec=$(port); ep=$(port); xp=$(port)
	"${SRV[@]}" etcd --name bench --data-dir "$work/etcd-$pin" --listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
		--listen-peer-urls "http://127.0.0.1:$ep" --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
		--initial-cluster "bench=http://127.0.0.1:$ep" >"$work/etcd-$pin.log" 2>&1 &
	etcd_pid=$!
	pids+=("$etcd_pid")
	waitfor "http://127.0.0.1:$ec/health"
	"${SRV[@]}" "$LL" serve --engine etcd --etcd-endpoints "http://127.0.0.1:$ec" --addr "127.0.0.1:$xp" --log-level warn ${SERVE_FLAGS:-} >"$work/serve-$pin.log" 2>&1 &
	ll_pid=$!
	pids+=("$ll_pid")
	waitfor "http://127.0.0.1:$xp/readyz"

	engine() {
		"${CLI[@]}" "$LL" bench --quiet --json --concurrency "$CONC" --server "http://127.0.0.1:$xp" --mode cycle --duration "$DUR" >"$work/engine.json"
		printf '%s\t%s\tengine\t%s\n' "$pin" "$round" "$(json "$work/engine.json" 'd["cycles_per_second"]')" >>"$results"
		printf '%s\t%s\tengine_p99\t%s\n' "$pin" "$round" "$(json "$work/engine.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')" >>"$results"
	}
	mutex() {
		"${CLI[@]}" "$work/peerload" -kind etcd-mutex -addr "127.0.0.1:$ec" -concurrency "$CONC" -duration "$DUR" >"$work/mutex.json"
		printf '%s\t%s\tmutex\t%s\n' "$pin" "$round" "$(json "$work/mutex.json" 'd["cycles_per_second"]')" >>"$results"
		printf '%s\t%s\tmutex_p99\t%s\n' "$pin" "$round" "$(json "$work/mutex.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')" >>"$results"
	}
	for round in $(seq 1 "$ROUNDS"); do
		if [ $((round % 2)) = 1 ]; then engine; mutex; else mutex; engine; fi
		echo "PIN=$pin round $round: $(awk -v p="$pin" -v r="$round" -F'\t' '$1 == p && $2 == r {printf "%s=%s ", $3, $4}' "$results")"
	done
	kill "$ll_pid" "$etcd_pid"; wait "$ll_pid" "$etcd_pid" 2>/dev/null || true
done
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(sys.argv[1]):
    pin, r, k, v = line.rstrip("\n").split("\t")
    runs[pin][r][k] = float(v)
print()
print("| etcd, 1 member (64 concurrent clients) | cores | cycles/s (median) | p99 (median) | every round |")
print("|---|---|---|---|---|")
names = {"engine": "locklock, etcd engine, HTTP (locklock bench)", "mutex": "etcd concurrency.Mutex Lock+Unlock, same etcd (scripts/peerload --kind etcd-mutex)"}
cores = {"1": "pinned", "0": "shared"}
for pin, rounds in runs.items():
    for k in ("engine", "mutex"):
        vals = [d[k] for d in rounds.values()]
        p99 = statistics.median(d[k + "_p99"] for d in rounds.values())
        print(f"| {names[k]} | {cores[pin]} | {statistics.median(vals):.0f} | {p99:.1f} ms | {' '.join(f'{v:.0f}' for v in vals)} |")
print()
print("| target | cores | medians | ratio of the medians | each round's ratio | median of each round's ratio |")
print("|---|---|---|---|---|---|")
for pin, rounds in runs.items():
    e = statistics.median(d["engine"] for d in rounds.values())
    m = statistics.median(d["mutex"] for d in rounds.values())
    ratios = [d["engine"] / d["mutex"] for d in rounds.values()]
    print(f"| etcd engine over HTTP ≥ 1.3 × etcd Mutex, same etcd | {cores[pin]} | {e:.0f} vs {m:.0f} | {e/m:.2f} | {' '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}** |")
PY
