#!/usr/bin/env python3
"""Helper for perf/redis_suite.sh.

  redis_suite.py port
      print a free TCP port on 127.0.0.1
  redis_suite.py testport
      print a port P with P and P+10000 free on 127.0.0.1 (for test_helper's own server)
  redis_suite.py parse LOG --unit U --mode M --rc RC --seconds S [--server-died] >> runs.jsonl
      turn one test_helper.tcl output log into one JSON line
  redis_suite.py report runs.jsonl --md OUT.md --details OUT-details.md [--header FILE] [--rules TSV]
      per-unit table (stdout and OUT.md) and per-test details (OUT-details.md); with --rules,
      also a list of the tests that fail through the proxy and pass direct (and of the tests
      that aborted a unit through the proxy only), each with its error and its class
"""
import argparse
import fnmatch
import json
import re
import socket
import sys
from collections import Counter, OrderedDict

ANSI = re.compile(r"\x1b\[[0-9;]*m")
OK_RE = re.compile(r"^\[ok\]: (.*) \(\d+ ms\)$")
ERR_RE = re.compile(r"^\[err\]: (.*)$")
SKIP_RE = re.compile(r"^\[skip\]: (.*)$")
IGNORE_RE = re.compile(r"^\[ignore\]: (.*)$")
EXC_RE = re.compile(r"^\[exception\]: (.*)$")
DONE_RE = re.compile(r"^\[\d+/\d+ done\]: (\S+)")
TEST_CALL_RE = re.compile(r'invoked from within\n"test (?:\{([^}\n]*)\}|"([^"\n]*)")')
IN_FILE_RE = re.compile(r"^(.*) in tests/\S+\.tcl$")
# lines test_helper.tcl prints that end the text of an [err] or [exception]
BOUNDARY_RE = re.compile(
    r"^(\[(ok|err|skip|ignore|exception|TIMEOUT|ready|\d+/\d+ done)\]|Testing unit/|\s+The End$|Execution time of)"
)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_server_port():
    """A port P with P and P+10000 free: test_helper.tcl's find_available_port wants both."""
    import random
    for _ in range(200):
        p = random.randint(20000, 45000)
        if bindable(p) and bindable(p + 10000):
            return p
    raise SystemExit("no free port pair found")


def parse_log(text):
    lines = [ANSI.sub("", l.rstrip("\r")) for l in text.split("\n")]
    res = {
        "ok": [],          # names, in order
        "err": [],         # [name, first message line]
        "skip": 0,
        "ignore": 0,
        "exception": None,  # first line
        "exception_text": None,  # first lines of the Tcl error info
        "exception_test": None,  # the test that raised it, if the stack shows one
        "harness_timeout": False,
        "done": False,
    }
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        m = OK_RE.match(line)
        if m:
            res["ok"].append(m.group(1))
            i += 1
            continue
        m = ERR_RE.match(line)
        if m:
            body = [m.group(1)]
            j = i + 1
            while j < n and not BOUNDARY_RE.match(lines[j]) and lines[j] != "":
                body.append(lines[j])
                j += 1
            mm = IN_FILE_RE.match(body[0])
            if mm:
                name, rest = mm.group(1), body[1:]
            else:  # an error raised outside a test (with --durable): no name line
                name, rest = "(outside a test)", body
            # with --durable, test_helper drops the first 10 characters of a non-assertion
            # error ("assertion:" is 10 long) and adds the Tcl error info, whose first line
            # is the whole error: keep that one
            rest = [x.strip() for x in rest]
            if len(rest) > 1 and rest[0] and rest[1].endswith(rest[0]) and len(rest[1]) == len(rest[0]) + 10:
                rest = rest[1:2]
            msg = " | ".join(rest[:2])
            res["err"].append([name, msg])
            i = j
            continue
        if SKIP_RE.match(line):
            res["skip"] += 1
        elif IGNORE_RE.match(line):
            res["ignore"] += 1
        elif line.startswith("[TIMEOUT]"):
            res["harness_timeout"] = True
            # the clients state report names the test that stalled
            if i + 1 < n:
                st = re.match(r"^\S+ => \(IN PROGRESS\) (.*)$", lines[i + 1])
                if st:
                    res["exception_test"] = st.group(1)
                    res["exception"] = res["exception"] or "test_helper: no progress for --timeout seconds"
        elif DONE_RE.match(line):
            res["done"] = True
        else:
            m = EXC_RE.match(line)
            if m and res["exception"] is None:
                res["exception"] = m.group(1).strip()
                body = [m.group(1)]
                j = i + 1
                while j < n and not BOUNDARY_RE.match(lines[j]):
                    body.append(lines[j])
                    j += 1
                full = "\n".join(body)
                # innermost `test NAME {...}` on the Tcl stack (source text, variables unexpanded)
                t = TEST_CALL_RE.search(full)
                if t:
                    res["exception_test"] = t.group(1) if t.group(1) is not None else t.group(2)
                res["exception_text"] = "\n".join(body[:14]).rstrip()
        i += 1
    return res


