#!/usr/bin/env bash
# Real client libraries, at their default settings, against redis-proxy.
#
#   tests/clients/run.sh [--install-only] [redis-py] [node-redis] [ioredis] [redis-py-cluster] [ioredis-cluster]
#
# With no library named, runs the first three (the -cluster ones need a Redis Cluster behind the
# proxy, REDIS_PORT one of its nodes). Installs what the named libraries need first,
# idempotently and quietly (re-installs only when requirements.txt / package-lock.json change):
#   redis-py:            a venv in target/client-venv (python3 -m venv), pip install -r requirements.txt
#   node-redis, ioredis: npm ci in tests/clients (node_modules is git-ignored)
# The install step holds a lock (flock), so several runs may start at once.
#
# The checks read their targets from the environment this script is given:
#   PROXY_PORT, REDIS_PORT  ports on 127.0.0.1 of the proxy and of the redis-server behind it
#   DIRECT=1                point the checks at redis-server (REDIS_PORT) instead of the proxy
#   SKIP_PENDING=1          skip the [pending] checks (SELECT per connection, CLIENT SETNAME/GETNAME),
#                           for a proxy build from before they were supported
# Exit status: 0 if every library's checks passed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET_DIR="$ROOT/target"
VENV="$TARGET_DIR/client-venv"
LOCK="$TARGET_DIR/client-deps.lock"
SCRIPT_TIMEOUT=180 # seconds for one library's checks (they take a few seconds)
INSTALL_TIMEOUT=600 # seconds for one install step

die() {
  echo "tests/clients/run.sh: ERROR: $*" >&2
  exit 1
}

install_only=0
libs=()
for arg in "$@"; do
  case "$arg" in
    --install-only) install_only=1 ;;
    redis-py | node-redis | ioredis | redis-py-cluster | ioredis-cluster) libs+=("$arg") ;;
    -h | --help)
      sed -n '2,17p' "$0"
      exit 0
      ;;
    *) die "unknown argument '$arg' (libraries: redis-py node-redis ioredis redis-py-cluster ioredis-cluster)" ;;
  esac
done
[ ${#libs[@]} -gt 0 ] || libs=(redis-py node-redis ioredis)

need_python=0
need_node=0
for lib in "${libs[@]}"; do
  case "$lib" in
    redis-py | redis-py-cluster) need_python=1 ;;
    *) need_node=1 ;;
  esac
done

# ---------------------------------------------------------------- tools
for tool in flock timeout sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' not found (coreutils/util-linux)"
done
if [ $need_python = 1 ]; then
  command -v python3 >/dev/null || die "python3 not found: install Python 3 (with venv and pip) to run the redis-py checks"
  python3 -m venv --help >/dev/null 2>&1 \
    || die "python3 has no venv module: install it (Debian: apt-get install python3-venv)"
  python3 -m pip --version >/dev/null 2>&1 \
    || die "pip not found for python3: install it (Debian: apt-get install python3-pip)"
fi
if [ $need_node = 1 ]; then
  command -v node >/dev/null || die "node not found: install Node.js (20 or later) to run the node-redis and ioredis checks"
  command -v npm >/dev/null || die "npm not found: install npm to run the node-redis and ioredis checks"
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$node_major" -ge 20 ] || die "node $(node --version) is too old: node-redis 6 needs Node.js 20 or later"
fi

# ---------------------------------------------------------------- install (under a lock)
# Runs a command quietly; on failure shows what it printed and stops.
quiet() {
  local log
  log="$(mktemp)"
  if ! timeout "$INSTALL_TIMEOUT" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "failed: $*"
  fi
  rm -f "$log"
}

install_python() {
  local stamp="$VENV/.installed" want
  want="$(sha256sum <"$HERE/requirements.txt" | cut -d' ' -f1) $(python3 --version 2>&1)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "run.sh: installing redis-py into target/client-venv" >&2
  rm -rf "$VENV"
  quiet python3 -m venv "$VENV"
  quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$want" >"$stamp"
}

install_node() {
  local stamp="$HERE/node_modules/.installed" want
  [ -f "$HERE/package-lock.json" ] || die "tests/clients/package-lock.json is missing (run 'npm install' there and commit it)"
  want="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1) $(node --version)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "run.sh: installing node-redis and ioredis into tests/clients/node_modules (npm ci)" >&2
  (cd "$HERE" && quiet npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

mkdir -p "$TARGET_DIR"
exec 9>"$LOCK"
timeout "$INSTALL_TIMEOUT" flock 9 || die "could not take the install lock $LOCK in ${INSTALL_TIMEOUT}s"
[ $need_python = 1 ] && install_python
[ $need_node = 1 ] && install_node
flock -u 9
exec 9>&-

[ $install_only = 1 ] && exit 0

# ---------------------------------------------------------------- run the checks
[ -n "${REDIS_PORT:-}" ] || die "set REDIS_PORT (and PROXY_PORT, or DIRECT=1)"
[ -n "${PROXY_PORT:-}" ] || [ "${DIRECT:-}" = 1 ] || die "set PROXY_PORT (or DIRECT=1 to check redis-server itself)"

failed=()
for lib in "${libs[@]}"; do
  case "$lib" in
    redis-py) cmd=("$VENV/bin/python" "$HERE/redis_py_check.py") ;;
    node-redis) cmd=(node "$HERE/node_redis_check.mjs") ;;
    ioredis) cmd=(node "$HERE/ioredis_check.mjs") ;;
    redis-py-cluster) cmd=("$VENV/bin/python" "$HERE/redis_py_cluster_check.py") ;;
    ioredis-cluster) cmd=(node "$HERE/ioredis_cluster_check.mjs") ;;
  esac
  echo "== $lib"
  status=0
  timeout --kill-after=5 "$SCRIPT_TIMEOUT" "${cmd[@]}" || status=$?
  if [ $status = 124 ] || [ $status = 137 ]; then
    echo "$lib: checks still running after ${SCRIPT_TIMEOUT}s: stopped"
  fi
  [ $status = 0 ] || failed+=("$lib (exit $status)")
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "run.sh: all checks passed (${libs[*]})"
