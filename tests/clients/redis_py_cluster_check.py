#!/usr/bin/env python3
"""redis-py (8.x) in cluster mode (RedisCluster, default settings) against redis-proxy in front
of a Redis Cluster, which it sees as a cluster of one node owning every slot.

Environment:
  PROXY_PORT    port of the proxy on 127.0.0.1 (the target of every check)
  REDIS_PORT    port of one node of the cluster, for writes made straight to it
  DIRECT=1      point the checks at the cluster itself (REDIS_PORT) instead of the proxy

Prints one PASS/FAIL line per check and exits 1 if any check failed.
"""

import os
import sys
import time
import traceback

from redis.cluster import RedisCluster


def env_port(name):
    value = os.environ.get(name)
    if not value or not value.isdigit():
        sys.exit(f"redis-py-cluster: set {name} to a port number (got {value!r})")
    return int(value)


REDIS_PORT = env_port("REDIS_PORT")
DIRECT = os.environ.get("DIRECT") == "1"
TARGET_PORT = REDIS_PORT if DIRECT else env_port("PROXY_PORT")
failed = []


def check(name):
    def wrap(f):
        try:
            f()
            print(f"PASS {name}")
        except Exception:
            failed.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}")
        return f

    return wrap


rc = RedisCluster(host="127.0.0.1", port=TARGET_PORT)
direct = RedisCluster(host="127.0.0.1", port=REDIS_PORT)
keys = [f"pycluster:{i}" for i in range(50)]


@check("set and get keys of every slot range")
def _():
    for k in keys:
        assert rc.set(k, f"v-{k}")
    for k in keys:
        assert rc.get(k) == f"v-{k}".encode(), k
        assert direct.get(k) == f"v-{k}".encode(), k


@check("mget_nonatomic and delete across slots")
def _():
    got = rc.mget_nonatomic(keys + ["pycluster:missing"])
    assert got == [f"v-{k}".encode() for k in keys] + [None], got
    assert rc.delete(*keys[:10]) == 10
    assert rc.exists(*keys) == len(keys) - 10


@check("a write straight to the cluster is seen (no stale cache)")
def _():
    k = keys[20]
    assert rc.get(k) == f"v-{k}".encode()
    direct.set(k, "changed")
    deadline = time.time() + 5
    while rc.get(k) != b"changed":
        assert time.time() < deadline, "still the old value"
        time.sleep(0.02)


@check("cluster pipeline")
def _():
    for k in keys[10:20]:
        rc.delete(k + ":n")
    p = rc.pipeline()
    for k in keys[10:20]:
        p.incr(k + ":n")
        p.get(k + ":n")
    got = p.execute()
    assert got == [1, b"1"] * 10, got


@check("hash-tagged transaction")
def _():
    rc.delete("{tx}a")
    p = rc.pipeline(transaction=True)
    p.set("{tx}a", 1)
    p.incr("{tx}a")
    p.get("{tx}a")
    got = p.execute()
    assert got == [b"OK", 2, b"2"], got  # as redis-py relays it straight from a cluster node


@check("keyless commands")
def _():
    assert rc.ping()


rc.close()
direct.close()
if failed:
    print(f"redis-py-cluster: {len(failed)} failed: {failed}")
    sys.exit(1)
print("redis-py-cluster: all checks passed")
