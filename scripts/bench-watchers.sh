#!/usr/bin/env bash
# bench-watchers.sh: what open event streams cost lock operations (issue 17):
# the memory engine over HTTP, the same load with and without streams, in
# one run.
#
#   scripts/bench-watchers.sh                  # pinned, then shared cores
#   PINS=1 ROUNDS=7 scripts/bench-watchers.sh  # pinned only, 7 rounds
#
# One `locklock serve --engine memory` with an API key. The load: CONC (64)
# workers of `locklock bench --mode keyed` acquiring and releasing KEYS
# (1,000) fixed locks of the key's namespace, each worker its own share.
# "watched" rounds also keep a stream open on each of the 1,000 locks and
# NS (10) streams of the whole namespace (`--watch --watch-namespace 10`),
# read as fast as they come; "bare" rounds run the load alone. ROUNDS
# interleaved rounds of DUR, alternating which goes first. PIN=1 runs the
# server on CPU 0 and the load (with its stream readers) on CPU 1; PIN=0
# lets both share both cores. The server allows the one key all its streams
# (--max-watchers-per-caller 0). Prints every round, the medians and the median
# of the per-round ratios watched ÷ bare (the goal: ≥ 0.9). Pinned, it then
# measures the floor: the CPU that only writing the streams' bytes takes
# (scripts/streamfloor) at the goal's event rate.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONC=${CONC:-64}
KEYS=${KEYS:-1000}
NS=${NS:-10}
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}
PINS=${PINS:-1 0}

. scripts/benchlib.sh

if [ -z "${LL:-}" ]; then
	CGO_ENABLED=0 $GO build -o "$work/locklock" ./cmd/locklock
	LL="$work/locklock"
fi
key=$("$LL" keys new --keys-file "$work/keys.json" --namespace bench --plan pro 2>/dev/null)

echo "machine: $(nproc) cores, $(uname -r), $($GO version | cut -d' ' -f3)"
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
	xp=$(port)
	"${SRV[@]}" "$LL" serve --engine memory --keys-file "$work/keys.json" --addr "127.0.0.1:$xp" --log-level warn \
		--max-watchers-per-caller 0 >"$work/serve-$pin.log" 2>&1 &
	ll_pid=$!
	pids+=("$ll_pid")
	waitfor "http://127.0.0.1:$xp/readyz"

	load() { # name, extra flags
		LOCKLOCK_API_KEY=$key "${CLI[@]}" "$LL" bench --quiet --json --concurrency "$CONC" --server "http://127.0.0.1:$xp" \
			--mode keyed --keys "$KEYS" --duration "$DUR" "${@:2}" >"$work/$1.json" || { cat "$work/$1.json" >&2; exit 1; }
		printf '%s\t%s\t%s\t%s\n' "$pin" "$round" "$1" "$(json "$work/$1.json" 'd["cycles_per_second"]')" >>"$results"
		printf '%s\t%s\t%s_p99\t%s\n' "$pin" "$round" "$1" "$(json "$work/$1.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')" >>"$results"
		printf '%s\t%s\t%s_events\t%s\n' "$pin" "$round" "$1" "$(json "$work/$1.json" 'd.get("stream_events", 0)')" >>"$results"
		printf '%s\t%s\t%s_cut\t%s\n' "$pin" "$round" "$1" "$(json "$work/$1.json" 'd.get("stream_resets", 0) + d.get("streams_cut", 0)')" >>"$results"
	}
	for round in $(seq 1 "$ROUNDS"); do
		if [ $((round % 2)) = 1 ]; then
			load bare; load watched --watch --watch-namespace "$NS"
		else
			load watched --watch --watch-namespace "$NS"; load bare
		fi
		echo "PIN=$pin round $round: $(awk -v p="$pin" -v r="$round" -F'\t' '$1 == p && $2 == r {printf "%s=%s ", $3, $4}' "$results")"
	done
	kill "$ll_pid"; wait "$ll_pid" 2>/dev/null || true
	if [ "$pin" = 1 ] && [ "${#SRV[@]}" -gt 0 ]; then
		# The floor: what only writing these streams' bytes costs a core
		# (scripts/streamfloor), at the event rate of the goal: two events
		# per cycle at 0.9 × this run's median bare rate.
		bare=$(awk -F'\t' '$1 == 1 && $3 == "bare" {print $4}' "$results" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
		events=$(python3 -c "print(round(2 * 0.9 * $bare))")
		$GO build -o "$work/streamfloor" ./scripts/streamfloor
		for round in 1 2 3; do
			fp=$(port)
			"${SRV[@]}" "$work/streamfloor" write "127.0.0.1:$fp" -events "$events" -locks "$KEYS" -ns "$NS" >"$work/floor.txt" &
			floor_pid=$!
			sleep 0.3
			"${CLI[@]}" "$work/streamfloor" read "127.0.0.1:$fp" $((KEYS + NS))
			wait "$floor_pid"
			echo "floor round $round, $events events/s: $(cat "$work/floor.txt")"
		done
	fi
done
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$KEYS" "$NS" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(sys.argv[1]):
    pin, r, k, v = line.rstrip("\n").split("\t")
    runs[pin][r][k] = float(v)
keys, ns = sys.argv[2], sys.argv[3]
cores = {"1": "pinned", "0": "shared"}
print()
print(f"| memory engine, {keys} locks, 64 workers | cores | cycles/s (median) | p99 (median) | stream events (median) | streams reset or cut | every round |")
print("|---|---|---|---|---|---|---|")
for pin, rounds in runs.items():
    for k, name in (("bare", "no streams"), ("watched", f"{keys} lock streams + {ns} namespace streams")):
        vals = [d[k] for d in rounds.values()]
        p99 = statistics.median(d[k + "_p99"] for d in rounds.values())
        ev = statistics.median(d[k + "_events"] for d in rounds.values())
        cut = sum(d[k + "_cut"] for d in rounds.values())
        print(f"| {name} | {cores[pin]} | {statistics.median(vals):.0f} | {p99:.1f} ms | {ev:.0f} | {cut:.0f} | {' '.join(f'{v:.0f}' for v in vals)} |")
print()
print("| target | cores | medians | ratio of the medians | each round's ratio | median of each round's ratio |")
print("|---|---|---|---|---|---|")
for pin, rounds in runs.items():
    w = statistics.median(d["watched"] for d in rounds.values())
    b = statistics.median(d["bare"] for d in rounds.values())
    ratios = [d["watched"] / d["bare"] for d in rounds.values()]
    print(f"| lock throughput with streams ≥ 0.9 × without | {cores[pin]} | {w:.0f} vs {b:.0f} | {w/b:.2f} | {' '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}** |")
PY
