#!/usr/bin/env bash
# Redis's own test suite (Redis 7.0, Debian's source package) in cluster mode: test_helper.tcl
# --cluster-mode in external-server mode, unit by unit, once straight at a fresh ONE-node Redis
# Cluster (one master owning all 16384 slots: the test client is not cluster-aware) and once
# through redis-proxy --cluster on --threads 2 in front of a fresh THREE-master cluster, so that
# keys really spread over nodes. Proxy-only failures are classified with
# perf/redis_suite_cluster_rules.tsv.
#
# This is perf/redis_suite.sh with CLUSTER=1 and, by default, DURABLE=1: through the cluster
# proxy, documented refusals (CLIENT TRACKING, a keyless script touching another master's key)
# would otherwise end whole units at their first test, hiding every later result. It takes
# the same knobs (UNITS, MODE, DURABLE=0 for the abort-at-first-exception view, UNIT_TIMEOUT,
# STALL_TIMEOUT, PROXY_THREADS, PROXY_BIN, OUT, LOG_DIR ...) plus CLUSTER_MASTERS (default 3)
# and CLUSTER_NODE_TIMEOUT (ms, default 60000).
#
# Usage: perf/redis_suite_cluster.sh          (all units, both modes; writes
#                                             perf/results/redis-suite-cluster{,-details}.md)
#        UNITS="unit/type/incr unit/multi" MODE=proxy perf/redis_suite_cluster.sh
# See perf/README.md ("Redis test suite in cluster mode").
set -euo pipefail
export CLUSTER=1
export DURABLE="${DURABLE:-1}"
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redis_suite.sh" "$@"
