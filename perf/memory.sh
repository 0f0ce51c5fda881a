#!/usr/bin/env bash
# RSS per cached entry of the real proxy process: 16-byte keys (redis-benchmark's
# key:NNNNNNNNNNNN), 32-byte values, N entries (default 1,000,000), one shard.
# Usage: perf/memory.sh [N]
set -euo pipefail
N=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/target/release/redis-proxy"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); PP=$(free_port)
TMP=$(mktemp -d)
cleanup() { kill "${PROXY:-}" "${REDIS:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$TMP/redis.log" 2>&1 &
REDIS=$!
"$BIN" --listen "127.0.0.1:$PP" --redis "127.0.0.1:$RP" --threads 1 --capacity "$N" --expire 1h 2>"$TMP/proxy.log" &
PROXY=$!
for _ in $(seq 100); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.05; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$PROXY/status"; }
# Every key key:000000000000 .. key:(N-1), 32-byte values, written straight to Redis.
python3 - "$RP" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
val = b"x" * 32
for start in range(0, n, 5000):
    buf = b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$32\r\n%s\r\n" % (i, val) for i in range(start, min(n, start + 5000)))
    s.sendall(buf)
    need = (min(n, start + 5000) - start) * 5
    got = b""
    while len(got) < need:
        got += s.recv(1 << 20)
PY
BEFORE=$(rss)
# Read every key once through the proxy: each miss fills the cache.
python3 - "$PP" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
reply = b"$32\r\n" + b"x" * 32 + b"\r\n"
for start in range(0, n, 2000):
    end = min(n, start + 2000)
    s.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:%012d\r\n" % i for i in range(start, end)))
    need = (end - start) * len(reply)
    got = b""
    while len(got) < need:
        got += s.recv(1 << 20)
PY
sleep 0.5
AFTER=$(rss)
CALLS_BEFORE=$(redis-cli -p "$RP" info commandstats | awk -F'[=,:]' '/cmdstat_get:/ {print $3}')
# A second pass must be all hits: no GET reaches Redis.
redis-benchmark -p "$PP" -r "$N" -n 200000 -t get -P 100 -q >/dev/null 2>&1 || true
CALLS_AFTER=$(redis-cli -p "$RP" info commandstats | awk -F'[=,:]' '/cmdstat_get:/ {print $3}')
echo "entries=$N rss_before_kib=$BEFORE rss_after_kib=$AFTER"
awk -v b="$BEFORE" -v a="$AFTER" -v n="$N" 'BEGIN { printf "rss_per_entry_bytes=%.1f\n", (a-b)*1024/n }'
echo "backend GETs during a 200k-GET pass over the same keys: $((CALLS_AFTER - CALLS_BEFORE))"
