# shellcheck shell=bash disable=SC2154 # (the settings and helpers of scripts/bench-compare.sh)
# The latency curve of scripts/bench-compare.sh, which sources this file and
# calls curve (CURVE=0 leaves it out, CURVE_ONLY=1 runs only it); it uses
# that script's helpers and settings (serve, port, waitfor, json, SRV, CLI,
# LL, CONC, PIN, work, pids).
#
# For each of Locklock's engines (memory, Badger, etcd: `locklock serve`)
# and its peers (Redis SET NX PX + DEL, etcd's concurrency.Mutex: driven by
# scripts/peerload, since redis-benchmark has no rate option), an unlimited
# run with CONC clients finds the rate it carries; then open-loop runs
# (`locklock bench --rate`, peerload --rate) offer rising fractions of that
# rate (CURVE_STEPS), and more while the server still keeps up, CURVE_SECS
# seconds each, and record the achieved cycles/s and the acquire latency's
# p50 and p99, counted from when each cycle was due, so that a server
# falling behind shows as latency. With CURVE_ROUNDS > 1 the ladder runs
# again and each point is the median of its rounds. The points go to
# CURVE_OUT.json (default docs/bench-curve, or docs/bench-curve-shared with
# PIN=0) and scripts/bench-curve-plot.sh draws CURVE_OUT.png from it.

curve_load() { # kind target rate out-file: one run, its JSON report to the file
	local kind=$1 target=$2 rate=$3 out=$4
	if [ "$kind" = locklock ]; then
		"${CLI[@]}" "$LL" bench --quiet --json --mode cycle --concurrency "$CONC" \
			--duration "${CURVE_SECS}s" --rate "$rate" --server "$target" >"$out"
	else
		"${CLI[@]}" "$work/peerload" --kind "$kind" --addr "$target" --concurrency "$CONC" \
			--duration "${CURVE_SECS}s" --rate "$rate" >"$out"
	fi
}

curve_says() { # report: one line of it
	json "$1" "'%.0f cycles/s, acquire p50 %.2f ms, p99 %.2f ms, errors %d' % (d['cycles_per_second'], d['latency']['acquire']['p50_ms'], d['latency']['acquire']['p99_ms'], d['errors'])"
}

