#!/usr/bin/env bash
# Run Redis's own test suite (Redis 7.0, Debian's source package) in external-server mode,
# unit by unit, once straight at a fresh redis-server and once through redis-proxy in front
# of a fresh redis-server, and compare.
#
# Usage: perf/redis_suite.sh                          (all units, both modes)
#        UNITS="unit/type/incr unit/multi" MODE=proxy perf/redis_suite.sh
#        CLUSTER=1 perf/redis_suite.sh  (--cluster-mode: direct = a one-node Redis Cluster,
#                                        proxy = redis-proxy --cluster on before 3 masters;
#                                        perf/redis_suite_cluster.sh does this)
# See perf/README.md ("Redis test suite") for the knobs and how to read the results.
set -euo pipefail

PERF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PERF_DIR/.." && pwd)"
RESULTS_DIR="$PERF_DIR/results"
HELPER="$PERF_DIR/redis_suite.py"

DEFAULT_UNITS="unit/type/string unit/type/incr unit/type/hash unit/type/set unit/type/zset
unit/type/list unit/type/list-2 unit/type/stream unit/type/stream-cgroups unit/multi unit/expire
unit/keyspace unit/scan unit/bitops unit/bitfield unit/sort unit/dump unit/geo unit/hyperloglog
unit/scripting unit/functions unit/info-command unit/introspection-2 unit/protocol unit/quit
unit/pubsub unit/tracking"
UNITS="${UNITS:-$DEFAULT_UNITS}"
MODE="${MODE:-both}"
UNIT_TIMEOUT="${UNIT_TIMEOUT:-600}"    # outer `timeout` per unit run, seconds
STALL_TIMEOUT="${STALL_TIMEOUT:-120}"  # test_helper.tcl --timeout: seconds without progress
PROXY_THREADS="${PROXY_THREADS:-2}"
PROXY_BIN="${PROXY_BIN:-}"
DURABLE="${DURABLE:-0}"                # 1: pass --durable (exceptions count as failures, unit goes on)
CLUSTER="${CLUSTER:-0}"                # 1: Redis Cluster backends and test_helper --cluster-mode
CLUSTER_MASTERS="${CLUSTER_MASTERS:-3}"  # CLUSTER=1: masters behind the proxy (direct: always 1)
CLUSTER_NODE_TIMEOUT="${CLUSTER_NODE_TIMEOUT:-60000}"  # CLUSTER=1: cluster-node-timeout, ms
NAME="redis-suite"
[[ "$CLUSTER" == 1 ]] && NAME="redis-suite-cluster"
OUT="${OUT:-$RESULTS_DIR/$NAME}"      # writes $OUT.md and $OUT-details.md
CACHE_DIR="${REDIS_SUITE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-proxy}"
SRC_CACHE="$CACHE_DIR/redis-src"
LOG_DIR="${LOG_DIR:-$CACHE_DIR/$NAME-logs}"  # raw logs of the last run (not committed)
RULES="${RULES:-}"                     # classification rules of proxy-only failures (TSV)
[[ -z "$RULES" && "$CLUSTER" == 1 ]] && RULES="$PERF_DIR/redis_suite_cluster_rules.tsv"

log() { printf '[redis-suite] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$MODE" in direct) MODES="direct" ;; proxy) MODES="proxy" ;; both) MODES="direct proxy" ;;
    *) die "MODE must be direct, proxy or both" ;; esac
[[ "$DURABLE" == 0 || "$DURABLE" == 1 ]] || die "DURABLE must be 0 or 1"
[[ "$CLUSTER" == 0 || "$CLUSTER" == 1 ]] || die "CLUSTER must be 0 or 1"
[[ -z "$RULES" || -f "$RULES" ]] || die "RULES: no such file: $RULES"
for v in UNIT_TIMEOUT STALL_TIMEOUT PROXY_THREADS CLUSTER_MASTERS CLUSTER_NODE_TIMEOUT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done

# ---------------------------------------------------------------- dependencies
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages"
    SUDO="sudo"
fi
APT_UPDATED=0
apt_update() {
    [[ "$APT_UPDATED" == 1 ]] && return 0
    log "apt-get update"
    $SUDO apt-get update -q
    APT_UPDATED=1
}

has_deb_src() {  # a Types: line with deb but without deb-src means it is not enabled
    grep -E '^Types:' "$1" | grep -vqE '(^|[[:space:]])deb-src([[:space:]]|$)' && return 1
    return 0
}

