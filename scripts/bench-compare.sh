#!/usr/bin/env bash
# Measures Locklock side by side with its peers, in one run on this machine,
# and prints the tables of BENCHMARKS.md; then draws latency against
# throughput (docs/bench-curve.png, from docs/bench-curve.json). Needs
# redis-server, redis-benchmark, etcd, wrk and gnuplot (installed with
# apt-get when missing). Everything binds to 127.0.0.1 and is stopped at the
# end. Takes about 40 minutes (the curve about 15 of them).
#
#   scripts/bench-compare.sh               # all of it
#   SCALE=0 scripts/bench-compare.sh       # without the 1,000,000-lock figures
#   CURVE=0 scripts/bench-compare.sh       # without the latency curve
#   CURVE_ONLY=1 scripts/bench-compare.sh  # only the latency curve (~15 minutes; CURVE_ROUNDS=1: ~6)
#   PIN=0 CURVE_ONLY=1 scripts/bench-compare.sh  # unpinned: docs/bench-curve-shared.{json,png}
#   scripts/bench-curve-plot.sh docs/bench-curve.json  # redraw the PNG from the JSON alone
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONC=${CONC:-64}
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}
REDIS_N=${REDIS_N:-300000}
SCALE=${SCALE:-1}
LOCKS=${LOCKS:-1000000}
CURVE=${CURVE:-1}
CURVE_ONLY=${CURVE_ONLY:-0}
CURVE_SECS=${CURVE_SECS:-5}                                   # seconds a step
CURVE_STEPS=${CURVE_STEPS:-0.1 0.25 0.5 0.7 0.85 0.95 1.05 1.2 1.5} # offered rates, as fractions of the unlimited run's
CURVE_EXTRA=${CURVE_EXTRA:-4}                                 # steps of 1.3× more at most, while the server keeps up
CURVE_ROUNDS=${CURVE_ROUNDS:-3}                               # ladders per series; a point is their median

. scripts/benchlib.sh
need redis-server redis-server
need redis-benchmark redis-tools
need etcd etcd-server
need wrk wrk
need gnuplot gnuplot-nox


CGO_ENABLED=0 $GO build -o "$work/locklock" ./cmd/locklock
CGO_ENABLED=0 $GO build -o "$work/httpfloor" ./scripts/httpfloor
CGO_ENABLED=0 $GO build -o "$work/peerload" ./scripts/peerload
LL="$work/locklock"

# Servers run on CPU 0 and load generators on CPU 1, as if each had a
# machine of its own: sharing both cores, the two take turns preempting
# each other, which makes the tail latency a matter of the kernel's
# scheduler and starves whichever side uses more threads. Redis is pinned
# the same way (it serves from one thread anyway). PIN=0 turns it off.
PIN=${PIN:-1}
# wrk gets one thread per core it may use (wrk's own advice): on one
# pinned core a second thread only adds its own queueing to the latencies.
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
	SRV=(taskset -c 0)
	CLI=(taskset -c 1)
	WRK=(taskset -c 1 wrk -t1)
else
	SRV=()
	CLI=()
	WRK=(wrk -t2)
fi