curve_series() { # name kind target: the unlimited run, then the steps, CURVE_ROUNDS times
	local name=$1 kind=$2 target=$3 max f rate out round extra=0
	local -a steps rates=()
	read -r -a steps <<<"$CURVE_STEPS"
	out="$work/curve-$name-max.json"
	curve_load "$kind" "$target" 0 "$out"
	max=$(json "$out" 'd["cycles_per_second"]')
	printf '%s\t0\t1\t%s\n' "$name" "$out" >>"$work/curve.tsv"
	echo "curve $name: unlimited: $(curve_says "$out")"
	for f in "${steps[@]}"; do
		rates+=("$(python3 -c "print(max(1, round($max * $f)))")")
	done
	for round in $(seq 1 "$CURVE_ROUNDS"); do
		for ((i = 0; i < ${#rates[@]}; i++)); do
			rate=${rates[i]}
			out="$work/curve-$name-$rate-$round.json"
			curve_load "$kind" "$target" "$rate" "$out"
			printf '%s\t%s\t%s\t%s\n' "$name" "$rate" "$round" "$out" >>"$work/curve.tsv"
			echo "curve $name, round $round: offered $rate/s: $(curve_says "$out")"
			# The first round goes on past the ladder while the server still
			# keeps up (the unlimited run may have met a slow minute), up to
			# CURVE_EXTRA more steps of 1.3×; later rounds repeat its rates.
			if [ "$round" = 1 ] && [ $((i + 1)) = ${#rates[@]} ] && [ "$extra" -lt "$CURVE_EXTRA" ] &&
				[ "$(json "$out" "int(d['cycles_per_second'] >= 0.95 * $rate)")" = 1 ]; then
				rates+=("$(python3 -c "print(round($rate * 1.3))")")
				extra=$((extra + 1))
			fi
		done
	done
}

curve_stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

curve_etcd() { # name: starts a fresh one-member etcd on the server side, sets $ec and $pid
	local peer
	ec=$(port)
	peer=$(port)
	"${SRV[@]}" etcd --name "$1" --data-dir "$work/$1" \
		--listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "$1=http://127.0.0.1:$peer" >"$work/$1.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	waitfor "http://127.0.0.1:$ec/health"
}

curve() {
	local out p etcd_pid load_before
	out=${CURVE_OUT:-docs/bench-curve$([ "$PIN" = 1 ] || echo -shared)}
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	: >"$work/curve.tsv"

	p=$(port)
	serve curve-memory memory "$p"
	curve_series memory locklock "http://127.0.0.1:$p"
	curve_stop "$pid"

	p=$(port)
	serve curve-badger badger "$p" --data-dir "$work/curve-badger"
	curve_series badger locklock "http://127.0.0.1:$p"
	curve_stop "$pid"

	# etcd runs on the server's core with Locklock (both are the server
	# side); each series gets a fresh etcd, so neither inherits the other's
	# history.
	curve_etcd curve-etcd
	etcd_pid=$pid
	p=$(port)
	serve curve-etcd-engine etcd "$p" --etcd-endpoints "http://127.0.0.1:$ec"
	curve_series etcd locklock "http://127.0.0.1:$p"
	curve_stop "$pid"
	curve_stop "$etcd_pid"

	curve_etcd curve-etcd-mutex
	curve_series etcd-mutex etcd-mutex "127.0.0.1:$ec"
	curve_stop "$pid"

	p=$(port)
	"${SRV[@]}" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >"$work/curve-redis.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 1 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
	curve_series redis redis "127.0.0.1:$p"
	curve_stop "$pid"

	mkdir -p "$(dirname "$out")"
	CURVE_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
		CURVE_COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown) \
		CURVE_PINNED=$([ "${#SRV[@]}" -gt 0 ] && echo 1 || echo 0) \
		CURVE_MACHINE=$(cat "$work/machine") \
		CURVE_LOAD="$load_before → $(cut -d' ' -f1-3 /proc/loadavg)" \
		CURVE_CONC=$CONC CURVE_SECS=$CURVE_SECS CURVE_ROUNDS=$CURVE_ROUNDS CURVE_NOTE=${CURVE_NOTE:-} \
		python3 - "$work/curve.tsv" "$out.json" <<'PY'
import json, os, statistics, sys
e = os.environ
labels = {
    "memory": "Locklock, memory engine",
    "badger": "Locklock, Badger engine (SyncWrites)",
    "etcd": "Locklock, etcd engine (1 etcd member)",
    "etcd-mutex": "etcd concurrency.Mutex (same etcd, scripts/peerload)",
    "redis": "Redis SET NX PX + DEL (scripts/peerload)",
}
def lat(d, kind, p):
    return d["latency"].get(kind, {}).get(p + "_ms", 0)
series, steps = [], {}
for line in open(sys.argv[1]):
    name, offered, rnd, path = line.rstrip("\n").split("\t")
    d = json.load(open(path))
    pt = {
        "achieved": round(d["cycles_per_second"], 1),
        "p50_ms": lat(d, "acquire", "p50"), "p99_ms": lat(d, "acquire", "p99"),
        "p999_ms": lat(d, "acquire", "p999"),
        "release_p50_ms": lat(d, "release", "p50"), "release_p99_ms": lat(d, "release", "p99"),
        "cycles": d["cycles"], "errors": d["errors"], "seconds": round(d["seconds"], 3),
    }
    if float(offered) == 0:  # the unlimited run: what the steps are fractions of
        series.append({"engine": name, "label": labels[name], "unlimited": pt})
    else:
        steps.setdefault((name, float(offered)), []).append(pt)
# A point is the median of its rounds, figure by figure; errors add up.
points = []
for (name, offered), rounds in steps.items():
    pt = {"engine": name, "offered": offered}
    for k in ("achieved", "p50_ms", "p99_ms", "p999_ms", "release_p50_ms", "release_p99_ms"):
        pt[k] = round(statistics.median(r[k] for r in rounds), 3)
    pt["errors"] = sum(r["errors"] for r in rounds)
    pt["rounds"] = rounds
    points.append(pt)
json.dump({
    "date": e["CURVE_DATE"], "commit": e["CURVE_COMMIT"], "pinned": e["CURVE_PINNED"] == "1",
    "machine": e["CURVE_MACHINE"].removeprefix("machine: "),
    "load": e["CURVE_LOAD"],  # 1, 5 and 15 minute load averages, before → after
    "note": e["CURVE_NOTE"],
    "concurrency": int(e["CURVE_CONC"]), "step_seconds": float(e["CURVE_SECS"]), "rounds": int(e["CURVE_ROUNDS"]),
    "latency": "acquire (POST, SET NX PX, Mutex.Lock), counted from when the cycle was due",
    "series": series, "points": points,
    "absent": [],
}, open(sys.argv[2], "w"), indent=1, ensure_ascii=False)
PY
	scripts/bench-curve-plot.sh "$out.json" "$out.png"
	echo "curve: $out.json, $out.png"
}
