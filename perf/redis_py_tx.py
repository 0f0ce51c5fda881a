#!/usr/bin/env python3
"""redis-py transactions: pipeline(transaction=True) of 100 SETs (MULTI, 100 x SET, EXEC in one
round trip), executed again and again for a bounded time, straight at redis-server and through
the proxy, side by side in one run. Prints a Markdown table of SETs per second.

Usage: perf/redis_py_tx.py REDIS_PORT PROXY_PORT [--seconds 5] [--rounds 1] [--batch 100]

Both servers must already run on 127.0.0.1; perf/redis_py_tx.sh starts them and runs this with
the redis-py that tests/clients/run.sh installs (redis-py 8, default settings: RESP3).
Each round measures every target once, back to back (direct first); with several rounds the
table shows the median round. One client, one connection: this measures the latency of a
transaction round trip as much as throughput.
"""
import argparse
import statistics
import sys
import time

import redis

HOST = "127.0.0.1"
WARMUP_S = 0.5


def measure(port, seconds, batch):
    """(transactions, elapsed s, per-transaction latencies in s) for one target."""
    r = redis.Redis(host=HOST, port=port)  # the library's defaults
    value = b"v" * 32
    keys = [f"perf:tx:{i}" for i in range(batch)]
    pipe = r.pipeline(transaction=True)

    def one():
        for k in keys:
            pipe.set(k, value)
        got = pipe.execute()
        if len(got) != batch or not all(got):
            sys.exit(f"port {port}: unexpected EXEC reply {got[:5]!r}... ({len(got)} items)")

    warm_end = time.monotonic() + WARMUP_S
    while time.monotonic() < warm_end:
        one()
    # Bounded by time and, as a safety net, by count.
    max_tx = int(seconds * 200_000)
    lat = []
    start = time.monotonic()
    deadline = start + seconds
    while len(lat) < max_tx:
        t0 = time.monotonic()
        if t0 >= deadline:
            break
        one()
        lat.append(time.monotonic() - t0)
    elapsed = time.monotonic() - start
    r.close()
    return len(lat), elapsed, lat


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100 * len(sorted_vals)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("redis_port", type=int, help="redis-server on 127.0.0.1")
    ap.add_argument("proxy_port", type=int, help="redis-proxy on 127.0.0.1 (in front of it)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured time per target and round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100, help="SETs per transaction")
    a = ap.parse_args()
    if not (0 < a.seconds <= 300 and 1 <= a.rounds <= 20 and 1 <= a.batch <= 10_000):
        sys.exit("--seconds in (0, 300], --rounds in [1, 20], --batch in [1, 10000]")

    targets = [("redis-server (direct)", a.redis_port), ("redis-proxy", a.proxy_port)]
    rounds = {name: [] for name, _ in targets}
    for _ in range(a.rounds):
        for name, port in targets:
            rounds[name].append(measure(port, a.seconds, a.batch))

    rows = []
    for name, _ in targets:
        # The median round by SETs/s.
        runs = sorted(rounds[name], key=lambda m: m[0] / m[1])
        n, elapsed, lat = runs[len(runs) // 2]
        lat.sort()
        rows.append((name, n, n * a.batch / elapsed, pct(lat, 50) * 1e3, pct(lat, 99) * 1e3))
    base = rows[0][2]

    print(
        f"redis-py {redis.__version__} `pipeline(transaction=True)` of {a.batch} SETs "
        f"(32-byte values), one connection, {a.seconds:g} s per target, "
        f"{a.rounds} round(s){' (median)' if a.rounds > 1 else ''}\n"
    )
    print("| target | transactions | SETs/s | ms/transaction p50 | p99 | vs direct |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, sets_s, p50, p99 in rows:
        print(f"| {name} | {n:,} | {sets_s:,.0f} | {p50:.3f} | {p99:.3f} | {sets_s / base:.2f}x |")


if __name__ == "__main__":
    main()
