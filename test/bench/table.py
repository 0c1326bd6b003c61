#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The benchmark's table: medians over the rounds, ratios from the same run, each target
with its verdict. Reads what bench.sh recorded:

  RUNS       one wrk (or fsync_bound) run a line, tab-separated: load, contender, req/s,
             p50 us, p99 us, errors, peak VmRSS kiB during the run (0: not measured),
             answer size check (ok, bad or -)
  STARTSTOP  one start/stop a line: contender, start-to-ready us, SIGTERM-to-exit us,
             idle VmRSS kiB, exit status

Usage: table.py RUNS STARTSTOP POST_SIZES VIEW_PODS
POST_SIZES and VIEW_PODS are comma-separated (e.g. 100,65536 and 30,300).
Ratios are kubia / the other. Prints the table, then the targets met and any errors.
Exits 3 when a target has no data (its part did not run, or a load got no answer).
"""
import statistics
import sys

TARGET_POST_CLIENTS = (1, 32)


def load(runs_path, startstop_path):
    runs, ss = {}, {}
    with open(runs_path) as f:
        for line in f:
            load_, who, rps, p50, p99, errors, rss, size = line.rstrip("\n").split("\t")
            # no answer at all in a run: its latencies are unknown, not 0
            lat = (int(p50), int(p99)) if float(rps) > 0 else (None, None)
            runs.setdefault((load_, who), []).append(
                (float(rps), *lat, int(errors), int(rss), size))
    with open(startstop_path) as f:
        for line in f:
            who, start, stop, rss, status = line.rstrip("\n").split("\t")
            ss.setdefault(who, []).append((int(start), int(stop), int(rss), status))
    return runs, ss


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "rps":
        return f"{v:,.0f} req/s"
    if kind == "us":
        return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} us"
    if kind == "kib":
        return f"{v / 1024:.1f} MiB"
    return str(v)


def fmt_limit(v, kind):
    if kind == "us":
        return f"{v / 1000:g} ms"
    if kind == "kib":
        return f"{v / 1024:g} MiB"
    return f"{v:g}"


def size_name(n):
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


class Table:
    def __init__(self, runs, ss):
        self.runs, self.ss = runs, ss
        self.rows, self.met, self.targets, self.missing = [], 0, 0, 0

    def wrk(self, load_, who, i):
        r = self.runs.get((load_, who))
        if not r:
            return None
        if i == 4:  # RSS: only runs that measured it
            return med(x[4] for x in r if x[4] > 0)
        return med(x[i] for x in r)

    def startstop(self, who, i):
        r = self.ss.get(who)
        return med(x[i] for x in r) if r else None

    def row(self, what, kind, mine, other_name, other, want=None, absolute=None):
        """One line. want=('>=', 1.2) compares the ratio; absolute=('<=', 20000) compares
        kubia's own figure (in the row's unit)."""
        ratio = mine / other if mine is not None and other else None
        verdict, wanted = "", "-"
        check = absolute or want
        if check:
            op, limit = check
            value = mine if absolute else ratio
            wanted = f"{op} {fmt_limit(limit, kind)}" if absolute else f"{op} {limit:g}x"
            self.targets += 1
            if value is None:
                verdict = "no data"
                self.missing += 1
            elif (value >= limit) if op == ">=" else (value <= limit):
                verdict = "met"
                self.met += 1
            else:
                verdict = "NOT met"
        self.rows.append((what, fmt(mine, kind), other_name, fmt(other, kind),
                          f"{ratio:.2f}" if ratio is not None else "-", wanted, verdict))

    def render(self):
        head = ("measure", "kubia", "against", "their figure", "ratio", "target", "verdict")
        widths = [max(len(r[c]) for r in self.rows + [head]) for c in range(len(head))]

        def line(cells):
            return "| " + " | ".join(
                c.ljust(w) if j in (0, 2, 5, 6) else c.rjust(w)
                for j, (c, w) in enumerate(zip(cells, widths))) + " |"
        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


def build(t, post_sizes, view_pods):
    w = t.wrk
    t.row("GET /data req/s", "rps", w("data", "kubia", 0), "nginx", w("data", "nginx", 0),
          want=(">=", 1.2))
    t.row("GET /data p99", "us", w("data", "kubia", 2), "nginx", w("data", "nginx", 2),
          want=("<=", 1.0))
    t.row("GET /data p50", "us", w("data", "kubia", 1), "nginx", w("data", "nginx", 1))
    t.row("GET /data req/s", "rps", w("data", "kubia", 0), "reference",
          w("data", "node", 0))
    t.row("view, 3 pods: req/s", "rps", w("view-3", "kubia", 0), "reference",
          w("view-3", "node", 0), want=(">=", 10))
    t.row("view, 3 pods: p99", "us", w("view-3", "kubia", 2), "reference",
          w("view-3", "node", 2), want=("<=", 0.1))
    t.row("view, 3 pods: p50", "us", w("view-3", "kubia", 1), "reference",
          w("view-3", "node", 1))
    t.row("view, 3 pods, no DNS cache: req/s", "rps", w("view-3", "kubia-nocache", 0),
          "reference", w("view-3", "node", 0))
    for pods in view_pods:
        want = ("<=", 2.0) if pods == 30 else None
        t.row(f"view, {pods} pods: p50", "us", w(f"view-{pods}", "kubia", 1),
              "kubia, 3 pods", w("view-3", "kubia", 1), want=want)
        t.row(f"view, {pods} pods: req/s", "rps", w(f"view-{pods}", "kubia", 0),
              "kubia, 3 pods", w("view-3", "kubia", 0))
    for size in post_sizes:
        for c in TARGET_POST_CLIENTS:
            load_ = f"post-{size}-c{c}"
            name = f"POST {size_name(size)}, {c} client{'s' if c > 1 else ''}"
            if c == 1:
                t.row(f"{name}: req/s", "rps", w(load_, "kubia", 0), "fsync bound",
                      w(load_, "fsync", 0), want=(">=", 0.9))
                t.row(f"{name}: req/s", "rps", w(load_, "kubia", 0), "reference",
                      w(load_, "node", 0))
            else:
                t.row(f"{name}: req/s", "rps", w(load_, "kubia", 0), "reference",
                      w(load_, "node", 0), want=(">=", 1.0))
                t.row(f"{name}: req/s", "rps", w(load_, "kubia", 0), "fsync bound",
                      w(f"post-{size}-c1", "fsync", 0))
            t.row(f"{name}: p99", "us", w(load_, "kubia", 2), "reference",
                  w(load_, "node", 2))
    t.row("VmRSS idle (after start)", "kib", t.startstop("kubia", 2), "reference",
          t.startstop("node", 2), absolute=("<=", 8 * 1024))
    loads = [("data", "GET /data")] + [
        (f"post-{s}-c{c}", f"POST {size_name(s)}, {c} client{'s' if c > 1 else ''}")
        for s in post_sizes for c in TARGET_POST_CLIENTS] + [("view-3", "view, 3 pods")]
    for load_, name in loads:
        t.row(f"VmRSS peak under {name}", "kib", w(load_, "kubia", 4), "reference",
              w(load_, "node", 4), want=("<=", 0.125))
    t.row("VmRSS peak under GET /data", "kib", w("data", "kubia", 4), "nginx",
          w("data", "nginx", 4))
    for pods in view_pods:
        t.row(f"VmRSS peak under view, {pods} pods", "kib", w(f"view-{pods}", "kubia", 4),
              "kubia, 3 pods", w("view-3", "kubia", 4))
    t.row("start to ready", "us", t.startstop("kubia", 0), "reference",
          t.startstop("node", 0), absolute=("<=", 20000))
    t.row("SIGTERM to exit, idle", "us", t.startstop("kubia", 1), "reference",
          t.startstop("node", 1), absolute=("<=", 20000))


def problems(runs, ss):
    """Lines about wrk errors, answers of the wrong size and exit statuses."""
    out = []
    errors = sum(x[3] for r in runs.values() for x in r)
    bad = sum(1 for r in runs.values() for x in r if x[5] == "bad")
    checked = sum(1 for r in runs.values() for x in r if x[5] in ("ok", "bad"))
    out.append(f"wrk errors: {errors or 'none'}; answer sizes checked in {checked} runs, "
               f"{bad or 'none'} wrong")
    for (load_, who), r in sorted(runs.items()):
        errors = sum(x[3] for x in r)
        bad = sum(1 for x in r if x[5] == "bad")
        if errors:
            out.append(f"wrk errors: {load_} {who}: {errors} over {len(r)} runs")
        if bad:
            out.append(f"answer sizes: {load_} {who}: {bad} of {len(r)} runs had answers "
                       "of another size than expected")
    for who, r in sorted(ss.items()):
        statuses = sorted({x[3] for x in r})
        out.append(f"exit status after SIGTERM: {who}: {', '.join(statuses)}")
    return out


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    runs, ss = load(argv[1], argv[2])
    post_sizes = [int(s) for s in argv[3].split(",") if s]
    view_pods = [int(s) for s in argv[4].split(",") if s]
    t = Table(runs, ss)
    build(t, post_sizes, view_pods)
    print(t.render())
    print()
    print(f"targets met: {t.met} of {t.targets}"
          + (f" ({t.missing} without data)" if t.missing else ""))
    for line in problems(runs, ss):
        print(line)
    return 3 if t.missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
