#!/usr/bin/env python3
"""Stale window of a client-side cache kept by CLIENT TRACKING through the proxy: after a writer
holds the acknowledgement of its SET, for how long can a tracking client still read the old value
from its own local cache (because the invalidation push has not reached it yet)?

Usage: perf/tracking_stale_window.py PROXY_PORT REDIS_PORT [--rounds 500] [--shards 2]
       [--trackers-per-shard 2] [--keys 8]

Both servers must already run on 127.0.0.1; perf/tracking_stale_window.sh starts them and runs
this. Three variants, in one run, each for --rounds rounds:

  tracking clients | writer
  straight on Redis | straight on Redis   (baseline: Redis's own invalidation delay)
  through the proxy | through the proxy
  through the proxy | straight on Redis

A tracking client is a RESP3 connection (`HELLO 3`, `CLIENT TRACKING ON`) with a local cache (a
dict): a read looks in the dict; on a miss it sends GET and stores the reply; an `invalidate`
push drops its keys (a null key list drops everything). Replies and pushes are handled in the
order they arrive on the socket (a push right behind a reply drops what the reply stored). Through the proxy, connections are
opened until every shard has --trackers-per-shard tracking clients and one writer; which shard
a connection landed on is read from Redis: the connection subscribes a probe channel for a
moment and Redis's CLIENT LIST shows which of the proxy's subscriber connections (one per
shard) took it. Writers alternate between shards round by round.

One round, key k (of --keys), all in one thread, sockets read non-blocking:
  1. the writer sets k to "old-R" and waits for its ack;
  2. every tracking client reads k until its local cache holds "old-R" (read-through, then
     waiting for invalidations if the read-through returned something older), and still
     holds it after 1 ms more of reading pushes;
  3. the writer sends SET k "new-R" without waiting; then a tight loop: take the writer's ack
     if it has arrived (ack time = when the loop sees it), process every push that has arrived
     at each tracking client, then read k from each local cache, noting the time of every read
     that still returns "old-R" (a miss reads through, asynchronously). The round ends when the
     ack is in and every tracking client has "new-R" in its cache, or after --deadline; then
     1 ms more of reading pushes (late second invalidations are counted there).
Stale window of a round = last local read that returned "old-R" (any tracking client) minus
the ack time, or 0 when no such read came after the ack. Also reported: when each client's
invalidation push was processed, relative to the ack (negative: before it), clients that got
more than one invalidation for one write, and read-throughs after an invalidation that brought
back "old-R". A cache that still holds an older value --deadline after the ack of SET old is
counted as a lost invalidation (the client would serve that value until evicted); its entry
is then dropped by hand so the round can go on.
"""
import argparse
import select
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"


class Push(list):
    pass


class Err(bytes):
    pass


NIL = None


