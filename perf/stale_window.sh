#!/usr/bin/env bash
# Starts redis-server and the proxy (--threads N, default 2) on free loopback ports and runs
# perf/stale_window.py against them. Usage: perf/stale_window.sh [ROUNDS] [THREADS]
set -euo pipefail
ROUNDS=${1:-500}
THREADS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/redis-proxy"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); PP=$(free_port)
cleanup() { kill "${PROXY:-}" "${REDIS:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
REDIS=$!
"$BIN" --listen "127.0.0.1:$PP" --redis "127.0.0.1:$RP" --threads "$THREADS" --expire 1h 2>/dev/null &
PROXY=$!
for _ in $(seq 100); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.3
timeout 600 python3 "$ROOT/perf/stale_window.py" "$PP" "$RP" --rounds "$ROUNDS" --conns 32 --baseline
