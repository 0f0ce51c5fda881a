#!/usr/bin/env python3
"""redis-py (8.x) at its DEFAULT connection settings against redis-proxy.

redis-py 8 opens every connection with HELLO 3 (RESP3); nothing here forces RESP2.

Environment:
  PROXY_PORT    port of the proxy on 127.0.0.1 (the target of every check)
  REDIS_PORT    port of the backing redis-server, for writes made straight to Redis
  DIRECT=1      point the checks at redis-server itself (REDIS_PORT) instead of the proxy,
                to show that the checks themselves are right
  SKIP_PENDING=1  skip the [pending] checks: features the proxy gained last,
                Redis(db=1), CLIENT SETNAME/GETNAME,
                for a proxy build from before they were supported

Prints one PASS/FAIL/SKIP line per check and exits 1 if any check failed.
"""

import os
import signal
import sys
import threading
import time
import traceback

import redis

HOST = "127.0.0.1"
CHECK_TIMEOUT_S = 15  # watchdog for one check: no check may hang the run


def env_port(name):
    value = os.environ.get(name)
    if not value or not value.isdigit():
        sys.exit(f"redis-py: set {name} to a port number (got {value!r})")
    return int(value)


REDIS_PORT = env_port("REDIS_PORT")
DIRECT = os.environ.get("DIRECT") == "1"
TARGET_PORT = REDIS_PORT if DIRECT else env_port("PROXY_PORT")
TARGET_NAME = "redis-server (direct)" if DIRECT else "redis-proxy"
SKIP_PENDING = os.environ.get("SKIP_PENDING") == "1"
P = f"clients:py:{os.getpid()}:"  # key prefix: runs never share keys


class CheckFailed(Exception):
    pass


class CheckTimeout(Exception):
    pass


def expect(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def target(**kwargs):
    """A client of the target with the library's defaults (only the address given)."""
    return redis.Redis(host=HOST, port=TARGET_PORT, **kwargs)


def straight_to_redis(**kwargs):
    return redis.Redis(host=HOST, port=REDIS_PORT, **kwargs)


# --------------------------------------------------------------------------- checks


def check_handshake():
    r = target()
    expect(r.ping(), True, "PING")
    conn = r.connection_pool.get_connection()
    try:
        expect(conn.protocol, 3, "redis-py default protocol")
        meta = conn.handshake_metadata or {}
        proto = meta.get(b"proto", meta.get("proto"))
        expect(proto, 3, "proto in the HELLO 3 reply")
    finally:
        r.connection_pool.release(conn)
    r.close()


def check_strings():
    r = target()
    expect(r.set(P + "a", "1"), True, "SET a")
    expect(r.set(P + "b", "two"), True, "SET b")
    expect(r.get(P + "a"), b"1", "GET a")
    expect(r.get(P + "a"), b"1", "GET a (again, may be a cache hit)")
    expect(r.mget([P + "a", P + "missing", P + "b"]), [b"1", None, b"two"], "MGET a missing b")
    expect(r.delete(P + "a", P + "b", P + "missing"), 2, "DEL a b missing")
    expect(r.get(P + "a"), None, "GET a after DEL")
    expect(r.mget([P + "a", P + "b"]), [None, None], "MGET after DEL")
    r.close()


def check_missing_key():
    r = target()
    expect(r.get(P + "never-set"), None, "GET of a missing key")
    expect(r.get(P + "never-set"), None, "GET of a missing key (again)")
    expect(r.exists(P + "never-set"), 0, "EXISTS of a missing key")
    r.close()


def check_hash():
    r = target()
    expect(r.hset(P + "h", mapping={"f1": "v1", "f2": "v2"}), 2, "HSET h f1 v1 f2 v2")
    expect(r.hgetall(P + "h"), {b"f1": b"v1", b"f2": b"v2"}, "HGETALL h")
    expect(r.hgetall(P + "no-hash"), {}, "HGETALL of a missing key")
    r.close()


def check_zset():
    r = target()
    expect(r.zadd(P + "z", {"a": 1, "b": 2.5, "c": -3}), 3, "ZADD z")
    got = r.zrange(P + "z", 0, -1, withscores=True)
    # redis-py 8 returns a list of (member, float score) tuples.
    expect(got, [(b"c", -3.0), (b"a", 1.0), (b"b", 2.5)], "ZRANGE z 0 -1 WITHSCORES")
    for pair in got:
        if not isinstance(pair, tuple) or not isinstance(pair[1], float):
            raise CheckFailed(f"ZRANGE WITHSCORES: {pair!r} is not a (bytes, float) tuple")
    r.close()


def check_incr():
    r = target()
    expect(r.incr(P + "n"), 1, "INCR n")
    expect(r.incr(P + "n", 41), 42, "INCRBY n 41")
    expect(r.get(P + "n"), b"42", "GET n")
    r.close()


def check_wrongtype():
    r = target()
    r.hset(P + "wt", "f", "v")
    try:
        r.incr(P + "wt")
    except redis.exceptions.ResponseError as e:
        if not str(e).startswith("WRONGTYPE"):
            raise CheckFailed(f"INCR of a hash: ResponseError without WRONGTYPE: {e!r}")
    else:
        raise CheckFailed("INCR of a hash did not raise redis.exceptions.ResponseError")
    expect(r.ping(), True, "PING after the error (connection still usable)")
    r.close()


def check_pipeline():
    r = target()
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"{P}p{i}", i)
    for i in range(50):
        pipe.get(f"{P}p{i}")
    got = pipe.execute()
    expect(len(got), 100, "number of replies to a 100-command pipeline")
    expect(got[:50], [True] * 50, "replies to the 50 SETs")
    expect(got[50:], [str(i).encode() for i in range(50)], "replies to the 50 GETs")
    r.close()


