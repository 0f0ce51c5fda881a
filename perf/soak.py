#!/usr/bin/env python3
"""Checking client for perf/soak.sh: pipelined SET/GET/INCR/ECHO from several connections,
every reply checked against the request it answers.

Values encode their key (val:<client>:<key>:<n>), so a reply that belongs to another request,
a missing reply or a duplicated one (which shifts every later reply) is caught. Faults are
expected during a soak (Redis killed, frozen), so the checker accepts, besides the exact reply:
  - `-ERR backend ...` for any request that goes to Redis;
  - nil for a GET (the data was lost with a Redis restart);
  - for a GET, any value an earlier SET of this very key (by this client) wrote: a SET that
    failed with "connection lost" or "timeout" may still have been applied by Redis.
Anything else is a wrong reply. A reply that never comes (read timeout) or a connection the
proxy closes counts as lost; the client then reconnects.

Writes cumulative counters as JSON to --out every second and at the end.
"""

import argparse
import json
import os
import random
import socket
import threading
import time

PIPELINE = 50
KEYS = 200


class Lost(Exception):
    """The connection failed or a reply did not arrive in time."""


class Conn:
    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Lost(f"write: {e}") from e

    def _fill(self):
        if self.pos > 65536:
            del self.buf[: self.pos]
            self.pos = 0
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout as e:
            raise Lost("read timed out") from e
        except OSError as e:
            raise Lost(f"read: {e}") from e
        if not chunk:
            raise Lost("connection closed by the proxy")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return line
            self._fill()

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return ("simple", rest.decode())
        if kind == b"-":
            return ("error", rest.decode(errors="replace"))
        if kind == b":":
            return ("int", int(rest))
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return ("nil", None)
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            data = bytes(self.buf[self.pos : self.pos + n])
            self.pos += n + 2
            return ("bulk", data.decode(errors="replace"))
        if kind == b"*":
            n = int(rest)
            return ("array", None if n < 0 else [self.reply() for _ in range(n)])
        raise Lost(f"not a RESP2 reply: {line[:80]!r}")


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.replies = 0
        self.errors = 0
        self.error_kinds = {}
        self.wrong = 0
        self.lost = 0
        self.pipelines = 0
        self.max_wait = 0.0
        self.examples = []

    def snapshot(self):
        with self.lock:
            return {
                "replies": self.replies,
                "errors": self.errors,
                "error_kinds": dict(self.error_kinds),
                "wrong": self.wrong,
                "lost": self.lost,
                "pipelines": self.pipelines,
                "max_wait_s": round(self.max_wait, 3),
                "examples": list(self.examples),
            }

    def example(self, text):
        # Caller holds the lock.
        if len(self.examples) < 20:
            self.examples.append(text)


def error_kind(text):
    for k in ("backend timeout", "backend unavailable", "backend connection lost"):
        if text.startswith("ERR " + k):
            return k
    return text[:60]


class Client(threading.Thread):
    def __init__(self, cid, port, deadline, stats, timeout):
        super().__init__(daemon=True)
        self.cid = cid
        self.port = port
        self.deadline = deadline
        self.stats = stats
        self.timeout = timeout
        self.rng = random.Random(1000 + cid)
        self.n = 0
        self.issued = set()

    def build(self):
        c = self.cid
        data, reqs = [], []
        for _ in range(PIPELINE):
            key = self.rng.randrange(KEYS)
            r = self.rng.randrange(10)
            if r < 3:
                self.n += 1
                self.issued.add((key, self.n))
                data.append(encode("SET", f"soak:{c}:{key}", f"val:{c}:{key}:{self.n}"))
                reqs.append(("set", key, self.n))
            elif r < 7:
                data.append(encode("GET", f"soak:{c}:{key}"))
                reqs.append(("get", key, self.n))
            elif r < 8:
                data.append(encode("INCR", f"soakcounter:{c}"))
                reqs.append(("incr", None, None))
            else:
                self.n += 1
                data.append(encode("ECHO", f"echo:{c}:{self.n}"))
                reqs.append(("echo", None, self.n))
        return b"".join(data), reqs

    def check(self, req, rep):
        """None if `rep` is an acceptable reply to `req`, else why not."""
        op, key, n = req
        kind, val = rep
        c = self.cid
        backend_err = kind == "error" and val.startswith("ERR backend")
        if op == "echo":
            return None if rep == ("bulk", f"echo:{c}:{n}") else f"ECHO echo:{c}:{n} -> {rep!r}"
        if backend_err:
            return None
        if op == "set":
            return None if rep == ("simple", "OK") else f"SET soak:{c}:{key} -> {rep!r}"
        if op == "incr":
            return None if kind == "int" and val >= 1 else f"INCR -> {rep!r}"
        # get
        if kind == "nil":
            return None
        if kind == "bulk":
            prefix = f"val:{c}:{key}:"
            if val.startswith(prefix):
                try:
                    m = int(val[len(prefix) :])
                except ValueError:
                    m = None
                if m is not None and m <= n and (key, m) in self.issued:
                    return None
        return f"GET soak:{c}:{key} -> {rep!r}"

    def run(self):
        conn = None
        while time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = Conn(self.port, self.timeout)
                data, reqs = self.build()
                conn.send(data)
                reps = []
                for _ in reqs:
                    t = time.monotonic()
                    reps.append(conn.reply())
                    waited = time.monotonic() - t
                    if waited > self.stats.max_wait:
                        with self.stats.lock:
                            self.stats.max_wait = max(self.stats.max_wait, waited)
                with self.stats.lock:
                    self.stats.pipelines += 1
                    for req, rep in zip(reqs, reps):
                        self.stats.replies += 1
                        if rep[0] == "error":
                            self.stats.errors += 1
                            k = error_kind(rep[1])
                            self.stats.error_kinds[k] = self.stats.error_kinds.get(k, 0) + 1
                        why = self.check(req, rep)
                        if why:
                            self.stats.wrong += 1
                            self.stats.example(f"client {self.cid}: {why}")
            except (Lost, OSError) as e:
                with self.stats.lock:
                    self.stats.lost += 1
                    self.stats.example(f"client {self.cid}: lost: {e}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
        if conn is not None:
            conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=10.0, help="read timeout per reply")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    stats = Stats()
    deadline = time.monotonic() + args.seconds
    clients = [Client(i, args.port, deadline, stats, args.timeout) for i in range(args.clients)]
    for c in clients:
        c.start()

    def dump():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats.snapshot(), f)
        os.replace(tmp, args.out)

    while any(c.is_alive() for c in clients):
        dump()
        time.sleep(1)
    for c in clients:
        c.join()
    dump()
    s = stats.snapshot()
    print(
        f"checker: {s['replies']} replies checked, {s['errors']} errors, "
        f"{s['wrong']} wrong, {s['lost']} lost"
    )
    return 1 if s["wrong"] or s["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
