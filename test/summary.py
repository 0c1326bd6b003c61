#!/usr/bin/env python3
"""Sums the results of meson test runs into one line: "N passed, N failed[, N skipped]".

A meson test that wraps a whole runner is expanded into that runner's own counts:
pytest's closing line ("3 passed, 1 skipped in 2.1s") or cmocka's ("[  PASSED  ] 7
test(s)."). A test whose runner said nothing countable counts once, by its result; a
test that failed although its runner counted no failure (a sanitizer or valgrind
report, a crash) counts one failure more.

usage: summary.py BUILD_DIR...   (every meson-logs/*.json of each: testlog.json and the
logs of runs with --logbase or --wrapper)
"""
import json
import re
import sys
from pathlib import Path

PYTEST_LINE = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [\d.]+s")
PYTEST_ITEM = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")
CMOCKA = {
    "passed": re.compile(r"^\[  PASSED  \] (\d+) test"),
    "failed": re.compile(r"^\[  FAILED  \] (\d+) test"),
    "skipped": re.compile(r"^\[  SKIPPED \] (\d+) test"),
}


def counts_from_output(text):
    """Returns a dict of counts, or None when the output has no runner summary."""
    found = None
    for line in text.splitlines():
        m = PYTEST_LINE.match(line.strip())
        if m:
            found = {"passed": 0, "failed": 0, "skipped": 0}
            for n, what in PYTEST_ITEM.findall(m.group(1)):
                if what in ("passed", "xpassed"):
                    found["passed"] += int(n)
                elif what in ("failed", "error", "errors"):
                    found["failed"] += int(n)
                elif what in ("skipped", "xfailed"):
                    found["skipped"] += int(n)
    if found is not None:
        return found
    cm = {"passed": 0, "failed": 0, "skipped": 0}
    seen = False
    for line in text.splitlines():
        for key, rx in CMOCKA.items():
            m = rx.match(line)
            if m:
                cm[key] += int(m.group(1))
                seen = True
    return cm if seen else None


def main(argv):
    logs = []
    for d in argv:
        found = sorted((Path(d) / "meson-logs").glob("*.json"))
        if not found:
            print(f"summary: no test log in {d} (that stage did not run)")
            logs.append(None)
        logs.extend(found)
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for log in logs:
        if log is None:
            total["failed"] += 1
            continue
        for raw in log.read_text(errors="replace").splitlines():
            if not raw.strip():
                continue
            entry = json.loads(raw)
            result = entry.get("result", "")
            text = (entry.get("stdout") or "") + "\n" + (entry.get("stderr") or "")
            c = counts_from_output(text)
            if c is None:
                key = {"OK": "passed", "EXPECTEDFAIL": "passed", "SKIP": "skipped"}.get(
                    result, "failed")
                c = {"passed": 0, "failed": 0, "skipped": 0}
                c[key] = 1
            elif result not in ("OK", "SKIP", "EXPECTEDFAIL") and c["failed"] == 0:
                c["failed"] += 1
            for k in total:
                total[k] += c[k]
    line = f"{total['passed']} passed, {total['failed']} failed"
    if total["skipped"]:
        line += f", {total['skipped']} skipped"
    print(line)
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
