#!/usr/bin/env bash
# HTTP hits (wrk) and RESP hits (redis-benchmark) against the same proxy, side by side:
# requests/s and the proxy's CPU seconds per million requests, at pipeline depth 1 and 16.
#
# Usage: perf/http.sh                 (about a minute: 3 rounds x 4 cases x ~3 s)
#        HTTP_ROUNDS=1 perf/http.sh   (quicker)
# Writes perf/results/http.md. Loopback only; every run is bounded in time and count.
set -euo pipefail

PERF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PERF_DIR/.." && pwd)"
OUT="${HTTP_OUT:-$PERF_DIR/results/http.md}"
ROUNDS="${HTTP_ROUNDS:-3}"
SECONDS_PER_RUN="${HTTP_SECONDS:-3}"
PROXY_BIN="${PROXY_BIN:-}"
CLIENTS=50
KEYSPACE=10000
DATASIZE=32
DEPTHS=(1 16)

log() { printf '[http-perf] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || die "HTTP_ROUNDS must be 1-99"
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]?$ ]] || die "HTTP_SECONDS must be 1-99"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
        { $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
fi
command -v python3 >/dev/null || die "python3 is required"

if [[ -z "$PROXY_BIN" ]]; then
    log "cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    PROXY_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/redis-proxy"
fi
[[ -x "$PROXY_BIN" ]] || die "proxy binary not executable: $PROXY_BIN"
CLK_TCK="$(getconf CLK_TCK)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/redis-proxy-http-perf.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Servers on CPU 0, load generators on CPU 1 (as perf/run.sh: unpinned, the kernel's
# placement of three busy processes on two cores swings results by up to 2x).
SERVER_PIN=() CLIENT_PIN=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
fi

read -r REDIS_PORT RESP_PORT HTTP_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}

"${SERVER_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" --daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
"${SERVER_PIN[@]}" "$PROXY_BIN" --redis "127.0.0.1:$REDIS_PORT" --listen "127.0.0.1:$RESP_PORT" \
    --http "127.0.0.1:$HTTP_PORT" --threads 1 --capacity 200000 --expire 1h >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_port "$RESP_PORT"
wait_port "$HTTP_PORT"

# The keys redis-benchmark -r uses (key:000000000042), loaded, then read once through each
# front-end so that everything measured is a hit.
timeout 60 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t set -r "$KEYSPACE" -d "$DATASIZE" \
    -n $((KEYSPACE * 20)) -P 100 -q >/dev/null
timeout 60 redis-benchmark -h 127.0.0.1 -p "$RESP_PORT" -t get -r "$KEYSPACE" \
    -n $((KEYSPACE * 20)) -P 100 -q >/dev/null

# wrk: every thread cycles through pre-built batches of DEPTH requests for random keys of the
# same keyspace (wrk counts each response, so a batch of 16 is 16 requests: pipelining).
cat >"$TMP/keys.lua" <<EOF
local depth = tonumber(os.getenv("DEPTH"))
local batches, i = {}, 0
function init(args)
    math.randomseed(os.time() + math.random(1000))
    for b = 1, 512 do
        local reqs = {}
        for j = 1, depth do
            local key = string.format("key:%012d", math.random(0, $KEYSPACE - 1))
            reqs[j] = wrk.format("GET", "/" .. key)
        end
        batches[b] = table.concat(reqs)
    end
end
function request()
    i = i % #batches + 1
    return batches[i]
end
EOF
# Fill the proxy's cache through HTTP too (one round over the key space).
DEPTH=16 timeout 30 wrk -t 1 -c 8 -d 1s -s "$TMP/keys.lua" "http://127.0.0.1:$HTTP_PORT/" >/dev/null

