#!/usr/bin/env bash
# One-command side-by-side benchmark: redis-server direct vs twemproxy (nutcracker)
# vs redis-proxy (cache on) vs redis-proxy (--capacity 0), all on loopback.
#
# Usage: perf/run.sh            (full run, a few minutes)
#        PERF_SCALE=0.1 perf/run.sh   (quick run)
# See perf/README.md for the knobs and what the columns mean.
set -euo pipefail

PERF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PERF_DIR/.." && pwd)"
RESULTS_DIR="$PERF_DIR/results"

PERF_SCALE="${PERF_SCALE:-1}"
PERF_ROUNDS="${PERF_ROUNDS:-1}"
PERF_SCALING="${PERF_SCALING:-1}"
PROXY_THREADS="${PROXY_THREADS:-1}"
PROXY_BIN="${PROXY_BIN:-}"
BENCH_TIMEOUT=120
CLIENTS=50
KEYSPACE=10000
DATASIZE=32

log() { printf '[perf] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- inputs
[[ "$PERF_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "PERF_ROUNDS must be a positive integer"
[[ "$PERF_SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "PERF_SCALE must be a positive number"

# scaled request count, never below 1000
scaled() { awk -v b="$1" -v s="$PERF_SCALE" 'BEGIN { n = int(b * s); if (n < 1000) n = 1000; print n }'; }
N_P100="$(scaled 2000000)"
N_P1="$(scaled 200000)"

# ---------------------------------------------------------------- dependencies
need_install=0
for b in redis-server redis-cli redis-benchmark nutcracker; do
    command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [[ "$need_install" == 1 ]]; then
    log "installing redis-server redis-tools nutcracker"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools nutcracker
fi
command -v python3 >/dev/null 2>&1 || die "python3 is required"
# nutcracker lives in /usr/sbin on Debian, which may not be on PATH for non-root users
if ! command -v nutcracker >/dev/null 2>&1 && [[ -x /usr/sbin/nutcracker ]]; then
    PATH="$PATH:/usr/sbin"
fi
for b in redis-server redis-cli redis-benchmark nutcracker; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found after install"
done

if [[ -z "$PROXY_BIN" ]]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    PROXY_BIN="$REPO_ROOT/target/release/redis-proxy"
    PROXY_DISPLAY="target/release/redis-proxy"
else
    PROXY_DISPLAY="$PROXY_BIN"
fi
[[ -x "$PROXY_BIN" ]] || die "proxy binary not executable: $PROXY_BIN"

CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- temp dir + cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-perf.XXXXXX")"
export PERF_TMPDIR="$TMP"
PIDS=()

# cleanup, free_ports, start_bg, wait_port, cpu_ticks
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"
trap_cleanup

CMDS="$TMP/commands.txt"   # command lines used, shown in latest.md
RAW="$TMP/raw.tsv"         # one line per measured run
META="$TMP/meta.txt"
: >"$CMDS"
printf 'section\ttarget\ttest\tpipeline\tround\tn\trps\tavg_ms\tp50_ms\tp95_ms\tp99_ms\tmax_ms\tserver_ticks\tredis_ticks\twall_s\n' >"$RAW"

# Pretty command line for the report: no machine paths, only repo-relative ones.
show_cmd() {
    local a s=""
    for a in "$@"; do
        [[ -z "$a" ]] && a="''"
        s+="${s:+ }$a"
    done
    s="${s//"$REPO_ROOT"\//}"
    s="${s//"$TMP"/\$TMP}"
    s="${s//"$PROXY_BIN"/"$PROXY_DISPLAY"}"
    printf '%s\n' "$s" >>"$CMDS"
}


# bench ARGS... : run redis-benchmark, bounded; prints its csv to stdout
bench() {
    timeout "$BENCH_TIMEOUT" "${CLIENT_PIN[@]}" redis-benchmark -h 127.0.0.1 "$@" --csv 2>>"$TMP/bench.err"
}

# measure SECTION TARGET PORT PID TEST PIPELINE N ROUND
measure() {
    local section="$1" target="$2" port="$3" pid="$4" test="$5" pipe="$6" n="$7" round="$8"
    local s0 r0 s1 r1 t0 t1 out line rc=0
    local args=(-p "$port" -c "$CLIENTS" -r "$KEYSPACE" -d "$DATASIZE" -t "$test" -P "$pipe" -n "$n")
    if ! kill -0 "$pid" 2>/dev/null; then
        log "  $target is not running; skipping ${test^^} -P $pipe"
        printf '%s\t%s\t%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' \
            "$section" "$target" "${test^^}" "$pipe" "$round" "$n" >>"$RAW"
        return 0
    fi
    [[ "$round" == 1 ]] && show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${args[*]} --csv   # $target"
    : >"$TMP/bench.err"
    s0="$(cpu_ticks "$pid")"
    r0="$(cpu_ticks "$REDIS_PID")"
    t0="$(date +%s.%N)"
    out="$(bench "${args[@]}")" || rc=$?
    t1="$(date +%s.%N)"
    s1="$(cpu_ticks "$pid")"
    r1="$(cpu_ticks "$REDIS_PID")"
    line="$(printf '%s\n' "$out" | grep -i "^\"${test}\"" | head -n 1 | tr -d '"')" || true
    local rps="NA" avg="NA" p50="NA" p95="NA" p99="NA" max="NA" sd="NA" rd="NA"
    if [[ "$rc" == 0 && -n "$line" ]]; then
        IFS=, read -r _ rps avg _ p50 p95 p99 max <<<"$line"
    else
        log "  WARNING: redis-benchmark failed against $target (rc=$rc); see below"
        grep -v "Could not fetch server CONFIG" "$TMP/bench.err" | tail -n 5 >&2 || true
    fi
    [[ -n "$s0" && -n "$s1" ]] && sd=$((s1 - s0))
    [[ -n "$r0" && -n "$r1" ]] && rd=$((r1 - r0))
    local wall
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    log "  $(printf '%-14s %s -P %-3s n=%-8s %12s ops/s  p50=%s p99=%s ms  cpu=%s ticks (redis %s)  %ss' \
        "$target" "${test^^}" "$pipe" "$n" "$rps" "$p50" "$p99" "$sd" "$rd" "$wall")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$section" "$target" "${test^^}" "$pipe" "$round" "$n" "$rps" "$avg" "$p50" "$p95" "$p99" "$max" \
        "$sd" "$rd" "$wall" >>"$RAW"
}

# warm TARGET PORT : unmeasured GET pass (touches all keys; fills the cache)
warm() {
    local args=(-p "$2" -c "$CLIENTS" -r "$KEYSPACE" -d "$DATASIZE" -t get -P 100 -n 200000)
    show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${args[*]} --csv   # warm-up $1 (unmeasured)"
    bench "${args[@]}" >/dev/null || log "WARNING: warm-up against $1 failed"
}

# ---------------------------------------------------------------- CPU placement
# On a small machine the scheduler's placement of the three processes (client, proxy, Redis)
# swings results by 2x from run to run. Pin them: servers (redis-server, nutcracker, the proxy's
# first shard, which pins itself to CPU 0) on CPU 0, redis-benchmark on CPU 1. PERF_PIN=0 turns
# this off.
SERVER_PIN=() CLIENT_PIN=()
if [[ "${PERF_PIN:-1}" != 0 ]] && command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    log "pinning: servers on CPU 0, redis-benchmark on CPU 1"
fi

# ---------------------------------------------------------------- servers
read -r REDIS_PORT TW_PORT TW_STATS PC_PORT PN_PORT <<<"$(free_ports 5)"

start_bg redis "${SERVER_PIN[@]}" redis-server --save '' --appendonly no --dir "$TMP" --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no
REDIS_PID=$LAST_PID
wait_port redis "$REDIS_PID" "$REDIS_PORT"
log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"

log "preloading $KEYSPACE keys"
preload=(-p "$REDIS_PORT" -c "$CLIENTS" -t set -r "$KEYSPACE" -n 200000 -d "$DATASIZE" -P 100)
show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${preload[*]} --csv   # preload"
bench "${preload[@]}" >/dev/null || die "preload failed"
nkeys="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" dbsize)"
log "redis has $nkeys keys"

cat >"$TMP/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TW_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  preconnect: true
  servers:
   - 127.0.0.1:$REDIS_PORT:1
EOF
start_bg nutcracker "${SERVER_PIN[@]}" nutcracker -c "$TMP/nutcracker.yml" -s "$TW_STATS" -a 127.0.0.1 \
    -p "$TMP/nutcracker.pid" -o "$TMP/nutcracker.out"
TW_PID=$LAST_PID
wait_port nutcracker "$TW_PID" "$TW_PORT"
log "nutcracker pid $TW_PID on 127.0.0.1:$TW_PORT"

start_proxy() { # NAME PORT CAPACITY THREADS -> LAST_PID
    start_bg "$1" "$PROXY_BIN" --listen "127.0.0.1:$2" --redis "127.0.0.1:$REDIS_PORT" \
        --capacity "$3" --expire 1h --threads "$4"
    wait_port "$1" "$LAST_PID" "$2"
    log "$1 pid $LAST_PID on 127.0.0.1:$2"
}
start_proxy proxy-cache "$PC_PORT" 200000 "$PROXY_THREADS"
PC_PID=$LAST_PID
start_proxy proxy-nocache "$PN_PORT" 0 "$PROXY_THREADS"
PN_PID=$LAST_PID

TARGETS=(direct twemproxy proxy-cache proxy-nocache)
declare -A PORT=([direct]="$REDIS_PORT" [twemproxy]="$TW_PORT" [proxy-cache]="$PC_PORT" [proxy-nocache]="$PN_PORT")
declare -A PID=([direct]="$REDIS_PID" [twemproxy]="$TW_PID" [proxy-cache]="$PC_PID" [proxy-nocache]="$PN_PID")

log "warming up (same unmeasured GET pass through every target)"
for t in "${TARGETS[@]}"; do warm "$t" "${PORT[$t]}"; done

# ---------------------------------------------------------------- main matrix
# All GET cases run before any SET so writes never invalidate the warmed cache
# while GETs are being measured. Within a case, targets run back to back.
CASES=("get 100 $N_P100" "get 1 $N_P1" "set 100 $N_P100" "set 1 $N_P1")
for c in "${CASES[@]}"; do
    read -r test pipe n <<<"$c"
    for ((round = 1; round <= PERF_ROUNDS; round++)); do
        log "${test^^} -P $pipe n=$n round $round/$PERF_ROUNDS"
        for t in "${TARGETS[@]}"; do
            measure main "$t" "${PORT[$t]}" "${PID[$t]}" "$test" "$pipe" "$n" "$round"
        done
    done
done

# ---------------------------------------------------------------- thread scaling
if [[ "$PERF_SCALING" == 1 ]]; then
    log "thread scaling: proxy-cache --threads 1 vs --threads 2, GET -P 100"
    read -r T1_PORT T2_PORT <<<"$(free_ports 2)"
    start_proxy proxy-cache-t1 "$T1_PORT" 200000 1
    T1_PID=$LAST_PID
    start_proxy proxy-cache-t2 "$T2_PORT" 200000 2
    T2_PID=$LAST_PID
    warm proxy-cache-t1 "$T1_PORT"
    warm proxy-cache-t2 "$T2_PORT"
    for ((round = 1; round <= PERF_ROUNDS; round++)); do
        measure scaling proxy-cache-t1 "$T1_PORT" "$T1_PID" get 100 "$N_P100" "$round"
        measure scaling proxy-cache-t2 "$T2_PORT" "$T2_PID" get 100 "$N_P100" "$round"
    done
fi

# ---------------------------------------------------------------- report
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
[[ -n "$cpu_model" ]] || cpu_model="$(lscpu 2>/dev/null | awk -F': +' '/Model name/ { print $2; exit }' || true)"
git_rev="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(cd "$REPO_ROOT" && git status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then
    git_rev="$git_rev (+ uncommitted changes)"
fi
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu=${cpu_model:-unknown}"
    echo "cores=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "redis=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
    echo "redis_benchmark=$(redis-benchmark --version | awk '{ print $2 }')"
    echo "nutcracker=$(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-\([^ ]*\).*/\1/p' | head -n 1)"
    echo "proxy_bin=$PROXY_DISPLAY"
    echo "proxy_rev=$git_rev"
    echo "proxy_threads=$PROXY_THREADS"
    echo "scale=$PERF_SCALE"
    echo "rounds=$PERF_ROUNDS"
    echo "clk_tck=$CLK_TCK"
    echo "clients=$CLIENTS"
    echo "keyspace=$KEYSPACE"
    echo "datasize=$DATASIZE"
} >"$META"

mkdir -p "$RESULTS_DIR"
python3 "$PERF_DIR/report.py" --raw "$RAW" --meta "$META" --commands "$CMDS" \
    --twemproxy-conf "$TMP/nutcracker.yml" --out-dir "$RESULTS_DIR"
log "wrote perf/results/latest.md, perf/results/latest.svg, perf/results/latest.tsv"
