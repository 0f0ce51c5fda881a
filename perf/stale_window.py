#!/usr/bin/env python3
"""Measures the proxy's stale window: after a write made straight to Redis, how many reads
through the proxy (over connections spread across every shard) still see the old value, and
how long until none do.

Usage: perf/stale_window.py PROXY_PORT REDIS_PORT [--rounds N] [--conns N]
Both servers must already run on 127.0.0.1; perf/stale_window.sh starts them and runs this.
Each round: SET k old (direct), read k through every proxy connection twice (so every shard
caches it), SET k new (direct), then sweep all connections again and again until every one
reads `new`. Reports stale reads in the first sweep and time to fully fresh (p50/p99/max).
"""
import argparse
import socket
import statistics
import sys
import time


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"-":
            raise RuntimeError(rest.decode())
        return rest


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def baseline(redis_port, rounds):
    """Without the proxy: how often has Redis not yet delivered the invalidation push to a
    tracking connection at the moment the writer holds its acknowledgement? That share bounds
    what any client-side cache fed by CLIENT TRACKING can achieve for a read issued right away."""
    t = socket.create_connection(("127.0.0.1", redis_port), timeout=5)
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for cmd in (b"HELLO 3\r\n", b"CLIENT TRACKING ON\r\n"):
        t.sendall(cmd)
        time.sleep(0.05)
        t.recv(65536)
    d = Conn(redis_port)
    late = 0
    for i in range(rounds):
        t.sendall(b"GET stale:baseline\r\n")
        time.sleep(0.0005)
        t.recv(65536)
        d.cmd("SET", "stale:baseline", "v%d" % i)
        t.setblocking(False)
        try:
            data = t.recv(65536)
        except BlockingIOError:
            data = b""
        t.setblocking(True)
        if b"invalidate" not in data:
            late += 1
            t.recv(65536)
    print("baseline (no proxy): push not yet at the tracking connection when the writer has "
          "its ack: %d of %d writes (%.1f%%)" % (late, rounds, 100.0 * late / rounds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proxy_port", type=int)
    ap.add_argument("redis_port", type=int)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--deadline", type=float, default=2.0, help="give up on a round after this")
    ap.add_argument("--baseline", action="store_true", help="also measure Redis's own push delay")
    a = ap.parse_args()
    if a.baseline:
        baseline(a.redis_port, a.rounds)

    direct = Conn(a.redis_port)
    conns = [Conn(a.proxy_port) for _ in range(a.conns)]
    first_stale, reads_first, gave_up = 0, 0, 0
    sweep_ms, window_us = [], []
    for r in range(a.rounds):
        key = "stale:%d" % (r % 16)
        old, new = "old-%d" % r, "new-%d" % r
        direct.cmd("SET", key, old)
        for _ in range(2):
            for c in conns:
                c.cmd("GET", key)
        direct.cmd("SET", key, new)
        t0 = time.perf_counter()
        last_stale = None  # when the last stale read was answered, relative to the ack
        sweep = 0
        while True:
            stale = 0
            for c in conns:
                if c.cmd("GET", key) != new.encode():
                    stale += 1
                    last_stale = time.perf_counter() - t0
            if sweep == 0:
                first_stale += stale
                reads_first += len(conns)
            sweep += 1
            if stale == 0:
                sweep_ms.append((time.perf_counter() - t0) * 1000)
                break
            if time.perf_counter() - t0 > a.deadline:
                gave_up += 1
                break
        window_us.append(0.0 if last_stale is None else last_stale * 1e6)
    stale_rounds = sum(1 for w in window_us if w > 0)
    print("rounds=%d connections=%d" % (a.rounds, a.conns))
    print("stale reads in first sweep: %d of %d (%.3f%%); rounds with any stale read: %d"
          % (first_stale, reads_first, 100.0 * first_stale / max(1, reads_first), stale_rounds))
    print("stale window (ack of the direct write -> last stale read answered, us): "
          "p50=%.0f p99=%.0f max=%.0f" % (statistics.median(window_us), pct(window_us, 99), max(window_us)))
    if sweep_ms:
        print("time until a whole sweep reads the new value (ms, includes the sweep itself): "
              "p50=%.3f p99=%.3f max=%.3f" % (statistics.median(sweep_ms), pct(sweep_ms, 99), max(sweep_ms)))
    print("rounds never fresh within %.1fs: %d" % (a.deadline, gave_up))
    return 1 if gave_up else 0


if __name__ == "__main__":
    sys.exit(main())
