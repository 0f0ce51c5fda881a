#!/usr/bin/env bash
# Stale window of a CLIENT TRACKING client-side cache through the proxy: after a writer holds the
# ack of its SET, how long a RESP3 tracking client still reads the old value from its local cache.
# Baseline (tracking client and writer straight on Redis) and two proxy variants (writer through
# the proxy, writer straight on Redis) side by side; perf/tracking_stale_window.py measures.
# Starts its own redis-server (in a temp dir) and proxy (release build, --threads 2) on free
# 127.0.0.1 ports, kills both on exit, and writes perf/results/tracking-stale-window.md.
#
# Usage: perf/tracking_stale_window.sh [extra tracking_stale_window.py args, e.g. --rounds 500]
# Knobs (environment): PROXY_BIN (default target/release/redis-proxy, built if missing),
#         PROXY_THREADS (2), OUT (perf/results/tracking-stale-window.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="${PROXY_BIN:-$ROOT/target/release/redis-proxy}"
THREADS="${PROXY_THREADS:-2}"
OUT="${OUT:-$ROOT/perf/results/tracking-stale-window.md}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); PP=$(free_port)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-tsw.XXXXXX")
cleanup() { kill "${PROXY:-}" "${REDIS:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS=$!
"$BIN" --listen "127.0.0.1:$PP" --redis "127.0.0.1:$RP" --threads "$THREADS" --expire 1h 2>"$WORK/proxy.log" &
PROXY=$!
for _ in $(seq 100); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.3
mkdir -p "$(dirname "$OUT")"
rc=0
{
    echo "# Client-side cache stale window with CLIENT TRACKING: redis-server direct vs redis-proxy"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r), $(redis-server --version | cut -d' ' -f1-3); load average $(cut -d" " -f1-3 /proc/loadavg) at the start; loopback."
    echo
    echo "Command: \`perf/tracking_stale_window.sh${*:+ $*}\` (proxy: \`--threads $THREADS --expire 1h\`)."
    echo
    timeout 600 python3 "$ROOT/perf/tracking_stale_window.py" "$PP" "$RP" --shards "$THREADS" "$@" || rc=$?
} >"$WORK/out.md"
cp "$WORK/out.md" "$OUT"
cat "$OUT"
kill -0 "$PROXY" 2>/dev/null || { echo "redis-proxy died:" >&2; tail -20 "$WORK/proxy.log" >&2; rc=1; }
exit "$rc"