# Enable source packages. Idempotent: only Types: lines lacking deb-src are touched, and the
# original file is copied once to /etc/apt/debian.sources.before-deb-src (outside
# sources.list.d, so apt does not complain about the extension).
enable_deb_src() {
    local f=/etc/apt/sources.list.d/debian.sources
    if [[ -f "$f" ]]; then
        if ! has_deb_src "$f"; then
            log "enabling deb-src in $f (copy kept as /etc/apt/debian.sources.before-deb-src)"
            $SUDO cp -n "$f" /etc/apt/debian.sources.before-deb-src
            $SUDO sed -i -E '/^Types:/{/(^|[[:space:]])deb-src([[:space:]]|$)/!s/$/ deb-src/}' "$f"
            APT_UPDATED=0
        fi
    elif [[ -f /etc/apt/sources.list ]] && ! grep -qE '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; then
        # older one-line format: add a deb-src twin of each deb line in a separate file
        log "adding deb-src lines in /etc/apt/sources.list.d/redis-suite-src.list"
        sed -n -E 's/^deb /deb-src /p' /etc/apt/sources.list | $SUDO tee /etc/apt/sources.list.d/redis-suite-src.list >/dev/null
        APT_UPDATED=0
    fi
}

missing=()
for b in tclsh redis-server redis-cli dpkg-source python3; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
find_src() { ls -d "$SRC_CACHE"/redis-[0-9]*/ 2>/dev/null | head -n 1; }
SRC="$(find_src || true)"
[[ -n "$SRC" && -f "$SRC/tests/test_helper.tcl" ]] || SRC=""