def exec_calls(direct):
    """How many EXECs Redis itself has run (INFO commandstats)."""
    return direct.info("commandstats").get("cmdstat_exec", {}).get("calls", 0)


def check_multi_exec():
    r = target()
    direct = straight_to_redis()
    r.set(P + "tx", "5")
    execs = exec_calls(direct)
    with r.pipeline(transaction=True) as pipe:
        pipe.incr(P + "tx").set(P + "tx2", "x").get(P + "tx").lpush(P + "txl", "a", "b")
        got = pipe.execute()
    expect(got, [6, True, b"6", 2], "EXEC replies of pipeline(transaction=True)")
    expect(r.get(P + "tx2"), b"x", "GET of a key written in MULTI/EXEC")
    if exec_calls(direct) <= execs:
        raise CheckFailed("Redis ran no EXEC for pipeline(transaction=True)")
    direct.close()
    r.close()


def check_watch_retry():
    r = target()
    other = target()
    key = P + "watched"
    r.set(key, "10")
    calls = []

    def fn(pipe):
        calls.append(1)
        value = int(pipe.get(key))  # immediate mode, after WATCH
        if len(calls) == 1:
            # Another connection changes the watched key: this first EXEC must fail.
            other.set(key, "100")
        pipe.multi()
        pipe.set(key, value + 1)

    got = r.transaction(fn, key)
    expect(len(calls), 2, "calls of the transaction function (1 forced retry)")
    expect(got, [True], "EXEC reply of the retried transaction")
    expect(r.get(key), b"101", "value after the retried WATCH transaction")
    other.close()
    r.close()


def check_blpop_timeout():
    r = target()
    start = time.monotonic()
    got = r.blpop([P + "empty-list"], timeout=1)
    elapsed = time.monotonic() - start
    expect(got, None, "BLPOP empty-list 1")
    if not 0.9 <= elapsed <= 3.0:
        raise CheckFailed(f"BLPOP with a 1 s timeout took {elapsed:.2f} s")
    expect(r.ping(), True, "PING after BLPOP timed out")
    r.close()


def check_blpop_released():
    r = target()
    other = target()
    key = P + "queue"
    errors = []

    def push():
        try:
            time.sleep(0.3)
            other.rpush(key, "job")
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=push, daemon=True)
    start = time.monotonic()
    t.start()
    got = r.blpop([key], timeout=5)
    elapsed = time.monotonic() - start
    t.join(5)
    if errors:
        raise CheckFailed(f"RPUSH from the other connection failed: {errors[0]!r}")
    expect(got, (key.encode(), b"job"), "BLPOP released by RPUSH")
    if elapsed >= 4.5:
        raise CheckFailed(f"BLPOP was not released by the RPUSH ({elapsed:.2f} s)")
    expect(r.llen(key), 0, "LLEN after BLPOP took the element")
    other.close()
    r.close()


def check_coherence():
    r = target()
    direct = straight_to_redis()
    key = P + "coherent"
    r.set(key, "old")
    expect(r.get(key), b"old", "first GET through the target")
    expect(r.get(key), b"old", "second GET through the target (cached)")
    expect(direct.set(key, "new"), True, "SET straight on Redis")
    deadline = time.monotonic() + 1.0
    seen = []
    while True:
        v = r.get(key)
        seen.append(v)
        if v == b"new":
            break
        if time.monotonic() >= deadline:
            raise CheckFailed(
                f"GET still returned {v!r} 1 s after a SET straight on Redis "
                f"({len(seen)} reads)"
            )
        time.sleep(0.01)
    direct.close()
    r.close()


def check_select_db1():
    key = P + "db1"
    r1 = target(db=1)
    r0 = target()
    try:
        expect(r1.set(key, "in-db1"), True, "SET through Redis(db=1)")
    except redis.exceptions.ResponseError as e:
        raise CheckFailed(f"Redis(db=1): connecting (SELECT 1) or SET failed: {e}")
    expect(r1.get(key), b"in-db1", "GET through Redis(db=1)")
    expect(r0.get(key), None, "GET through Redis() (db 0): db 1 data must not be visible")
    d1, d0 = straight_to_redis(db=1), straight_to_redis()
    expect(d1.get(key), b"in-db1", "GET straight on Redis db 1")
    expect(d0.get(key), None, "GET straight on Redis db 0")
    r0.set(key, "in-db0")
    expect(r1.get(key), b"in-db1", "db 1 unchanged after a SET in db 0")
    for c in (r1, r0, d1, d0):
        c.close()