serve() { # name engine port [flags...]: starts a server, sets $pid
	local name=$1 engine=$2 p=$3
	shift 3
	"${SRV[@]}" "$LL" serve --engine "$engine" --addr "127.0.0.1:$p" --log-level warn "$@" >"$work/$name.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	waitfor "http://127.0.0.1:$p/readyz"
}
bench() { # out-file args...: locklock bench, JSON report to the file
	local out=$1
	shift
	"${CLI[@]}" "$LL" bench --quiet --json --concurrency "$CONC" "$@" >"$out"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $($GO version | cut -d' ' -f3)" | tee "$work/machine"
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck source=scripts/bench-curve.sh
. scripts/bench-curve.sh
if [ "$CURVE_ONLY" = 1 ]; then
	curve
	exit 0
fi

# --- Redis, the net/http floor, and the memory engine's /healthz and lock
# cycles, measured in ROUNDS interleaved rounds (the machine's speed drifts
# by tens of percent within minutes); the tables show each figure's median.
rp=$(port)
"${SRV[@]}" redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
fp=$(port)
"${SRV[@]}" "$work/httpfloor" "127.0.0.1:$fp" &
pids+=($!)
waitfor "http://127.0.0.1:$fp/healthz"
mp=$(port)
serve memory memory "$mp"
mem_pid=$pid

redis() { # command...: prints "requests/s p99-ms" (SET key v NX PX 30000, then DEL: two requests a cycle)
	"${CLI[@]}" redis-benchmark -p "$rp" -c "$CONC" -n "$REDIS_N" -r 100000000 "$@" | tr '\r' '\n' |
		awk '/requests per second/ {rps=$(NF-3)} /latency summary/ {getline; getline; p99=$5} END {print rps, p99}'
}
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_p99() { awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v*=1000}; print v}' "$1"; }
wrk_cycles() { awk '/^cycles\/s:/ {print $2}' "$1"; }
results="$work/results.tsv" # round, figure, value
note() { printf '%s\t%s\t%s\n' "$round" "$1" "$2" >>"$results"; }
for round in $(seq 1 "$ROUNDS"); do
	read -r v p <<<"$(redis SET 'lock:__rand_int__' v NX PX 30000)"; note redis_set "$v"; note redis_set_p99 "$p"
	read -r v p <<<"$(redis DEL 'lock:__rand_int__')"; note redis_del "$v"; note redis_del_p99 "$p"
	w="$work/wrk-$round"
	"${WRK[@]}" -c"$CONC" -d"$DUR" --latency "http://127.0.0.1:$fp/healthz" >"$w-floor.txt"
	"${WRK[@]}" -c"$CONC" -d"$DUR" --latency "http://127.0.0.1:$mp/healthz" >"$w-healthz.txt"
	"${WRK[@]}" -c"$CONC" -d"$DUR" --latency -s scripts/wrk/cycle.lua "http://127.0.0.1:$mp" >"$w-cycle.txt"
	note floor "$(wrk_rps "$w-floor.txt")"; note floor_p99 "$(wrk_p99 "$w-floor.txt")"
	note wrk_healthz "$(wrk_rps "$w-healthz.txt")"; note wrk_healthz_p99 "$(wrk_p99 "$w-healthz.txt")"
	note wrk_cycle_req "$(wrk_rps "$w-cycle.txt")"; note wrk_cycles "$(wrk_cycles "$w-cycle.txt")"; note wrk_cycle_p99 "$(wrk_p99 "$w-cycle.txt")"
	bench "$work/mem-healthz-$round.json" --server "http://127.0.0.1:$mp" --mode healthz --duration "$DUR"
	bench "$work/mem-cycle-$round.json" --server "http://127.0.0.1:$mp" --mode cycle --duration "$DUR"
	note bench_healthz "$(json "$work/mem-healthz-$round.json" 'd["requests_per_second"]')"
	note bench_healthz_p99 "$(json "$work/mem-healthz-$round.json" 'd["latency"]["healthz"]["p99_ms"]')"
	note bench_cycle_req "$(json "$work/mem-cycle-$round.json" 'd["requests_per_second"]')"
	note bench_cycles "$(json "$work/mem-cycle-$round.json" 'd["cycles_per_second"]')"
	note bench_cycle_p99 "$(json "$work/mem-cycle-$round.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')"
	echo "round $round: $(awk -v r="$round" -F'\t' '$1 == r {printf "%s=%s ", $2, $3}' "$results")"
done
med() { # figure: its median over the rounds
	python3 -c "import statistics,sys; v=[float(l.split('\t')[2]) for l in open('$results') if l.split('\t')[1] == '$1']; print(round(statistics.median(v), 2))"
}
rset=$(med redis_set); rdel=$(med redis_del); rset99=$(med redis_set_p99); rdel99=$(med redis_del_p99)
redis_cycles=$(python3 -c "print(round(1/(1/$rset+1/$rdel)))")
wf=$(med floor); wh=$(med wrk_healthz); wr=$(med wrk_cycle_req); wc=$(med wrk_cycles)
mh=$(med bench_healthz); mr=$(med bench_cycle_req); mc=$(med bench_cycles)
echo "medians: redis $redis_cycles cycles/s; floor $wf req/s; wrk healthz $wh, cycle $wr req/s ($wc cycles/s); bench healthz $mh, cycle $mr req/s"

# For comparison, the same without pinning: server and wrk share both cores.
sp0=$(port)
"$LL" serve --engine memory --addr "127.0.0.1:$sp0" --log-level warn >"$work/shared.log" 2>&1 &
pids+=($!)
waitfor "http://127.0.0.1:$sp0/readyz"
wrk -t2 -c"$CONC" -d"$DUR" --latency "http://127.0.0.1:$sp0/healthz" >"$work/wrk-shared-healthz.txt"
wrk -t2 -c"$CONC" -d"$DUR" --latency -s scripts/wrk/cycle.lua "http://127.0.0.1:$sp0" >"$work/wrk-shared-cycle.txt"
kill "${pids[-1]}"
echo "memory (wrk, shared cores): healthz $(wrk_rps "$work/wrk-shared-healthz.txt") req/s; cycle $(wrk_rps "$work/wrk-shared-cycle.txt") req/s"

