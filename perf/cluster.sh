#!/usr/bin/env bash
# Redis Cluster, side by side on loopback: redis-benchmark --cluster straight at a 3-master
# cluster vs the same load through redis-proxy --cluster on (which looks like one node), with
# the cache on (GET hits) and with --capacity 0 (every GET forwarded to the owning master).
#
# Usage: perf/cluster.sh                      (full run, about two minutes)
#        PERF_SCALE=0.1 perf/cluster.sh       (quick run)
#        TARGETS=direct PERF_SCALE=0.05 OUT=/tmp/c.md perf/cluster.sh   (the cluster alone)
#
# Knobs (conventions of perf/run.sh): PERF_SCALE multiplies the request counts (2,000,000 at
# -P 100, 200,000 at -P 1, at least 1000); PERF_ROUNDS rounds per case, medians reported;
# PROXY_THREADS (default 2) is the proxies' --threads; PROXY_BIN uses that binary instead of
# `cargo build --release`; TARGETS picks among direct, proxy-cache, proxy-nocache; PERF_PIN=0
# turns CPU pinning off; OUT is the report (default perf/results/cluster.md).
#
# The cluster: 3 masters, no replicas, cluster-node-timeout 5000, each node with its own
# cluster bus port. Keys are loaded, every target gets one unmeasured GET pass (filling the
# proxy's cache), then GET -P 100, GET -P 1, SET -P 100, SET -P 1, targets back to back.
# Each run: redis-benchmark -c 50 -r 10000 -d 32 -e --csv under `timeout 120`; CPU ticks
# (utime+stime from /proc/PID/stat) of the proxy and of the three nodes summed, before and
# after. A proxy that exits at start (e.g. it does not know --cluster) or that does not route
# a GET and a SET to every master stops the script with its stderr; a run that gets error
# replies (redis-benchmark -e prints them) is shown as n/a, with a warning and the first errors.
# Loopback only; everything started is killed on exit.
set -euo pipefail

PERF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PERF_DIR/.." && pwd)"
OUT="${OUT:-$PERF_DIR/results/cluster.md}"

PERF_SCALE="${PERF_SCALE:-1}"
PERF_ROUNDS="${PERF_ROUNDS:-1}"
PROXY_THREADS="${PROXY_THREADS:-2}"
PROXY_BIN="${PROXY_BIN:-}"
TARGETS="${TARGETS:-direct proxy-cache proxy-nocache}"
BENCH_TIMEOUT=120
CLIENTS=50
KEYSPACE=10000
DATASIZE=32
MASTERS=3

