#!/usr/bin/env bash
# Starts redis-server and the proxy (release build, --threads 2) on free loopback ports and runs
# perf/redis_py_tx.py against both with the redis-py of tests/clients (installed if needed).
# Usage: perf/redis_py_tx.sh [extra redis_py_tx.py args, e.g. --seconds 5 --rounds 3]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="${PROXY_BIN:-$ROOT/target/release/redis-proxy}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet)
bash "$ROOT/tests/clients/run.sh" --install-only redis-py
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); PP=$(free_port)
cleanup() { kill "${PROXY:-}" "${REDIS:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "${TMPDIR:-/tmp}" --daemonize no >/dev/null 2>&1 &
REDIS=$!
"$BIN" --listen "127.0.0.1:$PP" --redis "127.0.0.1:$RP" --threads 2 2>/dev/null &
PROXY=$!
for _ in $(seq 100); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.05; done
timeout 900 "$ROOT/target/client-venv/bin/python" "$ROOT/perf/redis_py_tx.py" "$RP" "$PP" "$@"
