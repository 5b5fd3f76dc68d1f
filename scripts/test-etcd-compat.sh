#!/usr/bin/env bash
# Runs the etcd engine's tests against the etcd server Debian ships (3.4),
# the oldest version Locklock supports; the regular tests use an embedded
# etcd 3.7. Installs etcd-server with apt-get when etcd is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null; then
	echo "test-etcd-compat: installing Debian's etcd-server"
	if ! { apt-get install -y etcd-server >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y etcd-server >/dev/null 2>&1; }; }; then
		echo "test-etcd-compat: could not install etcd-server with apt-get; the etcd 3.4 compatibility tests did not run"
		exit 0
	fi
fi
etcd --version | sed -n 1p # not head: etcd would die of SIGPIPE, and pipefail end the script

dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
client="http://127.0.0.1:$(port)"
peer="http://127.0.0.1:$(port)"
etcd --name compat --data-dir "$dir/data" \
	--listen-client-urls "$client" --advertise-client-urls "$client" \
	--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
	--initial-cluster "compat=$peer" >"$dir/etcd.log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
	if curl -fs "$client/health" >/dev/null 2>&1; then break; fi
	sleep 0.2
done

status=0
LOCKLOCK_ETCD_ENDPOINTS="$client" ${GO:-go} test -race -count=1 ./engines/etcd ./cmd/locklock \
	-run 'TestConformance|TestSemaphore|TestEvents|TestResume|TestLocksEndingInOneRevision|TestSlotEvents|TestSlotsAndLocks|TestSlotAndLock|TestSlotStreams|TestSlotChanges|TestSlotReleaseMarker|TestEmptySemaphore|TestSlotSecretsAtRest|TestTryAcquireSlot|TestListSemaphores|TestOneSlotStep|TestThree|TestWaiter|TestUnreachable' || status=$?
# The lease tests count the leases granted while they run, so they run
# after the others and one at a time (-parallel 1), alone on this etcd.
LOCKLOCK_ETCD_ENDPOINTS="$client" ${GO:-go} test -race -count=1 -parallel 1 ./engines/etcd \
	-run 'TestNoLeaseLeak|TestLeaseRevoked|TestSlotLeasesRevoked|TestClose|TestTainted|TestCount|TestWatchGap|TestOnLease|TestBatcher' || status=$?
exit "$status"