log() { printf '[cluster-perf] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- inputs
[[ "$PERF_ROUNDS" =~ ^[1-9][0-9]?$ ]] || die "PERF_ROUNDS must be 1-99"
[[ "$PERF_SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "PERF_SCALE must be a positive number"
read -r -a TARGET_LIST <<<"$TARGETS"
((${#TARGET_LIST[@]})) || die "TARGETS is empty"
for t in "${TARGET_LIST[@]}"; do
    [[ "$t" =~ ^(direct|proxy-cache|proxy-nocache)$ ]] ||
        die "unknown target '$t' in TARGETS (direct, proxy-cache, proxy-nocache)"
done
want() { [[ " ${TARGET_LIST[*]} " == *" $1 "* ]]; }
need_proxy=0
if want proxy-cache || want proxy-nocache; then need_proxy=1; fi

# scaled request count, never below 1000
scaled() { awk -v b="$1" -v s="$PERF_SCALE" 'BEGIN { n = int(b * s); if (n < 1000) n = 1000; print n }'; }
N_P100="$(scaled 2000000)"
N_P1="$(scaled 200000)"

# ---------------------------------------------------------------- dependencies
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools
fi
for b in redis-server redis-cli redis-benchmark; do
    command -v "$b" >/dev/null || die "$b not found after install"
done
command -v python3 >/dev/null || die "python3 is required"
redis_major="$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')"
[[ "${redis_major:-0}" -ge 7 ]] || die "Redis 7 or newer is required (cluster-port, redis-benchmark --cluster -P)"

PROXY_DISPLAY=""
if ((need_proxy)); then
    if [[ -z "$PROXY_BIN" ]]; then
        log "cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
        PROXY_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/redis-proxy"
        PROXY_DISPLAY="target/release/redis-proxy"
    else
        PROXY_DISPLAY="${PROXY_BIN#"$REPO_ROOT"/}"
    fi
    [[ -x "$PROXY_BIN" ]] || die "proxy binary not executable: $PROXY_BIN"
    # absolute: servers start from the temp dir
    PROXY_BIN="$(cd "$(dirname "$PROXY_BIN")" && pwd)/$(basename "$PROXY_BIN")"
fi

CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- temp dir + cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-cluster-perf.XXXXXX")"
PIDS=()

# cleanup, free_ports, start_bg, wait_port, cpu_ticks
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"
trap_cleanup

CMDS="$TMP/commands.txt" # command lines used, listed at the end of the report
RAW="$TMP/raw.tsv"       # one line per measured run
: >"$CMDS"
: >"$RAW"

# Command line for the report: no machine paths, only repo-relative ones.
show_cmd() {
    local a s=""
    for a in "$@"; do
        [[ -z "$a" ]] && a="''"
        s+="${s:+ }$a"
    done
    s="${s//"$REPO_ROOT"\//}"
    s="${s//"$TMP"/\$TMP}"
    [[ -n "$PROXY_BIN" ]] && s="${s//"$PROXY_BIN"/"$PROXY_DISPLAY"}"
    printf '%s\n' "$s" >>"$CMDS"
}


# Sum of cpu_ticks over the cluster's nodes; empty if any is gone.
redis_ticks() {
    local pid t sum=0
    for pid in "${NODE_PIDS[@]}"; do
        t="$(cpu_ticks "$pid")"
        [[ -n "$t" ]] || { echo ""; return 0; }
        sum=$((sum + t))
    done
    echo "$sum"
}

rcli() { timeout 5 redis-cli -h 127.0.0.1 "$@"; }

# ---------------------------------------------------------------- CPU placement
# As perf/run.sh: servers (every cluster node and the proxy) on CPU 0, redis-benchmark on
# CPU 1, so the scheduler's placement does not swing results run to run. Under `taskset -c 0`
# the proxy pins all its shards to CPU 0 (the only CPU it is allowed). PERF_PIN=0 turns this off.
SERVER_PIN=() CLIENT_PIN=()
if [[ "${PERF_PIN:-1}" != 0 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    log "pinning: cluster nodes and proxy on CPU 0, redis-benchmark on CPU 1"
fi

# ---------------------------------------------------------------- the cluster
# 3 masters, no replicas: replicas only add replication traffic to the measured Redis CPU.
# Each node has its own cluster bus port (cluster-port), so any free client port works.
read -r -a ports <<<"$(free_ports $((2 * MASTERS)))"
NODE_PORTS=() NODE_PIDS=()
for ((i = 0; i < MASTERS; i++)); do
    port="${ports[2 * i]}" bus="${ports[2 * i + 1]}"
    mkdir -p "$TMP/node$i"
    start_bg "node$i" "${SERVER_PIN[@]}" redis-server --port "$port" --cluster-port "$bus" \
        --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 5000 --save '' --appendonly no --dir "$TMP/node$i" --daemonize no
    NODE_PORTS+=("$port")
    NODE_PIDS+=("$LAST_PID")
done
for ((i = 0; i < MASTERS; i++)); do
    wait_port "node$i" "${NODE_PIDS[i]}" "${NODE_PORTS[i]}"
done
P1="${NODE_PORTS[0]}" P2="${NODE_PORTS[1]}"

create=(redis-cli --cluster create)
for p in "${NODE_PORTS[@]}"; do create+=("127.0.0.1:$p"); done
create+=(--cluster-replicas 0 --cluster-yes)
show_cmd timeout 60 "${create[@]}"
timeout 60 "${create[@]}" >"$TMP/create.log" 2>&1 || {
    cat "$TMP/create.log" >&2
    die "redis-cli --cluster create failed"
}
grep -q "All 16384 slots covered" "$TMP/create.log" || {
    cat "$TMP/create.log" >&2
    die "redis-cli --cluster create did not cover all slots"
}

# Every node: cluster_state:ok and the same CLUSTER SLOTS (polled, 30 s at most).
cluster_settled() {
    local p first="" slots
    for p in "${NODE_PORTS[@]}"; do
        rcli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
        slots="$(rcli -p "$p" cluster slots 2>/dev/null)" || return 1
        [[ -n "$slots" ]] || return 1
        if [[ -z "$first" ]]; then first="$slots"; elif [[ "$slots" != "$first" ]]; then return 1; fi
    done
}
t0="$(date +%s.%N)"
for ((i = 0; ; i++)); do
    cluster_settled && break
    ((i < 600)) || die "cluster did not reach cluster_state:ok on every node within 30s"
    sleep 0.05
done
log "cluster up: masters on 127.0.0.1:${NODE_PORTS[*]} (pids ${NODE_PIDS[*]}), settled in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"

# ---------------------------------------------------------------- keys
# Python helper: CRC16 slots, preload of plain keys straight into their masters, and a
# check that a proxy really routes by slot.
cat >"$TMP/cluster_util.py" <<'EOF'
import socket, sys

def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc

def key_slot(key):
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
    def send(self, *cmds):
        out = []
        for args in cmds:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def reply(self):
        l = self.line()
        t, rest = l[:1], l[1:]
        if t in (b"+", b"-"):
            return (t, rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.s.recv(1 << 16)
                if not chunk:
                    raise EOFError("connection closed")
                self.buf += chunk
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError("bad reply line %r" % l)
    def cmd(self, *args):
        self.send(args)
        return self.reply()

def slot_owners(port):
    owner = [None] * 16384
    for r in Conn(port).cmd("CLUSTER", "SLOTS"):
        for s in range(r[0], r[1] + 1):
            owner[s] = r[2][1]
    return owner

def bench_key(i):  # redis-benchmark's __rand_int__ key without --cluster
    return b"key:%012d" % i

def preload(seed_port, n, size):
    owner = slot_owners(seed_port)
    by_port = {}
    for i in range(n):
        k = bench_key(i)
        by_port.setdefault(owner[key_slot(k)], []).append(k)
    val = b"x" * size
    for port, keys in by_port.items():
        c = Conn(port)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            c.send(*[(b"SET", k, val) for k in batch])
            for k in batch:
                r = c.reply()
                if r != (b"+", "OK"):
                    sys.exit("SET %r on %d: %r" % (k, port, r))
    print(" ".join("%d:%d" % (p, len(k)) for p, k in sorted(by_port.items())))

def check_proxy(proxy_port, seed_port, size):
    """Through the proxy: GET a preloaded key of every master, SET a key of every master and
    find it on that master. Exits non-zero with the reply when the proxy does not route."""
    owner = slot_owners(seed_port)
    masters = sorted(set(owner))
    proxy = Conn(proxy_port)
    for m in masters:
        i = next(i for i in range(1 << 20) if owner[key_slot(bench_key(i))] == m)
        got = proxy.cmd("GET", bench_key(i))
        if got != b"x" * size:
            sys.exit("GET %s through the proxy (owner 127.0.0.1:%d): %r" % (bench_key(i).decode(), m, got))
        j = next(j for j in range(1 << 20) if owner[key_slot(b"perf-check:%d" % j)] == m)
        k = b"perf-check:%d" % j
        r = proxy.cmd("SET", k, "routed")
        if r != (b"+", "OK"):
            sys.exit("SET %s through the proxy: %r" % (k.decode(), r))
        if Conn(m).cmd("GET", k) != b"routed":
            sys.exit("SET %s through the proxy did not reach its owner 127.0.0.1:%d" % (k.decode(), m))
        Conn(m).cmd("DEL", k)

if __name__ == "__main__":
    if sys.argv[1] == "preload":
        preload(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "check-proxy":
        check_proxy(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("unknown subcommand " + sys.argv[1])
EOF

# bench ARGS... : run redis-benchmark, bounded; its csv (and any -e error lines) to stdout
bench() {
    timeout "$BENCH_TIMEOUT" "${CLIENT_PIN[@]}" redis-benchmark -h 127.0.0.1 "$@" -e --csv 2>>"$TMP/bench.err"
}

# Keys: through the proxy (no --cluster) redis-benchmark uses key:000000000000..key:9999; with
# --cluster it puts a hash tag of one slot of each master in the key (key:{tag}:0000...), so
# each master gets its own 10,000 keys. Both sets are loaded.
log "preloading $KEYSPACE plain keys (key:NNNNNNNNNNNN) straight into their masters"
show_cmd "python3 \$TMP/cluster_util.py preload $P1 $KEYSPACE $DATASIZE"
spread="$(timeout 120 python3 "$TMP/cluster_util.py" preload "$P1" "$KEYSPACE" "$DATASIZE")" ||
    die "preload failed"
log "  keys per master (port:count): $spread"
if want direct; then
    log "preloading redis-benchmark --cluster's keys"
    preload=(--cluster --threads 1 -p "$P1" -c "$CLIENTS" -t set -r "$KEYSPACE" -n 200000 -d "$DATASIZE" -P 100)
    show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${preload[*]} -e --csv   # preload (--cluster keys)"
    out="$(bench "${preload[@]}")" || { cat "$TMP/bench.err" >&2; die "preload with redis-benchmark --cluster failed"; }
    ! grep -q "Error from server" <<<"$out" || die "preload: $(grep -m1 "Error from server" <<<"$out")"
fi
for p in "${NODE_PORTS[@]}"; do
    log "  127.0.0.1:$p has $(rcli -p "$p" dbsize) keys"
done

# ---------------------------------------------------------------- proxies
declare -A PORT=() PID=()
start_proxy() { # NAME PORT CAPACITY
    local name="$1" port="$2" capacity="$3" i
    start_bg "$name" "${SERVER_PIN[@]}" "$PROXY_BIN" --listen "127.0.0.1:$port" \
        --redis "127.0.0.1:$P1,127.0.0.1:$P2" --cluster on --threads "$PROXY_THREADS" \
        --capacity "$capacity" --expire 1h
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$LAST_PID" 2>/dev/null; then
            log "---- $name stderr ----"
            tail -n 20 "$TMP/$name.log" >&2 || true
            die "$name exited at start (its stderr is above). An unknown or refused '--cluster on' means this proxy build has no Redis Cluster support"
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    ((i < 300)) || { tail -n 20 "$TMP/$name.log" >&2; die "$name did not listen on 127.0.0.1:$port within 15s"; }
    local err
    if ! err="$(timeout 30 python3 "$TMP/cluster_util.py" check-proxy "$port" "$P1" "$DATASIZE" 2>&1)"; then
        log "---- $name stderr ----"
        tail -n 20 "$TMP/$name.log" >&2 || true
        die "$name does not route by slot: $err"
    fi
    PORT[$name]="$port"
    PID[$name]="$LAST_PID"
    log "$name pid $LAST_PID on 127.0.0.1:$port (routes GET/SET to every master)"
}
if ((need_proxy)); then
    read -r PC_PORT PN_PORT <<<"$(free_ports 2)"
    if want proxy-cache; then start_proxy proxy-cache "$PC_PORT" 200000; fi
    if want proxy-nocache; then start_proxy proxy-nocache "$PN_PORT" 0; fi
fi
PORT[direct]="$P1"
PID[direct]=""

# bench arguments for TARGET: the proxy looks like one node, so no --cluster there. Direct,
# `--threads 1`: with --cluster redis-benchmark otherwise runs one thread per master, which is
# not the single-threaded load generator the proxy runs get, and its threads stop on a 250 ms
# timer once the requests are done, which rounds every run's time up to a multiple of 250 ms
# (several times too few ops/s on short runs). One thread still spreads its 50 connections over
# the masters.
target_args() {
    if [[ "$1" == direct ]]; then
        printf '%s\n' --cluster --threads 1 -p "$P1"
    else
        printf '%s\n' -p "${PORT[$1]}"
    fi
}

# measure TARGET TEST PIPELINE N ROUND
measure() {
    local target="$1" test="$2" pipe="$3" n="$4" round="$5"
    local s0="" s1="" r0 r1 t0 t1 out line rc=0 errors
    local args
    mapfile -t args < <(target_args "$target")
    args+=(-c "$CLIENTS" -r "$KEYSPACE" -d "$DATASIZE" -t "$test" -P "$pipe" -n "$n")
    [[ "$round" == 1 ]] && show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${args[*]} -e --csv   # $target"
    if [[ -n "${PID[$target]}" ]] && ! kill -0 "${PID[$target]}" 2>/dev/null; then
        die "$target is no longer running (see its log above); stopping"
    fi
    : >"$TMP/bench.err"
    [[ -n "${PID[$target]}" ]] && s0="$(cpu_ticks "${PID[$target]}")"
    r0="$(redis_ticks)"
    t0="$(date +%s.%N)"
    out="$(bench "${args[@]}")" || rc=$?
    t1="$(date +%s.%N)"
    [[ -n "${PID[$target]}" ]] && s1="$(cpu_ticks "${PID[$target]}")"
    r1="$(redis_ticks)"
    errors="$(grep -c "Error from server" <<<"$out" || true)"
    line="$(printf '%s\n' "$out" | grep -i "^\"${test}\"" | head -n 1 | tr -d '"')" || true
    local rps="NA" p50="NA" p99="NA" pd="NA" rd="NA" wall
    if [[ "$rc" == 0 && -n "$line" && "$errors" == 0 ]]; then
        IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
    else
        log "  WARNING: redis-benchmark against $target: rc=$rc, error replies seen: $errors"
        grep -m 3 "Error from server" <<<"$out" >&2 || true
        grep -v "Could not fetch server CONFIG" "$TMP/bench.err" | tail -n 5 >&2 || true
    fi
    [[ -n "$s0" && -n "$s1" ]] && pd=$((s1 - s0))
    [[ -n "$r0" && -n "$r1" ]] && rd=$((r1 - r0))
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    log "  $(printf '%-14s %s -P %-3s n=%-8s %12s ops/s  p50=%s p99=%s ms  cpu proxy=%s redis=%s ticks  %ss' \
        "$target" "${test^^}" "$pipe" "$n" "$rps" "$p50" "$p99" "$pd" "$rd" "$wall")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$target" "${test^^}" "$pipe" "$round" "$n" "$rps" "$p50" "$p99" "$pd" "$rd" "$wall" >>"$RAW"
}

# warm TARGET : unmeasured GET pass (touches every key; fills the proxy's cache)
warm() {
    local args
    mapfile -t args < <(target_args "$1")
    args+=(-c "$CLIENTS" -r "$KEYSPACE" -d "$DATASIZE" -t get -P 100 -n 200000)
    show_cmd "timeout $BENCH_TIMEOUT ${CLIENT_PIN[*]} redis-benchmark -h 127.0.0.1 ${args[*]} -e --csv   # warm-up $1 (unmeasured)"
    bench "${args[@]}" >/dev/null || log "WARNING: warm-up against $1 failed"
}

log "warming up (the same unmeasured GET pass through every target)"
for t in "${TARGET_LIST[@]}"; do warm "$t"; done

# ---------------------------------------------------------------- main matrix
# Every GET case before any SET, so writes never invalidate the warmed cache while GETs are
# measured. Within a case the targets run back to back.
CASES=("get 100 $N_P100" "get 1 $N_P1" "set 100 $N_P100" "set 1 $N_P1")
for c in "${CASES[@]}"; do
    read -r test pipe n <<<"$c"
    for ((round = 1; round <= PERF_ROUNDS; round++)); do
        log "${test^^} -P $pipe n=$n round $round/$PERF_ROUNDS"
        for t in "${TARGET_LIST[@]}"; do
            measure "$t" "$test" "$pipe" "$n" "$round"
        done
    done
done

# ---------------------------------------------------------------- report
git_rev="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(cd "$REPO_ROOT" && git status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then
    git_rev="$git_rev (+ uncommitted changes)"
fi
mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$CMDS" "$OUT" "$CLK_TCK" "$PERF_SCALE" "$PERF_ROUNDS" "$PROXY_THREADS" \
    "${#SERVER_PIN[@]}" "$git_rev" "$PROXY_DISPLAY" <<'EOF'
import datetime, os, platform, statistics, subprocess, sys
raw, cmds, out, clk, scale, rounds, threads, pinned, rev, proxy_bin = sys.argv[1:11]
clk, pinned = int(clk), pinned != "0"
rows = [l.split("\t") for l in open(raw).read().split("\n") if l]

def num(x):
    return None if x == "NA" else float(x)

cases = {}  # (target, test, pipe) -> [(rps, p50, p99, proxy s/Mop, redis s/Mop)]
for target, test, pipe, rnd, n, rps, p50, p99, pd, rd, wall in rows:
    n, rps, pd, rd = int(n), num(rps), num(pd), num(rd)
    mops = n / 1e6
    cases.setdefault((target, test, int(pipe)), []).append((
        rps, num(p50), num(p99),
        None if pd is None else pd / clk / mops,
        None if rd is None else rd / clk / mops,
    ))

def med(xs, i):
    v = [x[i] for x in xs if x[i] is not None]
    return statistics.median(v) if v else None

def fmt(v, f="{:.2f}"):
    return "n/a" if v is None else f.format(v)

def cpu_model():
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip()
    except Exception:
        return "?"

redis_v = next((w[2:] for w in version(["redis-server", "--version"]).split() if w.startswith("v=")), "?")
bench_v = version(["redis-benchmark", "--version"]).split()[-1]
names = {
    "direct": "cluster direct (`--cluster`)",
    "proxy-cache": "proxy, cache on",
    "proxy-nocache": "proxy, `--capacity 0`",
}
order = ["direct", "proxy-cache", "proxy-nocache"]
lines = ["# Redis Cluster: direct vs through redis-proxy", ""]
lines.append(
    f"Run by `perf/cluster.sh` on {datetime.date.today()}: {cpu_model()}, {os.cpu_count()} CPUs, "
    f"Linux {platform.release()}, redis-server {redis_v}, redis-benchmark {bench_v}. "
    f"Proxy `{proxy_bin or 'not run'}` at {rev}, `--cluster on --threads {threads} --expire 1h`, "
    "`--capacity 200000` (cache on) or `--capacity 0`, seeded with the first two masters. "
    "The cluster: 3 masters, no replicas, on 127.0.0.1. "
    + ("Cluster nodes and proxy pinned to CPU 0, redis-benchmark to CPU 1. " if pinned else "Nothing pinned. ")
    + f"`redis-benchmark -c 50 -r 10000 -d 32`, {rounds} round(s), medians, PERF_SCALE={scale}."
)
lines += [
    "",
    "Direct, redis-benchmark runs with `--cluster --threads 1` against the first master: it reads "
    "the slot map and gives each client connection one master, with keys carrying a hash tag of "
    "a slot of that master (`key:{tag}:NNNNNNNNNNNN`, so 10,000 keys per master). One thread, as "
    "through the proxy (by default `--cluster` runs a thread per master, whose run times are "
    "rounded up to 250 ms). Through the proxy it runs "
    "without `--cluster` (the proxy looks like one node) on the plain keys "
    "`key:000000000000`..`key:000000009999`, which spread over the three masters by CRC16. Both "
    "key sets are loaded before measuring, and each target gets one unmeasured GET pass first "
    "(which fills the proxy's cache): GETs through the cached proxy are hits, through "
    "`--capacity 0` they are all forwarded.",
    "",
    "| target | test | -P | ops/s | vs direct | proxy CPU s/Mop | Redis CPU s/Mop (3 nodes) | total CPU s/Mop | p50 ms | p99 ms |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
seen = [(t, te, p) for te, p in [("GET", 100), ("GET", 1), ("SET", 100), ("SET", 1)] for t in order if (t, te, p) in cases]
for t, te, p in seen:
    xs = cases[(t, te, p)]
    rps, p50, p99, pcpu, rcpu = (med(xs, i) for i in range(5))
    base = med(cases.get(("direct", te, p), []), 0)
    ratio = None if (rps is None or not base) else rps / base
    total = None if rcpu is None else rcpu + (pcpu or 0)
    lines.append(
        f"| {names[t]} | {te} | {p} | {fmt(rps, '{:,.0f}')} | {fmt(ratio, '{:.2f}x')} | "
        f"{'-' if t == 'direct' else fmt(pcpu)} | {fmt(rcpu)} | {fmt(total)} | {fmt(p50, '{:.3f}')} | {fmt(p99, '{:.3f}')} |"
    )
lines += [
    "",
    "- **ops/s**: redis-benchmark requests per second. **vs direct**: ops/s over the direct "
    "cluster's for the same test and pipeline depth.",
    "- **CPU s/Mop**: CPU seconds (utime+stime of every thread, `/proc/PID/stat`) per million "
    "requests, read just before and after each run: the proxy process, and the three "
    "redis-server nodes summed. Resolution one clock tick "
    f"({1000 // clk} ms), so short runs are coarse.",
    "- Pinned, every server shares CPU 0: ops/s is then bounded by one core for Redis and the "
    "proxy together, and the CPU columns are the fairer comparison.",
    "",
    "Every run:",
    "",
    "| target | test | -P | round | requests | ops/s | seconds | proxy ticks | Redis ticks |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
]
for target, test, pipe, rnd, n, rps, p50, p99, pd, rd, wall in rows:
    lines.append(f"| {target} | {test} | {pipe} | {rnd} | {int(n):,} | {rps} | {wall} | {pd} | {rd} |")
lines += ["", "Commands (ports change from run to run):", "", "```"]
lines += [l for l in open(cmds).read().split("\n") if l]
lines += ["```"]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:len(seen) + 8]))
EOF
log "wrote ${OUT#"$REPO_ROOT"/}"
