# Shared by the perf scripts (sourced): cleanup, ports, background processes, CPU ticks. The
# caller defines TMP, PIDS, die and show_cmd.

# Stops everything started (PIDS: TERM, then KILL after 3 s) and removes TMP, on any exit.
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# N distinct free loopback ports (bound simultaneously so they differ).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# start_bg NAME CMD... : start in background, remember pid in LAST_PID
start_bg() {
    local name="$1"
    shift
    show_cmd "$@"
    (cd "$TMP" && exec "$@") >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_port NAME PID PORT : wait (up to 30 s) until something accepts connections on PORT
wait_port() {
    local name="$1" pid="$2" port="$3" i
    for ((i = 0; i < 600; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$TMP/$name.log" >&2 || true
            die "$name exited during startup"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$TMP/$name.log" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within 30s"
}

# utime+stime (clock ticks) of a process, all threads; empty if gone
cpu_ticks() {
    local stat rest f
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo ""; return 0; }
    rest="${stat##*) }" # comm may contain spaces; fields start at 3 (state)
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12])) # fields 14 (utime) and 15 (stime)
}