# --- locklock, Badger engine (SyncWrites on) ---
bp=$(port)
serve badger badger "$bp" --data-dir "$work/badger"
bench "$work/badger-cycle.json" --server "http://127.0.0.1:$bp" --mode cycle --duration "$DUR"
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "badger: cycle $(json "$work/badger-cycle.json" 'd["cycles_per_second"]') cycles/s"

# --- locklock, etcd engine on one etcd member (Debian's etcd), beside
# etcd's own concurrency.Mutex on the same member (scripts/peerload --kind etcd-mutex: CONC
# workers, one session each, Lock+Unlock of fresh keys), in ROUNDS
# interleaved rounds that alternate which goes first. etcd runs with the
# servers (CPU 0 when pinned), the Mutex load with the load generators. ---
ec=$(port); ep=$(port)
"${SRV[@]}" etcd --name bench --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
	--listen-peer-urls "http://127.0.0.1:$ep" --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
	--initial-cluster "bench=http://127.0.0.1:$ep" >"$work/etcd.log" 2>&1 &
pids+=($!)
waitfor "http://127.0.0.1:$ec/health"
xp=$(port)
serve etcd etcd "$xp" --etcd-endpoints "http://127.0.0.1:$ec"
etcd_engine() {
	bench "$work/etcd-cycle-$round.json" --server "http://127.0.0.1:$xp" --mode cycle --duration "$DUR"
	note etcd_http "$(json "$work/etcd-cycle-$round.json" 'd["cycles_per_second"]')"
	note etcd_http_p99 "$(json "$work/etcd-cycle-$round.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')"
}
etcd_mutex() {
	"${CLI[@]}" "$work/peerload" -kind etcd-mutex -addr "127.0.0.1:$ec" -concurrency "$CONC" -duration "$DUR" >"$work/etcd-mutex-$round.json"
	note etcd_mutex "$(json "$work/etcd-mutex-$round.json" 'd["cycles_per_second"]')"
	note etcd_mutex_p99 "$(json "$work/etcd-mutex-$round.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])')"
}
for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then etcd_engine; etcd_mutex; else etcd_mutex; etcd_engine; fi
	echo "round $round: etcd engine $(awk -v r="$round" -F'\t' '$1 == r && $2 == "etcd_http" {print $3}' "$results") cycles/s, etcd Mutex $(awk -v r="$round" -F'\t' '$1 == r && $2 == "etcd_mutex" {print $3}' "$results") cycles/s"
done
kill "$pid"; wait "$pid" 2>/dev/null || true

# --- in-process, 64 goroutines: engines through the Service vs raw Badger,
# raw etcd and etcd's concurrency.Mutex (embedded etcd) ---
# ROUNDS rounds, each the engine's benchmark right beside its baselines
# (disk and CPU speed drift between minutes); the tables show medians.
$GO test -c -o "$work/badger.test" ./engines/badger
$GO test -c -o "$work/etcd.test" ./engines/etcd
for round in $(seq 1 "$ROUNDS"); do
	for pkg in badger etcd; do
		(cd "engines/$pkg" && "$work/$pkg.test" -test.run '^$' -test.bench 'ServiceCycle|RawCycle' -test.benchtime 3s) |
			tee -a "$work/gobench.txt" | grep -E '^Benchmark' |
			awk '{for (i=1;i<=NF;i++) if ($i=="ops/s") {sub(/-[0-9]+$/, "", $1); print $1, $(i-1)}}' |
			while read -r name v; do note "$name" "$v"; echo "round $round: $name $v ops/s"; done
	done
done
ops() { med "$1"; }
paired() { # python expression over one round's figures d[...]: its median over the rounds
	python3 - "$results" "$1" <<'PY'
import collections, statistics, sys
rounds = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    r, k, v = line.rstrip("\n").split("\t")
    rounds[r][k] = float(v)
vals = [eval(sys.argv[2], {}, {"d": d}) for d in rounds.values() if all(k in d for k in ("wrk_cycles",))]
print(f"{statistics.median(vals):.2f}")
PY
}
redis_of='(1/(1/d["redis_set"]+1/d["redis_del"]))'