if [[ ${#missing[@]} -gt 0 || -z "$SRC" ]]; then
    enable_deb_src
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "missing: ${missing[*]}; installing dpkg-dev tcl redis-server redis-tools python3"
        apt_update
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dpkg-dev tcl redis-server redis-tools python3
    fi
    if [[ -z "$SRC" ]]; then
        apt_update
        mkdir -p "$SRC_CACHE"
        log "apt-get source redis (into the cache dir)"
        (cd "$SRC_CACHE" && apt-get source -q redis) || die "apt-get source redis failed"
        SRC="$(find_src)"
        [[ -n "$SRC" && -f "$SRC/tests/test_helper.tcl" ]] || die "no tests/test_helper.tcl in the redis source"
    fi
fi
SRC="${SRC%/}"
for b in tclsh redis-server redis-cli python3 timeout; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found after install"
done
REDIS_VERSION="$(redis-server --version | sed -nE 's/.* v=([^ ]+).*/\1/p')"
SRC_VERSION="$(basename "$SRC" | sed 's/^redis-//')"
[[ "$REDIS_VERSION" == "$SRC_VERSION" ]] ||
    log "warning: redis-server is $REDIS_VERSION but the test suite is from $SRC_VERSION"

if [[ " $MODES " == *" proxy "* ]]; then
    if [[ -z "$PROXY_BIN" ]]; then
        log "cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
        PROXY_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/redis-proxy"
    fi
    [[ -x "$PROXY_BIN" ]] || die "proxy binary not executable: $PROXY_BIN"
fi

# ---------------------------------------------------------------- temp dir + cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/redis-suite.XXXXXX")"
PIDS=()       # redis-server and proxy processes
TEST_PGID=""  # process group of the running `timeout tclsh ...` (timeout leads its own group)

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    if [[ -n "$TEST_PGID" ]]; then kill -TERM -- "-$TEST_PGID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    if [[ -n "$TEST_PGID" ]]; then kill -KILL -- "-$TEST_PGID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_pid() {  # stop_pid PID: TERM, wait up to 5 s, then KILL; drop it from PIDS
    local pid="$1" i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]+"${PIDS[@]}"}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

stop_proxy_status() {  # stop_proxy_status PID: as stop_pid, and PEXIT = its exit status
    # (0 or 143 after SIGTERM; 134 is SIGABRT: the proxy aborts on a panic; 137: it ignored TERM)
    local pid="$1" i keep=()
    PEXIT=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || PEXIT=$?
    for i in "${PIDS[@]+"${PIDS[@]}"}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

wait_ready() {  # wait_ready PORT PID: until a command that reaches redis-server answers
    local port="$1" pid="$2" i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ "$(redis-cli -h 127.0.0.1 -p "$port" exists redis-suite-probe 2>/dev/null)" == 0 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Config for the fresh redis-server. Besides what the task fixes (--save '' --appendonly no,
# a temp dir), the settings of tests/assets/default.conf that differ from redis-server's
# defaults, i.e. what the suite gives the servers it starts itself: DEBUG, protected configs
# and MODULE allowed, keyspace events KEA, latency-monitor-threshold 1, loglevel verbose.
REDIS_ARGS=(--bind 127.0.0.1 --save '' --appendonly no --daemonize no
    --enable-debug-command yes --enable-protected-configs yes --enable-module-command yes
    --notify-keyspace-events KEA --latency-monitor-threshold 1 --loglevel verbose
    --repl-diskless-sync-delay 0)

TEST_ARGS=(--singledb --tags -needs:repl --tags -needs:save --tags -needs:debug
    --clients 1 --timeout "$STALL_TIMEOUT")
[[ "$DURABLE" == 1 ]] && TEST_ARGS+=(--durable)
# --cluster-mode: skip the tests tagged cluster:skip (it implies --singledb)
[[ "$CLUSTER" == 1 ]] && TEST_ARGS+=(--cluster-mode)

# CLUSTER=1: every node gets REDIS_ARGS plus these (and its own --cluster-port). The node
# timeout is long so that a node busy for seconds (a slow script the test then kills) is
# not voted down by the others, which would put the whole cluster in CLUSTERDOWN.
CLUSTER_ARGS=(--cluster-enabled yes --cluster-config-file nodes.conf
    --cluster-node-timeout "$CLUSTER_NODE_TIMEOUT")

# test_helper.tcl runs from a private copy of tests/ (it wipes tests/tmp at start, and
# concurrent runs from one source tree would step on each other)
SUITE="$TMP/suite"
mkdir -p "$SUITE"
cp -R "$SRC/tests" "$SUITE/"
rm -rf "$SUITE/tests/tmp" && mkdir "$SUITE/tests/tmp"

RUNS="$TMP/runs.jsonl"
: >"$RUNS"
mkdir -p "$LOG_DIR" "$(dirname "$OUT")"
rm -f "$LOG_DIR"/*.log "$LOG_DIR/runs.jsonl"

start_redis() {  # start_redis DIR -> sets RPORT RPID
    local dir="$1" try
    for try in 1 2 3; do
        RPORT="$(python3 "$HELPER" port)"
        redis-server "${REDIS_ARGS[@]}" --port "$RPORT" --dir "$dir" --logfile "$dir/redis.log" \
            </dev/null >/dev/null 2>&1 &
        RPID=$!
        PIDS+=("$RPID")
        wait_ready "$RPORT" "$RPID" && return 0
        stop_pid "$RPID"
    done
    die "redis-server did not start (log: $dir/redis.log)"
}

wait_ping() {  # wait_ping PORT PID: until redis-server answers PING
    local port="$1" pid="$2" i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    return 1
}

start_node() {  # start_node DIR -> sets NPORT NPID (a cluster-enabled redis-server, no slots)
    local dir="$1" try bus
    mkdir -p "$dir"
    for try in 1 2 3; do
        NPORT="$(python3 "$HELPER" port)"
        bus="$(python3 "$HELPER" port)"
        [[ "$bus" != "$NPORT" ]] || continue
        redis-server "${REDIS_ARGS[@]}" "${CLUSTER_ARGS[@]}" --port "$NPORT" --cluster-port "$bus" \
            --dir "$dir" --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
        NPID=$!
        PIDS+=("$NPID")
        wait_ping "$NPORT" "$NPID" && return 0
        stop_pid "$NPID"
    done
    die "cluster node did not start (log: $dir/redis.log)"
}

cluster_settled() {  # every node: cluster_state:ok, all nodes known, the same CLUSTER SLOTS
    local p first="" slots n="${#NODE_PORTS[@]}"
    for p in "${NODE_PORTS[@]}"; do
        timeout 5 redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | tr -d '\r' >"$TMP/cinfo" || return 1
        grep -qx 'cluster_state:ok' "$TMP/cinfo" || return 1
        grep -qx "cluster_known_nodes:$n" "$TMP/cinfo" || return 1
        slots="$(timeout 5 redis-cli -h 127.0.0.1 -p "$p" cluster slots 2>/dev/null)" || return 1
        [[ -n "$slots" ]] || return 1
        if [[ -z "$first" ]]; then first="$slots"; elif [[ "$slots" != "$first" ]]; then return 1; fi
    done
}

# start_cluster DIR N -> NODE_PORTS NODE_PIDS (nodes in DIR/node0..), RPORT RPID (node 0).
# N=1: CLUSTER ADDSLOTSRANGE 0 16383 on the one node; else redis-cli --cluster create, no replicas.
start_cluster() {
    local dir="$1" n="$2" i create=(redis-cli --cluster create)
    NODE_PORTS=() NODE_PIDS=()
    for ((i = 0; i < n; i++)); do
        start_node "$dir/node$i"
        NODE_PORTS+=("$NPORT") NODE_PIDS+=("$NPID")
    done
    if ((n == 1)); then
        [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "${NODE_PORTS[0]}" cluster addslotsrange 0 16383)" == OK ]] ||
            die "CLUSTER ADDSLOTSRANGE 0 16383 failed"
    else
        for i in "${NODE_PORTS[@]}"; do create+=("127.0.0.1:$i"); done
        timeout 60 "${create[@]}" --cluster-replicas 0 --cluster-yes </dev/null >"$dir/create.log" 2>&1 ||
            { cat "$dir/create.log" >&2; die "redis-cli --cluster create failed"; }
        grep -q "All 16384 slots covered" "$dir/create.log" || { cat "$dir/create.log" >&2; die "cluster create did not cover all slots"; }
    fi
    for ((i = 0; i < 300; i++)); do cluster_settled && break; sleep 0.1; done
    cluster_settled || die "cluster of $n node(s) did not settle in 30 s"
    RPORT="${NODE_PORTS[0]}" RPID="${NODE_PIDS[0]}"
    wait_ready_any "$RPORT" "$RPID" || die "cluster node 0 does not answer"
}

wait_ready_any() {  # wait_ready_any PORT PID: as wait_ready, but a -MOVED reply counts as ready
    local port="$1" pid="$2" i r
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        r="$(redis-cli -h 127.0.0.1 -p "$port" exists redis-suite-probe 2>/dev/null)"
        [[ "$r" == 0 || "$r" == MOVED* ]] && return 0
        sleep 0.1
    done
    return 1
}

start_proxy() {  # start_proxy DIR RPORT -> sets PPORT PPID_ (CLUSTER=1: seeds NODE_PORTS)
    local dir="$1" rport="$2" try redis_arg="redis://127.0.0.1:$2" extra=() p
    if [[ "$CLUSTER" == 1 ]]; then
        redis_arg=""
        for p in "${NODE_PORTS[@]}"; do redis_arg+="${redis_arg:+,}127.0.0.1:$p"; done
        extra=(--cluster on)
    fi
    for try in 1 2 3; do
        PPORT="$(python3 "$HELPER" port)"
        "$PROXY_BIN" --listen "127.0.0.1:$PPORT" --redis "$redis_arg" "${extra[@]+"${extra[@]}"}" \
            --threads "$PROXY_THREADS" </dev/null >"$dir/proxy.log" 2>&1 &
        PPID_=$!
        PIDS+=("$PPID_")
        wait_ready "$PPORT" "$PPID_" && return 0
        stop_pid "$PPID_"
    done
    die "redis-proxy did not start (log: $dir/proxy.log)"
}

run_one() {  # run_one UNIT MODE
    local unit="$1" mode="$2" safe dir port rc t0 secs died=()
    safe="${unit#unit/}"; safe="${safe//\//_}"
    dir="$TMP/$mode-$safe"
    mkdir -p "$dir"
    if [[ "$CLUSTER" == 1 ]]; then
        local n=1
        [[ "$mode" == proxy ]] && n="$CLUSTER_MASTERS"
        start_cluster "$dir" "$n"
    else
        start_redis "$dir"
        NODE_PORTS=("$RPORT") NODE_PIDS=("$RPID")
    fi
    port="$RPORT"
    if [[ "$mode" == proxy ]]; then
        start_proxy "$dir" "$RPORT"
        port="$PPORT"
    fi
    local logf="$LOG_DIR/$mode-$safe.log" tport
    # test_helper listens for its test client on the first free port from baseport-32 (it
    # probes P and P+10000); a free P chosen now keeps concurrent runs apart
    tport="$(python3 "$HELPER" testport)"
    t0=$(date +%s)
    # timeout puts itself and tclsh (with the test client tclsh spawns) in a new process
    # group, so one kill of that group stops all of them.
    (cd "$SUITE" && exec env TERM=dumb timeout -k 10 "$UNIT_TIMEOUT" tclsh tests/test_helper.tcl \
        --host 127.0.0.1 --port "$port" "${TEST_ARGS[@]}" --baseport $((tport + 32)) \
        --single "$unit") </dev/null >"$logf" 2>&1 &
    TEST_PGID=$!
    rc=0
    wait "$TEST_PGID" || rc=$?
    kill -KILL -- "-$TEST_PGID" 2>/dev/null || true  # a test client left behind, if any
    TEST_PGID=""
    secs=$(($(date +%s) - t0))
    local i pid
    for pid in "${NODE_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || died=(--server-died); done
    if [[ "$CLUSTER" == 1 ]] && ! cluster_settled; then
        log "  warning: after $unit ($mode) the cluster is not settled (cluster_state, nodes or slots)"
        printf '[redis-suite] warning: cluster not settled after the unit\n' >>"$logf"
    fi
    local pexit=()
    if [[ "$mode" == proxy && "$CLUSTER" == 1 ]]; then
        kill -0 "$PPID_" 2>/dev/null || { died=(--server-died); log "  redis-proxy exited during $unit"; }
        # stopped first, so that its log has what it wrote on the way out (a panic's message)
        stop_proxy_status "$PPID_"
        pexit=(--proxy-exit "$PEXIT")
        [[ "$PEXIT" == 0 || "$PEXIT" == 143 ]] || log "  redis-proxy exit status $PEXIT after $unit"
        cp "$dir/proxy.log" "$LOG_DIR/$mode-$safe.proxy.log" 2>/dev/null || true
    elif [[ "$mode" == proxy ]]; then
        kill -0 "$PPID_" 2>/dev/null || { died=(--server-died); log "  redis-proxy exited during $unit"; }
        cp "$dir/proxy.log" "$LOG_DIR/$mode-$safe.proxy.log" 2>/dev/null || true
        stop_pid "$PPID_"
    fi
    if [[ "$CLUSTER" == 1 ]]; then
        for ((i = 0; i < ${#NODE_PIDS[@]}; i++)); do
            cp "$dir/node$i/redis.log" "$LOG_DIR/$mode-$safe.node$i.redis.log" 2>/dev/null || true
            stop_pid "${NODE_PIDS[i]}"
        done
    else
        cp "$dir/redis.log" "$LOG_DIR/$mode-$safe.redis.log" 2>/dev/null || true
        stop_pid "$RPID"
    fi
    python3 "$HELPER" parse "$logf" --unit "$unit" --mode "$mode" --rc "$rc" --seconds "$secs" \
        --src "$SUITE/" --src "$SRC/" --strip "$TMP" "${died[@]+"${died[@]}"}" \
        "${pexit[@]+"${pexit[@]}"}" >>"$RUNS"
    python3 - "$RUNS" <<'EOF' >&2
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().split("\n")[-1])
exc = ("  " + r["exception"][:150]) if r["exception"] else ""
print("[redis-suite]   %-6s %-26s %3d ok %3d err  %-18s %4ds%s" % (r["mode"], r["unit"], len(r["ok"]), len(r["err"]), r["status"], r["seconds"], exc))
EOF
}

log "redis-server $REDIS_VERSION, test suite from the Debian source package redis $SRC_VERSION"
log "units: $(echo $UNITS | wc -w), modes: $MODES, per-unit timeout ${UNIT_TIMEOUT}s, stall timeout ${STALL_TIMEOUT}s"
START=$(date +%s)
for unit in $UNITS; do
    [[ -f "$SRC/tests/$unit.tcl" ]] || die "no such unit: $unit"
    for mode in $MODES; do
        run_one "$unit" "$mode"
    done
done
TOTAL=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
commit="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(cd "$REPO_ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo ' (with uncommitted changes to src/ or Cargo.*)' || true)"
if [[ "$CLUSTER" == 1 ]]; then
    node_cmd="redis-server $(printf '%q ' "${REDIS_ARGS[@]}" "${CLUSTER_ARGS[@]}")--port NPORT --cluster-port BUSPORT --dir TMPDIR"
    {
        echo "# Redis's own test suite in cluster mode, a one-node cluster vs redis-proxy before $CLUSTER_MASTERS masters"
        echo
        echo "- Generated by \`perf/redis_suite_cluster.sh\` (\`CLUSTER=1 perf/redis_suite.sh\`) on $(date -u +%Y-%m-%d) (MODE=$MODE DURABLE=$DURABLE), total run time ${TOTAL}s."
        echo "- redis-server $REDIS_VERSION ($(redis-server --version | sed -nE 's/.*malloc=([^ ]+).*/malloc=\1/p')); test suite: Debian source package \`redis\` $(cd "$SRC_CACHE" && ls redis_*.dsc 2>/dev/null | sed -E 's/^redis_(.*)\.dsc$/\1/' | head -n 1)."
        echo "- redis-proxy at commit \`$commit\`$dirty, \`--cluster on --threads $PROXY_THREADS\`, other flags at their defaults (cache on, tracking invalidation)."
        echo "- Machine: $(nproc) CPUs, $(uname -sr)."
        echo "- Every node, fresh per unit and mode: \`$node_cmd\`."
        echo "- Direct: one node, made a cluster owning every slot with \`CLUSTER ADDSLOTSRANGE 0 16383\` (the test client is not cluster-aware)."
        echo "- Proxy: $CLUSTER_MASTERS nodes joined by \`redis-cli --cluster create 127.0.0.1:NPORT1 ... --cluster-replicas 0 --cluster-yes\`, then \`target/release/redis-proxy --listen 127.0.0.1:PPORT --redis 127.0.0.1:NPORT1,... --cluster on --threads $PROXY_THREADS\`. Both: every node must show \`cluster_state:ok\`, all nodes and the same \`CLUSTER SLOTS\` before the unit starts."
        echo "- Each unit, from a copy of the extracted source's \`tests/\`: \`timeout -k 10 $UNIT_TIMEOUT tclsh tests/test_helper.tcl --host 127.0.0.1 --port PORT ${TEST_ARGS[*]} --baseport TPORT+32 --single unit/X\` (PORT = the one node direct, PPORT through the proxy; TPORT: a free port for test_helper's own server). \`--cluster-mode\` skips the tests tagged \`cluster:skip\` in both modes."
    } >"$TMP/header.md"
else
{
    echo "# Redis's own test suite, direct vs through redis-proxy"
    echo
    echo "- Generated by \`perf/redis_suite.sh\` on $(date -u +%Y-%m-%d) (MODE=$MODE DURABLE=$DURABLE), total run time ${TOTAL}s."
    echo "- redis-server $REDIS_VERSION ($(redis-server --version | sed -nE 's/.*malloc=([^ ]+).*/malloc=\1/p')); test suite: Debian source package \`redis\` $(cd "$SRC_CACHE" && ls redis_*.dsc 2>/dev/null | sed -E 's/^redis_(.*)\.dsc$/\1/' | head -n 1)."
    echo "- redis-proxy at commit \`$commit\`$dirty, \`--threads $PROXY_THREADS\`, other flags at their defaults (cache on, tracking invalidation)."
    echo "- Machine: $(nproc) CPUs, $(uname -sr)."
    echo "- One fresh redis-server per unit and mode: \`redis-server $(printf '%q ' "${REDIS_ARGS[@]}")--port RPORT --dir TMPDIR\`."
    echo "- Proxy mode: \`target/release/redis-proxy --listen 127.0.0.1:PPORT --redis redis://127.0.0.1:RPORT --threads $PROXY_THREADS\`."
    echo "- Each unit, from a copy of the extracted source's \`tests/\`: \`timeout -k 10 $UNIT_TIMEOUT tclsh tests/test_helper.tcl --host 127.0.0.1 --port PORT ${TEST_ARGS[*]} --baseport TPORT+32 --single unit/X\` (PORT = RPORT direct, PPORT through the proxy; TPORT: a free port for test_helper's own server)."
} >"$TMP/header.md"
fi
log "total run time ${TOTAL}s"
cp "$RUNS" "$LOG_DIR/runs.jsonl"
python3 "$HELPER" report "$RUNS" --md "$OUT.md" --details "$OUT-details.md" --header "$TMP/header.md" \
    ${RULES:+--rules "$RULES"}
log "wrote ${OUT#"$REPO_ROOT"/}.md and ${OUT#"$REPO_ROOT"/}-details.md; raw logs in $LOG_DIR"
