#!/usr/bin/env bash
# bench-semaphores.sh: what a semaphore's slot cycle costs beside a lock
# cycle (issue 18), over HTTP, on the memory engine and on etcd, in one run.
#
#   scripts/bench-semaphores.sh                      # pinned, then shared cores
#   PINS=1 ROUNDS=7 scripts/bench-semaphores.sh      # pinned only, 7 rounds
#   ENGINES=memory scripts/bench-semaphores.sh       # one engine
#
# Per engine one `locklock serve` (etcd: on one Debian etcd member, installed
# with apt-get when missing); CONC (64) workers of `locklock bench --mode
# cycle` (acquire + release of fresh UUID locks) and of `--mode semaphore`
# (acquire + release of a slot, each worker on a semaphore of its own of
# limit 1,000), in ROUNDS interleaved rounds of DUR, alternating which goes
# first. PIN=1 runs the servers on CPU 0 and the load on CPU 1; PIN=0 lets
# them share both cores. Prints every round, the medians and the median of
# the per-round ratios semaphore ÷ lock (the goals: ≥ 0.8 on memory, ≥ 0.7
# on etcd).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONC=${CONC:-64}
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}
PINS=${PINS:-1 0}
ENGINES=${ENGINES:-memory etcd}

. scripts/benchlib.sh
case " $ENGINES " in *" etcd "*) need etcd etcd-server ;; esac

if [ -z "${LL:-}" ]; then
	CGO_ENABLED=0 $GO build -o "$work/locklock" ./cmd/locklock
	LL="$work/locklock"
fi

echo "machine: $(nproc) cores, $(uname -r), $($GO version | cut -d' ' -f3)"
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
results="$work/results.tsv" # engine, pin, round, figure, value
for engine in $ENGINES; do
	for pin in $PINS; do
		if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
			SRV=(taskset -c 0)
			CLI=(taskset -c 1)
		else
			SRV=()
			CLI=()
		fi
		flags=(--engine "$engine")
		etcd_pid=
		if [ "$engine" = etcd ]; then
			ec=$(port); ep=$(port)
			"${SRV[@]}" etcd --name bench --data-dir "$work/etcd-$pin" --listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
				--listen-peer-urls "http://127.0.0.1:$ep" --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
				--initial-cluster "bench=http://127.0.0.1:$ep" >"$work/etcd-$pin.log" 2>&1 &
			etcd_pid=$!
			pids+=("$etcd_pid")
			waitfor "http://127.0.0.1:$ec/health"
			flags+=(--etcd-endpoints "http://127.0.0.1:$ec")
		fi
		xp=$(port)
		"${SRV[@]}" "$LL" serve "${flags[@]}" --addr "127.0.0.1:$xp" --log-level warn >"$work/serve-$engine-$pin.log" 2>&1 &
		ll_pid=$!
		pids+=("$ll_pid")
		waitfor "http://127.0.0.1:$xp/readyz"

		load() { # figure, mode
			"${CLI[@]}" "$LL" bench --quiet --json --concurrency "$CONC" --server "http://127.0.0.1:$xp" \
				--mode "$2" --duration "$DUR" >"$work/$1.json" || { cat "$work/$1.json" >&2; exit 1; }
			printf '%s\t%s\t%s\t%s\t%s\n' "$engine" "$pin" "$round" "$1" "$(json "$work/$1.json" 'd["cycles_per_second"]')" >>"$results"
			printf '%s\t%s\t%s\t%s_p99\t%s\n' "$engine" "$pin" "$round" "$1" "$(json "$work/$1.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')" >>"$results"
			printf '%s\t%s\t%s\t%s_errors\t%s\n' "$engine" "$pin" "$round" "$1" "$(json "$work/$1.json" 'd["errors"]')" >>"$results"
		}
		for round in $(seq 1 "$ROUNDS"); do
			if [ $((round % 2)) = 1 ]; then
				load lock cycle; load semaphore semaphore
			else
				load semaphore semaphore; load lock cycle
			fi
			echo "$engine PIN=$pin round $round: $(awk -v e="$engine" -v p="$pin" -v r="$round" -F'\t' '$1 == e && $2 == p && $3 == r {printf "%s=%s ", $4, $5}' "$results")"
		done
		kill "$ll_pid" $etcd_pid; wait "$ll_pid" $etcd_pid 2>/dev/null || true
	done
done
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(sys.argv[1]):
    engine, pin, r, k, v = line.rstrip("\n").split("\t")
    runs[(engine, pin)][r][k] = float(v)
cores = {"1": "pinned", "0": "shared"}
goal = {"memory": 0.8, "etcd": 0.7}
print()
print("| engine | cores | cycle | cycles/s (median) | p99 (median) | errors | every round |")
print("|---|---|---|---|---|---|---|")
for (engine, pin), rounds in runs.items():
    for k in ("lock", "semaphore"):
        vals = [d[k] for d in rounds.values()]
        p99 = statistics.median(d[k + "_p99"] for d in rounds.values())
        errs = sum(d[k + "_errors"] for d in rounds.values())
        print(f"| {engine} | {cores[pin]} | {k} | {statistics.median(vals):.0f} | {p99:.1f} ms | {errs:.0f} | {' '.join(f'{v:.0f}' for v in vals)} |")
print()
print("| target | cores | medians | ratio of the medians | each round's ratio | median of each round's ratio |")
print("|---|---|---|---|---|---|")
for (engine, pin), rounds in runs.items():
    s = statistics.median(d["semaphore"] for d in rounds.values())
    l = statistics.median(d["lock"] for d in rounds.values())
    ratios = [d["semaphore"] / d["lock"] for d in rounds.values()]
    m = statistics.median(ratios)
    print(f"| {engine}: slot cycle ≥ {goal.get(engine, 0)} × lock cycle | {cores[pin]} | {s:.0f} vs {l:.0f} | {s/l:.2f} | {' '.join(f'{x:.2f}' for x in ratios)} | **{m:.2f}** ({'met' if m >= goal.get(engine, 0) else 'missed'}) |")
PY