# --- scale: the memory engine with 1,000,000 locks ---
if [ "$SCALE" = 1 ]; then
	empty_rss=$(rss_mb "$mem_pid")
	bench "$work/mem-hold.json" --server "http://127.0.0.1:$mp" --mode hold --count "$LOCKS" --ttl 1h --duration 10m
	full_rss=$(rss_mb "$mem_pid")
	# Throughput full vs empty: a fresh empty server beside the full one,
	# measured alternately (one under load at a time), medians.
	ep0=$(port)
	serve empty memory "$ep0"
	for round in $(seq 1 "$ROUNDS"); do
		"${WRK[@]}" -c"$CONC" -d"$DUR" -s scripts/wrk/cycle.lua "http://127.0.0.1:$ep0" >"$work/scale-empty-$round.txt"
		"${WRK[@]}" -c"$CONC" -d"$DUR" -s scripts/wrk/cycle.lua "http://127.0.0.1:$mp" >"$work/scale-full-$round.txt"
		note scale_empty "$(wrk_cycles "$work/scale-empty-$round.txt")"
		note scale_full "$(wrk_cycles "$work/scale-full-$round.txt")"
		echo "round $round: cycles/s empty $(wrk_cycles "$work/scale-empty-$round.txt"), with $LOCKS held $(wrk_cycles "$work/scale-full-$round.txt")"
	done
	kill "$pid"; wait "$pid" 2>/dev/null || true
	kill "$mem_pid"; wait "$mem_pid" 2>/dev/null || true

	# Sweeping: 1,000,000 locks that expire within a minute, removed by one
	# sweep (the first, 120 s after the start) while lock cycles run.
	sp=$(port)
	sweep_start=$(date +%s)
	serve sweep memory "$sp" --sweep-interval 120s
	bench "$work/sweep-hold.json" --server "http://127.0.0.1:$sp" --mode hold --count "$LOCKS" --ttl 60s --duration 10m
	bench "$work/sweep-before.json" --server "http://127.0.0.1:$sp" --mode cycle --duration "$DUR"
	sleep $((sweep_start + 112 - $(date +%s)))
	bench "$work/sweep-during.json" --server "http://127.0.0.1:$sp" --mode cycle --duration 16s
	swept=$(curl -s "http://127.0.0.1:$sp/metrics" | awk '/^locklock_swept_locks_total/ {printf "%d", $2}')
	kill "$pid"; wait "$pid" 2>/dev/null || true

	# Badger: 1,000,000 held locks, then a restart until the first acquire.
	rp2=$(port)
	serve badger1m badger "$rp2" --data-dir "$work/badger1m"
	# Many acquires in flight share each fsync: filling is what this
	# costs, not what is measured.
	CONC=512 bench "$work/badger-hold.json" --server "http://127.0.0.1:$rp2" --mode hold --count "$LOCKS" --ttl 1h --duration 20m
	kill "$pid"; wait "$pid" 2>/dev/null || true
	t0=$(date +%s.%N)
	serve badger1m-again badger "$rp2" --data-dir "$work/badger1m"
	curl -sf -X POST "http://127.0.0.1:$rp2/v1/api/lock/uuid/00000000-0000-4000-8000-000000000001" >/dev/null
	restart=$(python3 -c "import time; print(round(time.time()-$t0, 2))")
	held_after=$(curl -s "http://127.0.0.1:$rp2/metrics" | awk '/^locklock_locks_held/ {printf "%d", $2}')
	kill "$pid"; wait "$pid" 2>/dev/null || true
fi

# --- the tables ---
r() { python3 -c "print(f'{$1:.2f}')"; }
bc=$(json "$work/badger-cycle.json" 'd["cycles_per_second"]')
xc=$(med etcd_http); xm=$(med etcd_mutex)
gb=$(ops BenchmarkServiceCycle/badger); rb=$(ops BenchmarkRawCycle/badger-txn); ge=$(ops BenchmarkServiceCycle/etcd); rm=$(ops BenchmarkRawCycle/etcd-mutex); rc=$(ops BenchmarkRawCycle/etcd-cas)
cat <<EOF