def check_client_name():
    r = target()
    try:
        expect(r.client_setname("x"), True, "CLIENT SETNAME x")
    except redis.exceptions.ResponseError as e:
        raise CheckFailed(f"client_setname('x') failed: {e}")
    # redis-py decodes the name it returns, even with decode_responses=False.
    expect(r.client_getname(), "x", "CLIENT GETNAME")
    other = target()
    expect(other.client_getname(), None, "CLIENT GETNAME on another connection")
    other.close()
    r.close()


def next_message(ps, what):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = ps.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if m is not None:
            return m
    raise CheckFailed(f"no message within 5 s: {what}")


def check_pubsub():
    r = target()
    ps = r.pubsub()
    ch, pat = P + "news", P + "n*"
    ps.subscribe(ch)
    ps.psubscribe(pat)
    # subscribe() returns before the confirmation is read: read both confirmations.
    for want in ("subscribe", "psubscribe"):
        m = ps.get_message(timeout=5)
        expect(m and m["type"], want, f"{want} confirmation")
    pub = target()
    expect(pub.publish(ch, "hello"), 2, "PUBLISH counts the channel and the pattern subscription")
    got = [next_message(ps, "message"), next_message(ps, "pmessage")]
    got.sort(key=lambda m: m["type"])
    expect((got[0]["type"], got[0]["channel"], got[0]["data"]), ("message", ch.encode(), b"hello"), "message")
    expect(
        (got[1]["type"], got[1]["pattern"], got[1]["data"]), ("pmessage", pat.encode(), b"hello"), "pmessage"
    )
    expect(pub.pubsub_numsub(ch), [(ch.encode(), 1)], "PUBSUB NUMSUB")
    # RESP3: ordinary commands on the subscribed connection keep working.
    ps.unsubscribe(ch)
    ps.punsubscribe(pat)
    for want in ("unsubscribe", "punsubscribe"):
        m = ps.get_message(timeout=5)
        expect(m and m["type"], want, f"{want} confirmation")
    expect(pub.publish(ch, "late"), 0, "PUBLISH after unsubscribing")
    ps.close()
    r.close()
    pub.close()


CHECKS = [
    ("handshake: HELLO 3 by default", check_handshake, False),
    ("SET/GET/MGET/DEL", check_strings, False),
    ("missing key", check_missing_key, False),
    ("HSET/HGETALL", check_hash, False),
    ("ZADD/ZRANGE WITHSCORES", check_zset, False),
    ("INCR", check_incr, False),
    ("WRONGTYPE raised as ResponseError", check_wrongtype, False),
    ("pipeline(transaction=False) of 100 commands", check_pipeline, False),
    ("pipeline(transaction=True): MULTI/EXEC", check_multi_exec, False),
    ("transaction(fn, key): WATCH with a forced retry", check_watch_retry, False),
    ("BLPOP 1 s timeout returns None", check_blpop_timeout, False),
    ("BLPOP released by RPUSH from another connection", check_blpop_released, False),
    ("cache coherence: SET straight on Redis seen within 1 s", check_coherence, False),
    ("[pending] Redis(db=1): SELECT 1 per connection", check_select_db1, True),
    ("[pending] client_setname('x') + client_getname()", check_client_name, True),
    ("pubsub(): subscribe, psubscribe, messages, unsubscribe", check_pubsub, False),
]


def on_alarm(signum, frame):
    raise CheckTimeout(f"check still running after {CHECK_TIMEOUT_S} s")


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    print(
        f"redis-py {redis.__version__} -> {TARGET_NAME} at {HOST}:{TARGET_PORT} "
        f"(Redis at {HOST}:{REDIS_PORT})",
        flush=True,
    )
    passed = failed = skipped = 0
    for name, fn, pending in CHECKS:
        if pending and SKIP_PENDING:
            print(f"SKIP  {name} (SKIP_PENDING=1)", flush=True)
            skipped += 1
            continue
        start = time.monotonic()
        signal.alarm(CHECK_TIMEOUT_S)
        try:
            fn()
        except Exception as e:
            signal.alarm(0)
            failed += 1
            kind = "" if isinstance(e, (CheckFailed, CheckTimeout)) else f"{type(e).__name__}: "
            hint = " (SKIP_PENDING=1 skips this check)" if pending else ""
            print(f"FAIL  {name}: {kind}{e}{hint}", flush=True)
            if not isinstance(e, (CheckFailed, CheckTimeout)):
                traceback.print_exc(limit=3, file=sys.stdout)
        else:
            signal.alarm(0)
            passed += 1
            print(f"PASS  {name} ({time.monotonic() - start:.2f} s)", flush=True)
    print(f"redis-py: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
