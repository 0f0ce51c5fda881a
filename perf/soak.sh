#!/usr/bin/env bash
# Soak test: mixed load through redis-proxy for SECONDS (default 300) while Redis is killed
# and restarted, and frozen (SIGSTOP/SIGCONT), on a schedule. Samples the proxy's RSS every
# 5 s, checks every reply of a checking client, and writes perf/results/soak.md.
#
# Usage: perf/soak.sh [SECONDS]        (10..3600, default 300)
#
# Load:   redis-benchmark -P 16 on get,set,incr,lpush,lpop, restarted in a loop, plus
#         perf/soak.py: pipelined SET/GET/INCR/ECHO whose replies are all checked.
# Faults: SIGKILL Redis at 40 s, then every 60 s (restarted 0.5 s later, empty);
#         SIGSTOP Redis for 2 s at 20 s, then every 45 s.
# Knobs (environment): PROXY_BIN (default: target/release/redis-proxy, built if missing),
#         PROXY_THREADS (2), SOAK_KILL_EVERY (60), SOAK_STOP_EVERY (45), SOAK_CHECKERS (4).
# Everything listens on 127.0.0.1 only, and everything started is killed on exit.
set -euo pipefail

PERF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PERF_DIR/.." && pwd)"
RESULTS_DIR="$PERF_DIR/results"

DURATION="${1:-300}"
PROXY_BIN="${PROXY_BIN:-}"
PROXY_THREADS="${PROXY_THREADS:-2}"
KILL_EVERY="${SOAK_KILL_EVERY:-60}"
STOP_EVERY="${SOAK_STOP_EVERY:-45}"
CHECKERS="${SOAK_CHECKERS:-4}"
KILL_FIRST=40
STOP_FIRST=20
SAMPLE_EVERY=5

log() { printf '[soak %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[soak] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 10 && DURATION <= 3600)) \
    || die "SECONDS must be an integer from 10 to 3600 (got '$DURATION')"
for v in KILL_EVERY STOP_EVERY CHECKERS PROXY_THREADS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
for b in redis-server redis-cli redis-benchmark python3; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found (apt-get install redis-server redis-tools python3)"
done

if [[ -z "$PROXY_BIN" ]]; then
    PROXY_BIN="$REPO_ROOT/target/release/redis-proxy"
    if [[ ! -x "$PROXY_BIN" ]]; then
        printf '[soak] cargo build --release\n' >&2
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    fi
fi
[[ -x "$PROXY_BIN" ]] || die "proxy binary $PROXY_BIN not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-soak.XXXXXX")"
START_NS="$(date +%s%N)"
elapsed() { echo $((($(date +%s%N) - START_NS) / 1000000000)); }

REDIS_PID=""
PROXY_PID=""
BENCH_PID=""
CHECKER_PID=""
SAMPLER_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup_processes 2>/dev/null # no "Killed" job notices
    if [[ "${SOAK_KEEP:-0}" == 1 ]]; then
        printf '[soak] kept work files in %s\n' "$WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

cleanup_processes() {
    for p in "$BENCH_PID" "$CHECKER_PID" "$SAMPLER_PID"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    if [[ -n "$PROXY_PID" ]]; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
    fi
    if [[ -n "$REDIS_PID" ]]; then
        kill -CONT "$REDIS_PID" 2>/dev/null || true
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    sleep 0.5
    [[ -n "$PROXY_PID" ]] && kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ping_ok() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null)" == PONG ]]; }

wait_ping() { # port seconds
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        ping_ok "$1" && return 0
        sleep 0.05
    done
    return 1
}

REDIS_PORT="$(free_port)"
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --loglevel warning >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_ping "$REDIS_PORT" 10 || die "redis-server did not start on port $REDIS_PORT"
}

start_redis
PROXY_PORT="$(free_port)"
"$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --redis "127.0.0.1:$REDIS_PORT" \
    --threads "$PROXY_THREADS" --backend-timeout 1s --connect-timeout 300ms \
    --capacity 100000 --expire 1h 2>"$WORK/proxy.log" &