| what (64 concurrent clients) | cycles/s | requests/s | p99 |
|---|---|---|---|
| Redis SET NX PX + DEL (redis-benchmark) | $redis_cycles | SET $rset, DEL $rdel | SET $rset99 ms, DEL $rdel99 ms |
| net/http floor: the smallest handler (scripts/httpfloor, wrk) | | $wf | $(med floor_p99) ms |
| locklock, memory engine, HTTP (wrk, scripts/wrk/cycle.lua) | $wc | $wr | $(med wrk_cycle_p99) ms |
| locklock /healthz, same server (wrk) | | $wh | $(med wrk_healthz_p99) ms |
| locklock, memory engine, HTTP (locklock bench) | $mc | $mr | $(med bench_cycle_p99) ms |
| locklock /healthz, same server (locklock bench) | | $mh | $(med bench_healthz_p99) ms |
| the same two with wrk, server and client sharing both cores (one round) | $(wrk_cycles "$work/wrk-shared-cycle.txt") | $(wrk_rps "$work/wrk-shared-cycle.txt") (healthz $(wrk_rps "$work/wrk-shared-healthz.txt")) | $(wrk_p99 "$work/wrk-shared-cycle.txt") ms (healthz $(wrk_p99 "$work/wrk-shared-healthz.txt") ms) |
| locklock, Badger engine (SyncWrites), HTTP | $bc | | $(json "$work/badger-cycle.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])') ms |
| locklock, etcd engine (Debian etcd, 1 member), HTTP | $xc | | $(med etcd_http_p99) ms |
| etcd clientv3/concurrency.Mutex Lock+Unlock, same etcd member (scripts/peerload) | $xm | | $(med etcd_mutex_p99) ms |
| Badger engine through the Service, in-process | $gb | | |
| raw Badger transactions, SyncWrites, in-process | $rb | | |
| etcd engine through the Service, in-process (embedded etcd) | $ge | | |
| etcd compare-and-put + delete, in-process | $rc | | |
| etcd clientv3/concurrency.Mutex Lock+Unlock, in-process | $rm | | |

| target | medians | ratio of the medians | median of each round's ratio |
|---|---|---|---|
| memory over HTTP ≥ 0.8 × Redis cycles (wrk) | $wc vs $redis_cycles | $(r "$wc/$redis_cycles") | $(paired "d['wrk_cycles']/$redis_of") |
| memory over HTTP ≥ 0.8 × Redis cycles (locklock bench) | $mc vs $redis_cycles | $(r "$mc/$redis_cycles") | $(paired "d['bench_cycles']/$redis_of") |
| (the floor's requests as cycles, vs Redis) | $(r "$wf/2") vs $redis_cycles | $(r "$wf/2/$redis_cycles") | $(paired "d['floor']/2/$redis_of") |
| lock requests ≥ 0.85 × /healthz requests (wrk) | $wr vs $wh | $(r "$wr/$wh") | $(paired "d['wrk_cycle_req']/d['wrk_healthz']") |
| lock requests ≥ 0.85 × /healthz requests (locklock bench) | $mr vs $mh | $(r "$mr/$mh") | $(paired "d['bench_cycle_req']/d['bench_healthz']") |
| (lock requests vs the floor, wrk) | $wr vs $wf | $(r "$wr/$wf") | $(paired "d['wrk_cycle_req']/d['floor']") |
| Badger engine ≥ 0.8 × raw Badger | $gb vs $rb | $(r "$gb/$rb") | $(paired "d['BenchmarkServiceCycle/badger']/d['BenchmarkRawCycle/badger-txn']") |
| etcd engine over HTTP ≥ 1.3 × etcd Mutex on the same etcd | $xc vs $xm | $(r "$xc/$xm") | $(paired "d['etcd_http']/d['etcd_mutex']") |
| (in-process, embedded etcd: etcd engine vs etcd Mutex) | $ge vs $rm | $(r "$ge/$rm") | $(paired "d['BenchmarkServiceCycle/etcd']/d['BenchmarkRawCycle/etcd-mutex']") |
| memory p99 ≤ 5 ms (wrk; locklock bench) | $(med wrk_cycle_p99) ms; $(med bench_cycle_p99) ms | | |
EOF
if [ "$SCALE" = 1 ]; then
	cat <<EOF

| scale ($LOCKS locks) | measured |
|---|---|
| memory server RSS, empty → full | $empty_rss MB → $full_rss MB |
| memory cycles/s (wrk), an empty server → one holding $LOCKS | $(med scale_empty) → $(med scale_full) ($(r "$(med scale_full)/$(med scale_empty)")×) |
| filling rate (hold mode), memory (64 in flight) / Badger (512 in flight) | $(json "$work/mem-hold.json" 'd["cycles_per_second"]') / $(json "$work/badger-hold.json" 'd["cycles_per_second"]') locks/s |
| p99 of lock requests, before → during sweeping $swept expired locks | $(json "$work/sweep-before.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])') ms → $(json "$work/sweep-during.json" 'max(d["latency"]["acquire"]["p99_ms"], d["latency"]["release"]["p99_ms"])') ms |
| Badger restart with $LOCKS held locks until the first acquire | $restart s ($held_after locks held after) |
EOF
fi
if [ "$CURVE" = 1 ]; then
	curve
fi
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
