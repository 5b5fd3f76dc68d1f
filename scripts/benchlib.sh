# benchlib.sh: what the benchmark scripts share. Source it after `set -euo
# pipefail` and `cd` to the repository: it makes $work (removed on exit,
# with every process whose pid is added to pids), and defines
#   need CMD PKG   install Debian's PKG with apt-get unless CMD is there
#   port           a free TCP port on 127.0.0.1
#   waitfor URL    wait (20 s at most) until URL answers 2xx
#   json FILE EXPR print EXPR of the JSON in FILE (python, the object as d)
#   rss_mb PID     a process's resident memory in MB

need() {
	command -v "$1" >/dev/null && return
	echo "bench: installing $2" >&2
	apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; }
}

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitfor() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "bench: $1 did not answer" >&2; return 1; }
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