PROXY_PID=$!
wait_ping "$PROXY_PORT" 10 || { cat "$WORK/proxy.log" >&2; die "redis-proxy did not start"; }
log "redis-server :$REDIS_PORT, redis-proxy :$PROXY_PORT (pid $PROXY_PID, $PROXY_THREADS threads), ${DURATION}s"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# RSS sampler: "seconds rss_kib" every SAMPLE_EVERY seconds.
(
    while kill -0 "$PROXY_PID" 2>/dev/null; do
        echo "$(elapsed) $(rss_kb "$PROXY_PID")" >>"$WORK/rss.tsv"
        sleep "$SAMPLE_EVERY"
    done
) &
SAMPLER_PID=$!

# redis-benchmark in a loop (it exits after -n requests; errors from a down backend are
# part of the soak). Output kept for the throughput column.
(
    # On TERM, end the current redis-benchmark (this loop's own child) too.
    bench=""
    trap '[[ -n "$bench" ]] && kill "$bench" 2>/dev/null; exit 0' TERM
    while true; do
        timeout 120 redis-benchmark -h 127.0.0.1 -p "$PROXY_PORT" -c 20 -P 16 -r 10000 \
            -n 200000 -t get,set,incr,lpush,lpop -q >>"$WORK/bench.log" 2>&1 &
        bench=$!
        wait "$bench" || true
        bench=""
        echo "--- run end $(elapsed)" >>"$WORK/bench.log"
        sleep 0.2
    done
) &
BENCH_PID=$!

python3 "$PERF_DIR/soak.py" --port "$PROXY_PORT" --seconds "$DURATION" \
    --clients "$CHECKERS" --out "$WORK/checker.json" >"$WORK/checker.out" 2>&1 &
CHECKER_PID=$!

# Fault schedule.
next_kill=$KILL_FIRST
next_stop=$STOP_FIRST
kills=0
stops=0
: >"$WORK/faults.tsv"
while (($(elapsed) < DURATION)); do
    now=$(elapsed)
    kill -0 "$PROXY_PID" 2>/dev/null || die "redis-proxy died at ${now}s: $(tail -5 "$WORK/proxy.log")"
    if ((now >= next_stop && next_stop + 3 < DURATION)); then
        log "SIGSTOP redis for 2s"
        kill -STOP "$REDIS_PID"
        sleep 2
        kill -CONT "$REDIS_PID"
        echo "$now SIGSTOP 2s" >>"$WORK/faults.tsv"
        stops=$((stops + 1))
        next_stop=$((next_stop + STOP_EVERY))
    elif ((now >= next_kill && next_kill + 3 < DURATION)); then
        log "SIGKILL redis, restart after 0.5s"
        kill -KILL "$REDIS_PID"
        wait "$REDIS_PID" 2>/dev/null || true
        sleep 0.5
        start_redis
        echo "$now SIGKILL + restart" >>"$WORK/faults.tsv"
        kills=$((kills + 1))
        next_kill=$((next_kill + KILL_EVERY))
    else
        sleep 0.2
    fi
done

log "load done; collecting"
checker_rc=0
wait "$CHECKER_PID" || checker_rc=$?
CHECKER_PID=""
kill "$BENCH_PID" 2>/dev/null || true
wait "$BENCH_PID" 2>/dev/null || true
BENCH_PID=""
sleep 0.3
echo "$(elapsed) $(rss_kb "$PROXY_PID")" >>"$WORK/rss.tsv"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
proxy_alive=yes
kill -0 "$PROXY_PID" 2>/dev/null || proxy_alive=no
final_ping=no
ping_ok "$PROXY_PORT" && final_ping=yes

mkdir -p "$RESULTS_DIR"
python3 - "$WORK" "$RESULTS_DIR/soak.md" "$DURATION" "$PROXY_THREADS" "$kills" "$stops" \
    "$proxy_alive" "$final_ping" "$checker_rc" <<'EOF'
import json, re, sys, datetime
work, out, duration, threads, kills, stops, alive, final_ping, checker_rc = sys.argv[1:]
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss.tsv") if l.strip()]
try:
    chk = json.load(open(f"{work}/checker.json"))
