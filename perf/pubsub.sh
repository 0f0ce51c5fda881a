#!/usr/bin/env bash
# Pub/sub fan-out, 1 publisher and 1,000 subscribers of one channel: straight at redis-server vs
# through redis-proxy --threads 2, side by side in one run (perf/pubsub.py does the measuring).
# Starts its own redis-server (in a temp dir) and proxy (release build) on free 127.0.0.1 ports,
# kills both on exit, and writes perf/results/pubsub.md.
#
# Usage: perf/pubsub.sh [extra perf/pubsub.py args, e.g. --messages 2000 --rounds 3]
# Knobs (environment): PROXY_BIN (default target/release/redis-proxy, built if missing),
#         PROXY_THREADS (2), OUT (perf/results/pubsub.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="${PROXY_BIN:-$ROOT/target/release/redis-proxy}"
THREADS="${PROXY_THREADS:-2}"
OUT="${OUT:-$ROOT/perf/results/pubsub.md}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet)
# 1,000 subscriber sockets in the client, and as many in Redis and in the proxy (which inherit it).
ulimit -n 4096
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); PP=$(free_port)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-pubsub.XXXXXX")
cleanup() { kill "${PROXY:-}" "${REDIS:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS=$!
"$BIN" --listen "127.0.0.1:$PP" --redis "127.0.0.1:$RP" --threads "$THREADS" 2>"$WORK/proxy.log" &
PROXY=$!
for _ in $(seq 100); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.3
mkdir -p "$(dirname "$OUT")"
rc=0
{
    echo "# Pub/sub fan-out: redis-server direct vs redis-proxy"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r), $(redis-server --version | cut -d' ' -f1-3); load average $(cut -d" " -f1-3 /proc/loadavg) at the start; loopback."
    echo
    echo "Command: \`perf/pubsub.sh${*:+ $*}\` (proxy: \`--threads $THREADS\`, defaults otherwise)."
    echo
    timeout 600 python3 "$ROOT/perf/pubsub.py" "$RP" "$PP" --redis-pid "$REDIS" --proxy-pid "$PROXY" \
        --shards "$THREADS" "$@" || rc=$?
} >"$WORK/out.md"
cp "$WORK/out.md" "$OUT"
cat "$OUT"
kill -0 "$PROXY" 2>/dev/null || { echo "redis-proxy died:" >&2; tail -20 "$WORK/proxy.log" >&2; rc=1; }
exit "$rc"
