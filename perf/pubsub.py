#!/usr/bin/env python3
"""Pub/sub fan-out: 1 publisher and many subscribers (default 1,000) of one channel, straight at
redis-server and through the proxy, side by side in one run. Prints a Markdown report.

Usage: perf/pubsub.py REDIS_PORT PROXY_PORT --redis-pid PID --proxy-pid PID [--subs 1000]
       [--messages 5000] [--batch 50] [--payload 16] [--rounds 3] [--shards 2]

Both servers must already run on 127.0.0.1; perf/pubsub.sh starts them (proxy --threads 2)
and runs this. The file descriptor limit must allow subs + a few sockets (the driver sets
`ulimit -n 4096`).

One measurement (a "mode"): open SUBS raw sockets to the target (Redis itself, or the proxy,
where the kernel's SO_REUSEPORT hash spreads them over the shards), send `SUBSCRIBE ch` (RESP2)
on each and wait for every confirmation. Through the proxy, each subscriber then subscribes a
probe channel of its own for a moment, so Redis's CLIENT LIST (`sub=` of the proxy's subscriber
connections) shows how many subscribers each shard holds. Then one publisher connection to the
same target sends MESSAGES `PUBLISH ch <payload>`, BATCH at a time (the next batch leaves when
every reply of the previous one is in), while one epoll loop reads all subscriber sockets.
Every message frame has the same size, so a subscriber is done when it has received exactly
MESSAGES x frame bytes; every 100th subscriber keeps its bytes and is parsed frame by frame
(order and payloads checked). The measurement ends when every subscriber is done, or after
--deadline seconds (then the missing messages are reported).

Rate = MESSAGES x SUBS / (last delivery - first PUBLISH sent). CPU of redis-server and of the
proxy: utime+stime from /proc/PID/stat (clock ticks, usually 10 ms) and, finer, the sum of
sum_exec_runtime over /proc/PID/task/*/schedstat (ns), read just before the first PUBLISH and
just after the last delivery. Modes alternate (direct, proxy, direct, proxy, ...); the summary
shows medians.
"""
import argparse
import glob
import os
import resource
import selectors
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"
CHANNEL = b"ch"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of the whole process, in seconds (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_ns(pid):
    """Time on CPU of all the process's threads, in seconds (ns resolution)."""
    total = 0
    for p in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(p) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e9


def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """Blocking RESP2 request/reply connection (control commands)."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
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
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if t == b":":
            return int(rest)
        if t == b"-":
            raise RuntimeError(rest.decode())
        return rest

    def cmd(self, *args):
        self.s.sendall(enc(*args))
        return self.reply()

    def close(self):
        self.s.close()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def numsub(ctl):
    return ctl.cmd("PUBSUB", "NUMSUB", CHANNEL)[1]


def pubsub_conns(ctl):
    """Redis's clients with subscriptions: {id: sub count} (CLIENT LIST TYPE pubsub)."""
    out = {}
    for line in ctl.cmd("CLIENT", "LIST", "TYPE", "pubsub").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        out[f["id"]] = int(f.get("sub", 0))
    return out


def wait_for(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def confirm(name, count, kind=b"subscribe"):
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n" % (len(kind), kind, len(name), name, count)


def read_exact_all(socks, expected, seconds):
    """Reads from every socket until it has received exactly `expected[i]` bytes; returns the
    bytes per socket (what arrived by the deadline)."""
    sel = selectors.DefaultSelector()
    got = [b""] * len(socks)
    left = 0
    for i, s in enumerate(socks):
        if expected[i]:
            sel.register(s, selectors.EVENT_READ, i)
            left += 1
    end = time.monotonic() + seconds
    while left and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            data = key.fileobj.recv(1 << 16)
            got[i] += data
            if not data or len(got[i]) >= expected[i]:
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    return got


def frame(seq, payload):
    body = b"%0*d" % (payload, seq)
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL, len(body), body)


def run_mode(mode, port, a, ctl):
    """One measurement; returns a dict of results."""
    res = {"mode": mode, "problems": []}
    if not wait_for(lambda: numsub(ctl) == 0, 5):
        res["problems"].append("Redis NUMSUB ch was %d, not 0, before subscribing" % numsub(ctl))

    # Subscribe.
    subs = []
    for _ in range(a.subs):
        s = socket.create_connection((HOST, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subs.append(s)
    want = confirm(CHANNEL, 1)
    for s in subs:
        s.sendall(enc("SUBSCRIBE", CHANNEL))
    got = read_exact_all(subs, [len(want)] * len(subs), 20)
    bad = [i for i, g in enumerate(got) if g != want]
    if bad:
        res["problems"].append("%d subscribers without the expected confirmation (first: %r)"
                               % (len(bad), got[bad[0]][:80]))

    # Through the proxy: how many subscribers each shard holds (one probe channel each).
    if mode == "proxy":
        before = pubsub_conns(ctl)
        probes = [b"probe:%d" % i for i in range(len(subs))]
        for s, p in zip(subs, probes):
            s.sendall(enc("SUBSCRIBE", p))
        got = read_exact_all(subs, [len(confirm(p, 2)) for p in probes], 20)
        nbad = sum(1 for g, p in zip(got, probes) if g != confirm(p, 2))
        target = len(subs) + len(before)
        wait_for(lambda: sum(pubsub_conns(ctl).values()) >= target, 5)
        per = pubsub_conns(ctl)
        res["per_shard"] = sorted((n - 1 for n in per.values()), reverse=True)
        for s, p in zip(subs, probes):
            s.sendall(enc("UNSUBSCRIBE", p))
        got = read_exact_all(subs, [len(confirm(p, 1, b"unsubscribe")) for p in probes], 20)
        nbad += sum(1 for g, p in zip(got, probes) if g != confirm(p, 1, b"unsubscribe"))
        if nbad:
            res["problems"].append("%d unexpected probe (un)subscribe confirmations" % nbad)
        if not wait_for(lambda: all(n == 1 for n in pubsub_conns(ctl).values()), 5):
            res["problems"].append("probe channels still subscribed at Redis: %r" % pubsub_conns(ctl))

    res["redis_numsub"] = numsub(ctl)
    pub = Conn(port)
    res["target_numsub"] = pub.cmd("PUBSUB", "NUMSUB", CHANNEL)[1]

    # Publish and deliver.
    fsize = len(frame(0, a.payload))
    expected = a.messages * fsize
    sample = set(range(0, len(subs), 100))
    kept = {i: [] for i in sample}
    received = [0] * len(subs)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(subs):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    pub.s.setblocking(False)
    sel.register(pub.s, selectors.EVENT_READ, -1)
    sent = acked = 0
    pub_buf = b""
    publish_replies = {}
    left = len(subs)
    last = None

    def send_batch():
        nonlocal sent
        n = min(a.batch, a.messages - sent)
        out = b"".join(enc("PUBLISH", CHANNEL, b"%0*d" % (a.payload, sent + j)) for j in range(n))
        pub.s.setblocking(True)
        pub.s.sendall(out)
        pub.s.setblocking(False)
        sent += n

    r0, p0 = (cpu_ticks(a.redis_pid), cpu_ns(a.redis_pid)), (cpu_ticks(a.proxy_pid), cpu_ns(a.proxy_pid))
    c0 = os.times()
    t0 = time.perf_counter()
    send_batch()
    deadline = t0 + a.deadline
    while left:
        now = time.perf_counter()
        if now > deadline:
            break
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            if i < 0:
                pub_buf += pub.s.recv(1 << 16)
                *lines, pub_buf = pub_buf.split(b"\r\n")
                for ln in lines:
                    publish_replies[ln] = publish_replies.get(ln, 0) + 1
                acked += len(lines)
                if acked == sent and sent < a.messages:
                    send_batch()
                continue
            data = key.fileobj.recv(1 << 18)
            if not data:
                sel.unregister(key.fileobj)
                left -= 1
                res["problems"].append("subscriber %d closed by the server" % i)
                continue
            received[i] += len(data)
            if i in kept:
                kept[i].append(data)
            if received[i] >= expected:
                sel.unregister(key.fileobj)
                left -= 1
                last = time.perf_counter()
    t_end = last if not left else time.perf_counter()
    r1, p1 = (cpu_ticks(a.redis_pid), cpu_ns(a.redis_pid)), (cpu_ticks(a.proxy_pid), cpu_ns(a.proxy_pid))
    c1 = os.times()
    sel.close()

    delivered = sum(min(r, expected) for r in received) // fsize
    short = [i for i, r in enumerate(received) if r < expected]
    extra = [i for i, r in enumerate(received) if r > expected]
    if short:
        res["problems"].append(
            "%d of %d subscribers incomplete after %.0f s: %d messages missing in all "
            "(fewest received: %d of %d); publisher sent %d, got %d replies"
            % (len(short), len(subs), a.deadline, (len(subs) * expected - sum(received)) // fsize,
               min(received) // fsize, a.messages, sent, acked))
    if extra:
        res["problems"].append("%d subscribers received more bytes than %d messages" % (len(extra), a.messages))
    want_stream = b"".join(frame(j, a.payload) for j in range(a.messages))
    wrong = [i for i, chunks in kept.items() if i not in short and b"".join(chunks) != want_stream]
    if wrong:
        res["problems"].append("sampled subscribers %s: stream differs from the %d frames published in order"
                               % (wrong[:5], a.messages))
    if acked != a.messages:
        res["problems"].append("publisher: %d replies for %d PUBLISH" % (acked, a.messages))
    res.update(
        delivered=delivered, elapsed=t_end - t0, rate=delivered / (t_end - t0),
        redis_ticks=r1[0] - r0[0], redis_ns=r1[1] - r0[1],
        proxy_ticks=p1[0] - p0[0], proxy_ns=p1[1] - p0[1],
        client_cpu=(c1.user - c0.user) + (c1.system - c0.system),
        publish_replies=", ".join("%s x%d" % (k.decode(), v) for k, v in sorted(publish_replies.items())),
        sampled=len(kept), sample_ok=len(kept) - len(wrong))

    pub.close()
    for s in subs:
        s.close()
    if not wait_for(lambda: numsub(ctl) == 0, 5):
        res["problems"].append("Redis NUMSUB ch still %d 5 s after the subscribers left" % numsub(ctl))
    return res


def per_m(sec, delivered):
    return sec / (delivered / 1e6) if delivered else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("redis_port", type=int)
    ap.add_argument("proxy_port", type=int)
    ap.add_argument("--redis-pid", type=int, required=True)
    ap.add_argument("--proxy-pid", type=int, required=True)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--payload", type=int, default=16, help="payload bytes (zero-padded sequence number)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=2, help="the proxy's --threads")
    ap.add_argument("--deadline", type=float, default=30.0, help="give up on one delivery after this")
    a = ap.parse_args()
    if not (1 <= a.subs <= 10000 and 1 <= a.messages <= 100000 and 1 <= a.batch <= 1000
            and 1 <= a.rounds <= 10 and 4 <= a.payload <= 1000):
        sys.exit("out of range: --subs 1..10000, --messages 1..100000, --batch 1..1000, "
                 "--rounds 1..10, --payload 4..1000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.subs + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.subs + 1024), hard))

    ctl = Conn(a.redis_port)
    results = []
    for r in range(a.rounds):
        for mode, port in (("direct", a.redis_port), ("proxy", a.proxy_port)):
            res = run_mode(mode, port, a, ctl)
            res["round"] = r + 1
            print("round %d %-6s: %.0f msg/s, redis %.3f s, proxy %.3f s%s"
                  % (r + 1, mode, res["rate"], res["redis_ns"], res["proxy_ns"],
                     "; " + "; ".join(res["problems"]) if res["problems"] else ""),
                  file=sys.stderr, flush=True)
            results.append(res)

    L = []
    L.append("%d subscribers (RESP2, raw sockets, one epoll loop), 1 publisher, channel `ch`, "
             "%d messages of %d bytes, PUBLISH pipelined %d at a time; %d rounds, modes alternating."
             % (a.subs, a.messages, a.payload, a.batch, a.rounds))
    L.append("")
    L.append("## Summary (median of %d rounds)" % a.rounds)
    L.append("")
    L.append("| mode | delivered msg/s | Redis CPU s (ticks) | Redis CPU s/M msg (ticks) "
             "| Redis CPU s (exact) | Redis CPU s/M msg (exact) | proxy CPU s (exact) "
             "| proxy CPU s/M msg (exact) | client CPU s |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {}
    for mode in ("direct", "proxy"):
        rs = [r for r in results if r["mode"] == mode]
        m = {k: statistics.median(r[k] for r in rs) for k in
             ("rate", "redis_ticks", "redis_ns", "proxy_ns", "client_cpu")}
        m["redis_ticks_m"] = statistics.median(per_m(r["redis_ticks"], r["delivered"]) for r in rs)
        m["redis_ns_m"] = statistics.median(per_m(r["redis_ns"], r["delivered"]) for r in rs)
        m["proxy_ns_m"] = statistics.median(per_m(r["proxy_ns"], r["delivered"]) for r in rs)
        med[mode] = m
        L.append("| %s | %.0f | %.2f | %.3f | %.3f | %.4f | %s | %s | %.2f |"
                 % ("redis-server (direct)" if mode == "direct" else "redis-proxy --threads %d" % a.shards,
                    m["rate"], m["redis_ticks"], m["redis_ticks_m"], m["redis_ns"], m["redis_ns_m"],
                    "-" if mode == "direct" else "%.3f" % m["proxy_ns"],
                    "-" if mode == "direct" else "%.4f" % m["proxy_ns_m"], m["client_cpu"]))
    L.append("")
    d, p = med["direct"], med["proxy"]
    ratio_ns = p["redis_ns_m"] / d["redis_ns_m"] if d["redis_ns_m"] else float("nan")
    ratio_t = p["redis_ticks_m"] / d["redis_ticks_m"] if d["redis_ticks_m"] else float("nan")
    L.append("- **Redis CPU per delivered message, through the proxy / direct: %.4f (exact), "
             "%.4f (ticks)**; goal: at most 0.1 -> %s."
             % (ratio_ns, ratio_t, "met" if ratio_ns <= 0.1 else "NOT met"))
    L.append("- Delivery rate through the proxy / direct: %.2f." % (p["rate"] / d["rate"]))
    L.append("- Total CPU (Redis + proxy) per million delivered messages: direct %.3f s, "
             "through the proxy %.3f s." % (d["redis_ns_m"], p["redis_ns_m"] + p["proxy_ns_m"]))
    numsubs = [r["redis_numsub"] for r in results if r["mode"] == "proxy"]
    L.append("- Redis's `PUBSUB NUMSUB ch` (asked straight at Redis) while %d clients were subscribed "
             "through the proxy: %s (proxy shards: %d) -> %s."
             % (a.subs, ", ".join(map(str, numsubs)), a.shards,
                "one subscription per shard at most" if all(n <= a.shards for n in numsubs) else "MORE than one per shard"))
    L.append("- `PUBSUB NUMSUB ch` asked through the proxy: %s; straight at Redis in direct mode: %s."
             % (", ".join(str(r["target_numsub"]) for r in results if r["mode"] == "proxy"),
                ", ".join(str(r["redis_numsub"]) for r in results if r["mode"] == "direct")))
    L.append("")
    L.append("## Rounds")
    L.append("")
    L.append("| round | mode | subscribers per shard | delivered | elapsed s | msg/s | Redis CPU s (ticks / exact) "
             "| proxy CPU s (ticks / exact) | client CPU s | PUBLISH replies | sampled streams ok | problems |")
    L.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for r in results:
        L.append("| %d | %s | %s | %d | %.3f | %.0f | %.2f / %.3f | %s | %.2f | %s | %d/%d | %s |"
                 % (r["round"], r["mode"], " + ".join(map(str, r.get("per_shard", []))) or "-",
                    r["delivered"], r["elapsed"], r["rate"], r["redis_ticks"], r["redis_ns"],
                    "%.2f / %.3f" % (r["proxy_ticks"], r["proxy_ns"]) if r["mode"] == "proxy" else "-",
                    r["client_cpu"], r["publish_replies"], r["sample_ok"], r["sampled"],
                    "; ".join(r["problems"]) or "none"))
    L.append("")
    print("\n".join(L))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