ticks() {
    local rest f
    rest="$(cut -d')' -f2- "/proc/$PROXY_PID/stat")"
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

RAW="$TMP/raw.tsv"
: >"$RAW"
# run FRONT DEPTH ROUND: one bounded run; appends "front depth round requests seconds ticks"
run() {
    local front="$1" depth="$2" round="$3" t0 t1 c0 c1 n out
    c0="$(ticks)"
    t0="$(date +%s.%N)"
    if [[ "$front" == http ]]; then
        out="$(DEPTH=$depth timeout $((SECONDS_PER_RUN + 30)) "${CLIENT_PIN[@]}" wrk -t 1 \
            -c "$CLIENTS" -d "${SECONDS_PER_RUN}s" -s "$TMP/keys.lua" "http://127.0.0.1:$HTTP_PORT/")"
        n="$(awk '/requests in/ { print $1 }' <<<"$out")"
        grep -q "Non-2xx" <<<"$out" && die "wrk saw non-2xx responses: $out"
    else
        # Sized from the HTTP run of the same depth, to last about as long.
        n="$(awk -v f="$front" -v d="$depth" '$1 == "http" && $2 == d { n = $4 / $5 } END { printf "%d", (n ? n : 100000) * '"$SECONDS_PER_RUN"' }' "$RAW")"
        out="$(timeout $((SECONDS_PER_RUN * 10 + 30)) "${CLIENT_PIN[@]}" redis-benchmark -h 127.0.0.1 \
            -p "$RESP_PORT" -c "$CLIENTS" -r "$KEYSPACE" -d "$DATASIZE" -t get -P "$depth" -n "$n" --csv)"
    fi
    t1="$(date +%s.%N)"
    c1="$(ticks)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$front" "$depth" "$round" "$n" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" $((c1 - c0)) >>"$RAW"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for depth in "${DEPTHS[@]}"; do
        for front in http resp; do
            log "round $round: $front, depth $depth"
            run "$front" "$depth" "$round"
        done
    done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$CLK_TCK" "$OUT" "$ROUNDS" "$SECONDS_PER_RUN" "${#SERVER_PIN[@]}" <<'EOF'
import statistics, sys, datetime, platform, subprocess
raw, clk, out, rounds, secs, pinned = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6] != "0"
rows = [l.split("\t") for l in open(raw).read().split("\n") if l]
cases = {}
for front, depth, _, n, wall, ticks in rows:
    n, wall, ticks = int(n), float(wall), int(ticks)
    cases.setdefault((front, int(depth)), []).append((n / wall, ticks / clk / (n / 1e6)))
def cpu_model():
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
def version(cmd, pick):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        out = (r.stdout + r.stderr).split()
        return pick(out)
    except Exception:
        return "?"
redis_v = version(["redis-server", "--version"], lambda w: "redis-server " + next(x[2:] for x in w if x.startswith("v=")))
wrk_v = version(["wrk", "-v"], lambda w: "wrk " + w[1].split("/")[-1].split("-")[0])
bench_v = version(["redis-benchmark", "--version"], lambda w: "redis-benchmark " + w[1])
lines = ["# HTTP vs RESP hits on one proxy", ""]
lines.append(
    f"Run by `perf/http.sh` on {datetime.date.today()}: {cpu_model()}, Linux {platform.release()}, "
    f"{redis_v}, {wrk_v}, {bench_v}. Proxy `--threads 1 --capacity 200000 "
    f"--expire 1h`; every request is a hit on one of 10,000 keys of 32 bytes, chosen at random. "
    + ("Proxy and Redis pinned to CPU 0, the load generator to CPU 1. " if pinned else "")
    + f"50 connections, one load-generator thread, ~{secs} s per run, {rounds} interleaved rounds, medians. "
    "HTTP: `wrk` with a Lua script that sends batches of *depth* requests (wrk counts each response). "
    "RESP: `redis-benchmark -t get -r 10000 -d 32 -P depth`. CPU: the proxy's utime+stime from "
    "`/proc/PID/stat` per million requests. The two load generators are different programs: "
    "at depth 1 both are bound by system calls and their own cost, so the proxy's CPU per request "
    "is the fairer comparison there."
)
lines += ["", "| depth | HTTP req/s | RESP req/s | HTTP / RESP | HTTP CPU s/Mreq | RESP CPU s/Mreq |",
          "|---:|---:|---:|---:|---:|---:|"]
for depth in sorted({d for _, d in cases}):
    h, r = cases.get(("http", depth), []), cases.get(("resp", depth), [])
    med = lambda xs, i: statistics.median(x[i] for x in xs) if xs else float("nan")
    hr, rr = med(h, 0), med(r, 0)
    lines.append(f"| {depth} | {hr:,.0f} | {rr:,.0f} | {hr / rr:.2f}x | {med(h, 1):.2f} | {med(r, 1):.2f} |")
lines += ["", "Every run:", "", "| front-end | depth | round | requests | seconds | req/s | CPU s/Mreq |", "|---|---:|---:|---:|---:|---:|---:|"]
for front, depth, rnd, n, wall, ticks in rows:
    n, wall, ticks = int(n), float(wall), int(ticks)
    lines.append(f"| {front} | {depth} | {rnd} | {n:,} | {wall:.2f} | {n / wall:,.0f} | {ticks / clk / (n / 1e6):.2f} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "wrote ${OUT#"$REPO_ROOT"/}"