def status_of(r):
    if r["rc"] == 124 or r["rc"] == 137:
        return "timeout (killed)"
    if r["harness_timeout"]:
        return "timeout (stalled)"
    if r["exception"]:
        return "aborted"
    if r.get("server_died"):
        return "server died"
    if not r["done"]:
        return "no result (rc %d)" % r["rc"]
    return "complete"


def sanitize(s, subs):
    if s is None:
        return s
    for old, new in subs:
        if old:
            s = s.replace(old, new)
    return s


def cmd_parse(a):
    with open(a.log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    res = parse_log(text)
    subs = [(p, "") for p in (a.src or [])] + [(p, "<tmp>") for p in (a.strip or [])]
    if res["exception"]:
        res["exception"] = sanitize(res["exception"], subs)
        res["exception_text"] = sanitize(res["exception_text"], subs)
    res["err"] = [[sanitize(n, subs), sanitize(m, subs)] for n, m in res["err"]]
    res.update(unit=a.unit, mode=a.mode, rc=a.rc, seconds=a.seconds, server_died=a.server_died)
    if a.proxy_exit is not None:
        res["proxy_exit"] = a.proxy_exit
    res["status"] = status_of(res)
    print(json.dumps(res))


def md_escape(s):
    return s.replace("|", "\\|").replace("\n", " ")


def shorten(s, n=160):
    return s if len(s) <= n else s[: n - 3] + "..."


def load_rules(path):
    """Tab-separated lines: unit glob, test-name regex, error regex (empty: any), class, reason.
    '#' starts a comment line. The first rule that matches a failure classifies it."""
    rules = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 5:
                raise SystemExit("%s:%d: want 5 tab-separated columns, got %d" % (path, ln, len(cols)))
            unit, test, err, cls, reason = cols
            rules.append({"unit": unit, "test": re.compile(test), "err": re.compile(err) if err else None,
                          "cls": cls, "reason": reason, "line": ln, "used": 0})
    return rules


def classify(rules, unit, name, msg):
    for r in rules:
        if fnmatch.fnmatchcase(unit, r["unit"]) and r["test"].search(name) and (
                r["err"] is None or r["err"].search(msg or "")):
            r["used"] += 1
            return r["cls"], r["reason"]
    return "unclassified", ""


def classified_section(runs, analysis, rules):
    """Markdown lines: every proxy-only failure and proxy-only abort, with its class."""
    items = []
    for unit, by in runs.items():
        d, p = by.get("direct"), by.get("proxy")
        if not (d and p):
            continue
        for n, m in analysis[unit]["proxy_only_fail"]:
            items.append((unit, n, "fail", m))
        if p["status"] != "complete" and d["status"] == "complete":
            n = p.get("exception_test") or "(outside a test)"
            what = "%s, %d not reached" % (p["status"], len(analysis[unit]["not_reached"]))
            items.append((unit, n, what, p.get("exception") or ""))
    counts = Counter()
    out = []
    for unit, n, what, msg in items:
        cls, reason = classify(rules, unit, n, msg)
        counts[cls] += 1
        out.append("| `%s` | %s | %s | `%s` | **%s** | %s |" % (
            unit, md_escape(n), what, md_escape(shorten(msg, 200)).replace("`", "'"), cls, md_escape(reason)))
    md = ["## Fail through the proxy, pass direct: classified\n"]
    if not items:
        md += ["None.", ""]
        return md, counts
    md.append("By class: " + ", ".join("%s %d" % (c, k) for c, k in sorted(counts.items())) + ".\n")
    md.append("| unit | test | how | error (first line) | class | why |")
    md.append("|---|---|---|---|---|---|")
    md += out
    md.append("")
    return md, counts


def cmd_report(a):
    runs = OrderedDict()
    with open(a.runs, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                runs.setdefault(r["unit"], {})[r["mode"]] = r
    modes = [m for m in ("direct", "proxy") if any(m in v for v in runs.values())]

    def cell(r, key):
        if r is None:
            return "-"
        return str(len(r[key]))

    rows = []
    analysis = OrderedDict()
    tot = Counter()
    for unit, by in runs.items():
        d, p = by.get("direct"), by.get("proxy")
        a_ = {"proxy_only_fail": [], "both_fail": [], "not_reached": [], "proxy_only_pass": []}
        if d and p:
            d_ok, d_err = Counter(d["ok"]), Counter(n for n, _ in d["err"])
            p_ok = Counter(p["ok"])
            p_err_names = OrderedDict((n, m) for n, m in p["err"])
            for n, m in p_err_names.items():
                if n in d_ok and n not in d_err:
                    a_["proxy_only_fail"].append((n, m))
                elif n in d_err:
                    a_["both_fail"].append(n)
            # tests the direct run reported that the proxy run never reached (abort, timeout)
            seen = p_ok + Counter(n for n, _ in p["err"])
            for n in d["ok"] + [n for n, _ in d["err"]]:
                if seen[n] > 0:
                    seen[n] -= 1
                else:
                    a_["not_reached"].append(n)
            a_["proxy_only_pass"] = [n for n in p_ok if n in d_err and n not in d_ok]
        analysis[unit] = a_
        for m, r in (("direct", d), ("proxy", p)):
            if r:
                tot[m + "_ok"] += len(r["ok"])
                tot[m + "_err"] += len(r["err"])
                tot[m + "_" + r["status"].split(" ")[0]] += 1
        tot["not_reached"] += len(a_["not_reached"])
        names = "; ".join(shorten(n, 90) for n, _ in a_["proxy_only_fail"])
        if len(names) > 600:
            names = names[:597] + "..."
        row = ["`%s`" % unit]
        if "direct" in modes:
            row += [cell(d, "ok"), cell(d, "err"), d["status"] if d else "-"]
        if "proxy" in modes:
            row += [cell(p, "ok"), cell(p, "err"), p["status"] if p else "-"]
        if len(modes) == 2:
            row += [str(len(a_["not_reached"])), md_escape(names) or "-"]
        rows.append(row)

    hdr = ["unit"]
    if "direct" in modes:
        hdr += ["direct ok", "direct err", "direct run"]
    if "proxy" in modes:
        hdr += ["proxy ok", "proxy err", "proxy run"]
    if len(modes) == 2:
        hdr += ["not reached via proxy", "fail via proxy, pass direct"]
    total = ["**total**"]
    if "direct" in modes:
        total += [str(tot["direct_ok"]), str(tot["direct_err"]), "%d complete" % tot["direct_complete"]]
    if "proxy" in modes:
        total += [str(tot["proxy_ok"]), str(tot["proxy_err"]), "%d complete" % tot["proxy_complete"]]
    if len(modes) == 2:
        total += [str(tot["not_reached"]), ""]

    table = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" if i == 0 or h.endswith("run") or h.startswith("fail") else "---:" for i, h in enumerate(hdr)) + "|"]
    table += ["| " + " | ".join(r) + " |" for r in rows + [total]]

    aborted = []
    for unit, by in runs.items():
        for m in modes:
            r = by.get(m)
            if r and r["status"] != "complete":
                first = r["exception"] or ""
                where = ""
                if r.get("exception_test"):
                    where = " in test \"%s\"" % md_escape(r["exception_test"])
                elif first:
                    where = " outside a test"
                nr = analysis[unit]["not_reached"] if m == "proxy" else []
                if nr and not r.get("exception_test"):
                    where += " (first test not reached: \"%s\")" % md_escape(nr[0])
                aborted.append("- `%s` (%s): %s%s%s" % (unit, m, r["status"], where,
                               (": `" + shorten(first, 220).replace("`", "'") + "`") if first else ""))

    header = open(a.header, encoding="utf-8").read().rstrip() + "\n\n" if a.header else ""
    md = [header + "## Per unit\n", *table, ""]
    md.append("ok/err: tests reported `[ok]`/`[err]`. *run*: `complete`, `aborted` (a Tcl exception ended the unit: "
              "test_helper.tcl stops at the first exception), `timeout (stalled)` (no progress for the "
              "test_helper `--timeout`), `timeout (killed)` (the outer `timeout`). *not reached via proxy*: tests "
              "the direct run reported that the proxy run never got to (abort or timeout). "
              "Details, error messages and exception traces: see the details file.\n")
    if aborted:
        md.append("## Units that did not complete (first exception line)\n")
        md += aborted
        md.append("")
    bad_exit = [(u, r["proxy_exit"]) for u, by in runs.items() for r in by.values()
                if r.get("proxy_exit") not in (None, 0, 143)]
    if bad_exit:
        md.append("## redis-proxy ended abnormally (exit status other than 0 or SIGTERM's 143)\n")
        md += ["- `%s`: exit status %d%s" % (u, st, " (SIGABRT: the proxy aborts on a panic; "
               "its message, when it reached the log, is in the raw proxy log)" if st == 134 else "")
               for u, st in bad_exit]
        md.append("")
    classified = None
    if a.rules and len(modes) == 2:
        rules = load_rules(a.rules)
        classified, _ = classified_section(runs, analysis, rules)
        md += classified
        unused = [r for r in rules if not r["used"]]
        if unused:
            print("note: rules that matched nothing in this run (flaky failures, or DURABLE-specific): "
                  + ", ".join("line %d" % r["line"] for r in unused), file=sys.stderr)
    with open(a.md, "w", encoding="utf-8") as f:
        f.write("\n".join(md))

    # details
    det = [header + "# Details per unit\n"]
    for unit, by in runs.items():
        det.append("## `%s`\n" % unit)
        for m in modes:
            r = by.get(m)
            if not r:
                continue
            det.append("- %s: %s, %d ok, %d err, %d skipped, %d ignored (tags), %ss"
                       % (m, r["status"], len(r["ok"]), len(r["err"]), r["skip"], r["ignore"], r["seconds"]))
        for m in modes:
            r = by.get(m)
            if r and r["err"]:
                det.append("\n%s failures:\n" % m)
                for n, msg in r["err"]:
                    det.append("- %s  \n  `%s`" % (md_escape(n), shorten(msg, 300).replace("`", "'")))
            if r and r["exception_text"]:
                det.append("\n%s exception (the unit stopped here%s):\n" % (
                    m, ", in test \"%s\"" % md_escape(r["exception_test"]) if r.get("exception_test") else ""))
                det.append("```\n" + r["exception_text"] + "\n```")
        a_ = analysis[unit]
        if len(modes) == 2:
            if a_["proxy_only_fail"]:
                det.append("\nfail through the proxy, pass direct:\n")
                det += ["- " + md_escape(n) for n, _ in a_["proxy_only_fail"]]
            if a_["not_reached"]:
                det.append("\npass or fail direct, never reached through the proxy (%d):\n" % len(a_["not_reached"]))
                det += ["- " + md_escape(n) for n in a_["not_reached"]]
            if a_["proxy_only_pass"]:
                det.append("\npass through the proxy, fail direct:\n")
                det += ["- " + md_escape(n) for n in a_["proxy_only_pass"]]
        det.append("")
    with open(a.details, "w", encoding="utf-8") as f:
        f.write("\n".join(det))

    print("\n".join(table))
    if aborted:
        print()
        print("\n".join(aborted))
    if classified:
        print()
        print("\n".join(classified))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("port")
    sub.add_parser("testport")
    p = sub.add_parser("parse")
    p.add_argument("log")
    p.add_argument("--unit", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--server-died", action="store_true")
    p.add_argument("--proxy-exit", type=int, help="the proxy's exit status when it was stopped")
    p.add_argument("--src", action="append", help="path prefix to drop from messages (the source dir)")
    p.add_argument("--strip", action="append", help="path to replace by <tmp> in messages")
    r = sub.add_parser("report")
    r.add_argument("runs")
    r.add_argument("--md", required=True)
    r.add_argument("--details", required=True)
    r.add_argument("--header")
    r.add_argument("--rules", help="classify proxy-only failures with this TSV (see load_rules)")
    a = ap.parse_args()
    if a.cmd == "port":
        print(free_port())
    elif a.cmd == "testport":
        print(test_server_port())
    elif a.cmd == "parse":
        cmd_parse(a)
    else:
        cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