except (OSError, ValueError):
    chk = {"replies": 0, "errors": 0, "wrong": 0, "lost": 0, "error_kinds": {}, "examples": ["no checker output"], "max_wait_s": 0, "pipelines": 0}
faults = [l.rstrip("\n") for l in open(f"{work}/faults.tsv") if l.strip()]
bench = open(f"{work}/bench.log", errors="replace").read()
runs = bench.count("--- run end")
rates = {}
for m in re.finditer(r"([A-Z_]+(?: \([^)]*\))?): ([0-9.]+) requests per second", bench.replace("\r", "\n")):
    rates.setdefault(m.group(1), []).append(float(m.group(2)))
bench_errors = len(re.findall(r"^Error", bench, re.M))

# RSS verdict: after a 10 s warm-up, the last sample vs the first (flat = within 20% + 8 MiB).
warm = [r for t, r in rss if t >= 10] or [r for _, r in rss]
base, last, peak = warm[0], warm[-1], max(r for _, r in rss)
flat = last <= base * 1.2 + 8 * 1024
ok = (chk["wrong"] == 0 and chk["lost"] == 0 and alive == "yes" and final_ping == "yes"
      and chk["replies"] > 0 and flat)

L = []
L.append(f"# redis-proxy soak: {duration} s")
L.append("")
L.append(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, `--threads {threads} --backend-timeout 1s --connect-timeout 300ms`, loopback.")
L.append("")
L.append(f"**Verdict: {'PASS' if ok else 'FAIL'}** (wrong replies {chk['wrong']}, lost replies {chk['lost']}, "
         f"proxy alive at the end: {alive}, answers PING: {final_ping}, RSS flat: {'yes' if flat else 'NO'})")
L.append("")
L.append("## Faults injected")
L.append("")
L.append(f"{kills} x SIGKILL + restart of Redis, {stops} x SIGSTOP 2 s / SIGCONT.")
L.append("")
L.append("| at (s) | fault |")
L.append("|---:|---|")
for f in faults:
    t, what = f.split(" ", 1)
    L.append(f"| {t} | {what} |")
L.append("")
L.append("## Checked replies (perf/soak.py)")
L.append("")
L.append("| replies checked | pipelines | errors | wrong replies | lost replies | longest wait for one reply |")
L.append("|---:|---:|---:|---:|---:|---:|")
L.append(f"| {chk['replies']} | {chk['pipelines']} | {chk['errors']} | {chk['wrong']} | {chk['lost']} | {chk['max_wait_s']} s |")
L.append("")
if chk["error_kinds"]:
    L.append("| error | count |")
    L.append("|---|---:|")
    for k, v in sorted(chk["error_kinds"].items(), key=lambda kv: -kv[1]):
        L.append(f"| `-ERR {k}...` | {v} |")
    L.append("")
if chk["examples"]:
    L.append("First problems:")
    L.append("")
    for e in chk["examples"][:20]:
        L.append(f"- `{e}`")
    L.append("")
L.append("## redis-benchmark (-c 20 -P 16 -r 10000, get,set,incr,lpush,lpop)")
L.append("")
L.append(f"{runs} runs completed; {bench_errors} error lines in its output.")
L.append("")
if rates:
    L.append("| test | runs | median req/s | min req/s |")
    L.append("|---|---:|---:|---:|")
    for k, v in rates.items():
        v = sorted(v)
        L.append(f"| {k} | {len(v)} | {v[len(v)//2]:.0f} | {v[0]:.0f} |")
    L.append("")
L.append("## Proxy RSS (VmRSS)")
L.append("")
L.append(f"After warm-up (10 s): first {base/1024:.1f} MiB, last {last/1024:.1f} MiB, peak {peak/1024:.1f} MiB.")
L.append("")
L.append("| t (s) | RSS (MiB) |")
L.append("|---:|---:|")
for t, r in rss:
    L.append(f"| {t} | {r/1024:.1f} |")
L.append("")
text = "\n".join(L)
open(out, "w").write(text)
print(text)
sys.exit(0 if ok else 1)
EOF