def parse(buf, pos):
    """One RESP2/RESP3 value at buf[pos:]: (value, next pos), or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    t, line, pos = buf[pos:pos + 1], buf[pos + 1:end], end + 2
    if t == b"+":
        return bytes(line), pos
    if t in (b"-", b"!"):
        if t == b"!":
            n = int(line)
            if len(buf) < pos + n + 2:
                return None
            return Err(buf[pos:pos + n]), pos + n + 2
        return Err(line), pos
    if t in (b":", b",", b"(", b"#"):
        return bytes(line), pos
    if t == b"_":
        return NIL, pos
    if t in (b"$", b"="):
        n = int(line)
        if n < 0:
            return NIL, pos
        if len(buf) < pos + n + 2:
            return None
        return bytes(buf[pos:pos + n]), pos + n + 2
    if t in (b"*", b">", b"~", b"%", b"|"):
        n = int(line)
        if n < 0:
            return NIL, pos
        items = Push() if t == b">" else []
        for _ in range(n * 2 if t in (b"%", b"|") else n):
            r = parse(buf, pos)
            if r is None:
                return None
            v, pos = r
            items.append(v)
        if t == b"|":  # attributes precede the value they describe
            return parse(buf, pos)
        return items, pos
    raise ValueError("unexpected RESP type %r" % t)


def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """A connection whose replies and pushes are parsed as they arrive."""

    def __init__(self, port, resp3=False):
        self.s = socket.create_connection((HOST, port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(None)  # blocking mode: MSG_DONTWAIT then returns at once
        self.buf = bytearray()
        self.pos = 0
        self.replies = []
        self.pushes = []
        self.shard = None
        if resp3:
            self.cmd("HELLO", "3")

    def on_push(self, v):
        self.pushes.append(v)

    def on_reply(self, v):
        self.replies.append(v)

    def pump(self):
        """Reads what has arrived (non-blocking) and handles every complete value."""
        try:
            data = self.s.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data
        while True:
            r = parse(self.buf, self.pos)
            if r is None:
                break
            v, self.pos = r
            if isinstance(v, Push):
                self.on_push(v)
            else:
                self.on_reply(v)
        if self.pos > 1 << 16 or self.pos == len(self.buf):
            del self.buf[:self.pos]
            self.pos = 0

    def wait(self, pred, seconds=5.0):
        end = time.monotonic() + seconds
        while not pred():
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply within %.0f s" % seconds)
            select.select([self.s], [], [], left)
            self.pump()

    def reply(self):
        self.wait(lambda: self.replies)
        v = self.replies.pop(0)
        if isinstance(v, Err):
            raise RuntimeError(v.decode())
        return v

    def cmd(self, *args):
        self.s.sendall(enc(*args))
        return self.reply()

    def close(self):
        self.s.close()


class Tracker(Conn):
    """A RESP3 tracking client with a local cache."""

    def __init__(self, port):
        self.cache = {}
        self.inflight = None  # key of the read-through in flight
        self.inval_at = {}  # key -> perf_counter() when its first invalidation was processed
        self.inval_n = {}  # key -> invalidations processed
        self.inval_during_read = 0
        super().__init__(port, resp3=True)
        if self.cmd("CLIENT", "TRACKING", "ON") != b"OK":
            raise RuntimeError("CLIENT TRACKING ON refused")

    def on_push(self, v):
        if len(v) >= 2 and v[0] == b"invalidate":
            now = time.perf_counter()
            if v[1] is NIL:
                keys = list(self.cache)
                self.cache.clear()
            else:
                keys = v[1]
                for k in keys:
                    self.cache.pop(k, None)
            for k in keys:
                self.inval_at.setdefault(k, now)
                self.inval_n[k] = self.inval_n.get(k, 0) + 1
                if k == self.inflight:
                    self.inval_during_read += 1
        else:
            self.pushes.append(v)

    def on_reply(self, v):
        # In stream order: a push that follows the reply on the wire drops what it stored.
        if self.inflight is None:
            self.replies.append(v)
            return
        if isinstance(v, Err):
            raise RuntimeError(v.decode())
        self.cache[self.inflight] = v
        self.inflight = None

    def read(self, key):
        """A local read: the cached value, or None on a miss (a read-through is then sent, and
        its reply stored when it arrives)."""
        self.pump()
        v = self.cache.get(key)
        if v is None and self.inflight is None:
            self.inflight = key
            self.s.sendall(enc("GET", key))
        return v


def label_shards(ctl, conns):
    """Sets conn.shard to Redis's id of the proxy subscriber connection that takes a probe
    subscription made through conn (the same id for connections on the same shard)."""
    def subs():
        out = {}
        for line in ctl.cmd("CLIENT", "LIST", "TYPE", "pubsub").decode().splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            out[f["id"]] = int(f.get("sub", 0))
        return out

    def settle(before, end):
        while time.monotonic() < end:
            now = subs()
            grew = [i for i, n in now.items() if n > before.get(i, 0)]
            if grew:
                return grew
            time.sleep(0.01)
        return []

    for i, c in enumerate(conns):
        ch = b"tsw-probe:%d" % i
        before = subs()
        c.s.sendall(enc("SUBSCRIBE", ch))
        c.wait(lambda: c.pushes or c.replies)
        c.pushes.clear()
        c.replies.clear()
        end = time.monotonic() + 5
        grew = settle(before, end)
        c.shard = grew[0] if len(grew) == 1 else None
        c.s.sendall(enc("UNSUBSCRIBE", ch))
        c.wait(lambda: c.pushes or c.replies)
        c.pushes.clear()
        c.replies.clear()
        while time.monotonic() < end and any(n > before.get(i, 0) for i, n in subs().items()):
            time.sleep(0.01)


def open_spread(make, ctl, shards, per_shard, attempts=64):
    """Opens connections until every one of `shards` shards has `per_shard` of them."""
    kept, by = [], {}
    for _ in range(attempts):
        c = make()
        label_shards(ctl, [c])
        if c.shard is not None and len(by.get(c.shard, [])) < per_shard:
            by.setdefault(c.shard, []).append(c)
            kept.append(c)
        else:
            c.close()
        if len(by) >= shards and all(len(v) >= per_shard for v in by.values()):
            break
    return kept


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(name, trackers, writers, ctl, a):
    res = {"name": name, "windows": [], "inval_rel": {"same": [], "other": [], "-": []},
           "windows_by": {"same": [], "other": [], "-": []}, "stale_after_ack_reads": 0,
           "reread_old": 0, "prime_retries": 0, "late_pushes": 0, "lost": 0,
           "dup_inval": {"same": 0, "other": 0, "-": 0}, "gave_up": 0, "iters": [], "ack_us": []}
    for t in trackers:
        t.inval_during_read = 0
    for r in range(a.rounds):
        key = b"tsw:%d" % (r % a.keys)
        old, new = b"old-%d" % r, b"new-%d" % r
        w = writers[r % len(writers)]
        if w.cmd("SET", key, old) != b"OK":
            raise RuntimeError("SET failed")
        # 2. every local cache holds old (and still does 1 ms later: no late push pending)
        end = time.perf_counter() + a.deadline
        while True:
            for t in trackers:
                first = True
                while True:
                    v = t.read(key)
                    if v == old:
                        break
                    if v is not None and first:
                        res["prime_retries"] += 1
                        first = False
                    if time.perf_counter() > end:
                        # No invalidation came for the write of old: note it, drop the value
                        # by hand and go on (the read-through then brings old).
                        res["lost"] += 1
                        t.cache.pop(key, None)
                        end = time.perf_counter() + a.deadline
            settle = time.perf_counter() + 0.001
            while time.perf_counter() < settle:
                for t in trackers:
                    t.pump()
            if all(t.cache.get(key) == old for t in trackers):
                break
            res["late_pushes"] += 1
        # 3. the write, and local reads until every cache holds new
        for t in trackers:
            t.inval_at.pop(key, None)
            t.inval_n.pop(key, None)
        w.s.sendall(enc("SET", key, new))
        t_send = time.perf_counter()
        t_ack = None
        last_stale = {}
        stale_after = 0
        reread = set()
        done = False
        iters = 0
        end = t_send + a.deadline
        while True:
            iters += 1
            if t_ack is None:
                w.pump()
                if w.replies:
                    t_ack = time.perf_counter()
                    if w.replies.pop(0) != b"OK":
                        raise RuntimeError("SET failed")
            fresh = 0
            for i, t in enumerate(trackers):
                v = t.read(key)
                now = time.perf_counter()
                if v == old:
                    last_stale[i] = now
                    if t_ack is not None:
                        stale_after += 1
                    if key in t.inval_at:
                        reread.add(i)  # invalidated, then read through and got old again
                elif v == new:
                    fresh += 1
            if t_ack is not None and fresh == len(trackers):
                done = True
                break
            if time.perf_counter() > end:
                break
        loop_us = (time.perf_counter() - t_send) * 1e6 / iters
        # 1 ms more: pushes still on their way (a second invalidation of the same write) are
        # counted here, and the next round starts clean.
        settle = time.perf_counter() + 0.001
        while time.perf_counter() < settle:
            for t in trackers:
                t.pump()
        if not done:
            res["gave_up"] += 1
            # drain: let the next round start from a known state
            for t in trackers:
                t.cache.clear()
        res["iters"].append(loop_us)
        if t_ack is None:
            continue
        res["ack_us"].append((t_ack - t_send) * 1e6)
        res["reread_old"] += len(reread)
        res["stale_after_ack_reads"] += stale_after
        worst = 0.0
        for i, t in enumerate(trackers):
            rel = "-" if w.shard is None or t.shard is None else ("same" if t.shard == w.shard else "other")
            win = max(0.0, (last_stale.get(i, 0.0) - t_ack) * 1e6) if i in last_stale else 0.0
            res["windows_by"][rel].append(win)
            worst = max(worst, win)
            if key in t.inval_at:
                res["inval_rel"][rel].append((t.inval_at[key] - t_ack) * 1e6)
            if t.inval_n.get(key, 0) > 1:
                res["dup_inval"][rel] += 1
        res["windows"].append(worst)
    res["inval_during_read"] = sum(t.inval_during_read for t in trackers)
    return res


def summarize(res):
    w = res["windows"]
    n = len(w)
    stale = sum(1 for x in w if x > 0)
    return n, stale, w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proxy_port", type=int)
    ap.add_argument("redis_port", type=int)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--shards", type=int, default=2, help="the proxy's --threads")
    ap.add_argument("--trackers-per-shard", type=int, default=2)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--deadline", type=float, default=2.0, help="give up on a round after this")
    a = ap.parse_args()
    if not (1 <= a.rounds <= 20000 and 1 <= a.shards <= 64 and 1 <= a.trackers_per_shard <= 16
            and 1 <= a.keys <= 1000):
        sys.exit("out of range")

    ctl = Conn(a.redis_port)
    n_direct = a.shards * a.trackers_per_shard
    variants = []

    # Baseline: everything straight on Redis.
    trackers = [Tracker(a.redis_port) for _ in range(n_direct)]
    writers = [Conn(a.redis_port)]
    variants.append(run("tracking clients and writer straight on Redis (baseline)", trackers, writers, ctl, a))
    for c in trackers + writers:
        c.close()

    # Through the proxy, spread over the shards.
    trackers = open_spread(lambda: Tracker(a.proxy_port), ctl, a.shards, a.trackers_per_shard)
    pwriters = open_spread(lambda: Conn(a.proxy_port), ctl, a.shards, 1)
    layout = "%d tracking clients on %d shards (%s), %d writers on %d shards" % (
        len(trackers), len({t.shard for t in trackers}),
        " + ".join(str(sum(1 for t in trackers if t.shard == s)) for s in sorted({t.shard for t in trackers})),
        len(pwriters), len({w.shard for w in pwriters}))
    variants.append(run("tracking clients and writer through the proxy", trackers, pwriters, ctl, a))
    dwriter = Conn(a.redis_port)
    variants.append(run("tracking clients through the proxy, writer straight on Redis", trackers, [dwriter], ctl, a))

    L = []
    L.append("%d rounds per variant, %d keys; through the proxy: %s; straight on Redis: %d tracking "
             "clients, 1 writer. Times in microseconds, taken in one Python thread (the loop column "
             "gives its resolution). Stale window: last local read that still returned the old value "
             "(any tracking client) minus the time the writer's ack was seen; 0 when none came after "
             "the ack." % (a.rounds, a.keys, layout, n_direct))
    L.append("")
    L.append("| variant | rounds | rounds with a stale local read after the ack | stale window p50 | p99 | max "
             "| stale local reads after the ack | invalidation processed, rel. to ack: p50 | p99 | max "
             "| writer's ack after its send: p50 | loop iteration p50 | rounds given up |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in variants:
        n, stale, w = summarize(res)
        inv = [x for v in res["inval_rel"].values() for x in v]
        L.append("| %s | %d | %d (%.1f%%) | %.0f | %.0f | %.0f | %d | %s | %s | %s | %.0f | %.1f | %d |"
                 % (res["name"], n, stale, 100.0 * stale / max(1, n), statistics.median(w) if w else 0,
                    pct(w, 99) if w else 0, max(w) if w else 0, res["stale_after_ack_reads"],
                    "%.0f" % statistics.median(inv) if inv else "-", "%.0f" % pct(inv, 99) if inv else "-",
                    "%.0f" % max(inv) if inv else "-",
                    statistics.median(res["ack_us"]) if res["ack_us"] else 0,
                    statistics.median(res["iters"]) if res["iters"] else 0, res["gave_up"]))
    L.append("")
    L.append("Through the proxy, per tracking client, by where it sits relative to the writer's shard "
             "(here every client counts on its own: rounds x clients values):")
    L.append("")
    L.append("| variant | tracking client vs writer | client-rounds | with a stale read after the ack "
             "| stale window p50 | p99 | max | invalidation processed, rel. to ack: p50 | p99 | max |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in variants[1:]:
        for rel in ("same", "other", "-"):
            w = res["windows_by"][rel]
            inv = res["inval_rel"][rel]
            if not w:
                continue
            L.append("| %s | %s | %d | %d (%.1f%%) | %.0f | %.0f | %.0f | %s | %s | %s |"
                     % (res["name"], {"same": "same shard", "other": "other shard", "-": "writer straight on Redis"}[rel],
                        len(w), sum(1 for x in w if x > 0), 100.0 * sum(1 for x in w if x > 0) / len(w),
                        statistics.median(w), pct(w, 99), max(w),
                        "%.0f" % statistics.median(inv) if inv else "-", "%.0f" % pct(inv, 99) if inv else "-",
                        "%.0f" % max(inv) if inv else "-"))
    L.append("")
    L.append("Other counts (client-rounds unless noted):")
    L.append("")
    L.append("| variant | more than one invalidation for the write (same shard as the writer / other shard) | a read-through after the invalidation "
             "returned the old value | an invalidation arrived while a read-through was in flight "
             "| priming: older value read after the ack of SET old | priming: a push came within 1 ms after "
             "every cache held old (rounds) | lost invalidations (older value still cached %.0f s after "
             "the ack of SET old) |" % a.deadline)
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for res in variants:
        d = res["dup_inval"]
        L.append("| %s | %s | %d | %d | %d | %d | %d |"
                 % (res["name"], "%d / %d" % (d["same"], d["other"]) if d["same"] or d["other"] else str(d["-"]),
                    res["reread_old"], res["inval_during_read"],
                    res["prime_retries"], res["late_pushes"], res["lost"]))
    L.append("")
    print("\n".join(L))
    return 1 if any(res["gave_up"] or res["lost"] for res in variants) else 0


if __name__ == "__main__":
    sys.exit(main())
