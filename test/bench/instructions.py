#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Instructions a request costs kubia, counted by valgrind's callgrind: a figure that a
busy machine does not blur, to go with metrics.sh's throughput.

Usage: instructions.py BINARY...     (the first is the base of the ratios)

Each binary runs in pet mode with one HTTP thread under callgrind, on loopback, twice per
load: once answering A requests, once B, all on one keep-alive connection; the count per
request is the difference of the two totals over B - A, so start-up and shutdown cancel
out. Loads: GET /data (64-byte body) and POST of 100 bytes (durable: the fsyncs are
system calls, not counted). Prints a table of instructions a request and ratios.
"""
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kubiatest.ports import free_port  # noqa: E402

LOADS = (("GET /data", "GET", 500, 3000), ("POST 100 B", "POST", 50, 300))


def count(binary, method, n, workdir):
    """Total instructions of binary answering n requests of method."""
    out = os.path.join(workdir, "callgrind.out")
    port = free_port()
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary,
         "--port", str(port), "--data-file", os.path.join(workdir, "kubia.txt"),
         "--mode", "pet", "--hostname", "kubia-0", "--threads", "1", "--log-level", "warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(workdir, "stderr"), "wb"))
    try:
        deadline = time.monotonic() + 60
        while True:
            if p.poll() is not None:
                sys.exit("%s exited with %s" % (binary, p.returncode))
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/", body=b"k" * 64)
                c.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("%s not ready in 60 s" % binary)
                time.sleep(0.2)
        for _ in range(n):
            if method == "POST":
                c.request("POST", "/", body=b"p" * 100)
            else:
                c.request("GET", "/data")
            r = c.getresponse()
            r.read()
            if r.status != 200:
                sys.exit("%s answered %d" % (binary, r.status))
        c.close()
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(out) as f:
        m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    os.unlink(out)
    return int(m.group(1))


def main(binaries):
    if not binaries:
        sys.exit(__doc__)
    if shutil.which("valgrind") is None:
        print("SKIPPED: valgrind is not installed")
        return 77
    rows = {}
    workdir = tempfile.mkdtemp(prefix="kubia-instructions.")
    try:
        for b in binaries:
            for name, method, a, n in LOADS:
                ia = count(b, method, a, workdir)
                ib = count(b, method, n, workdir)
                rows[(b, name)] = (ib - ia) / (n - a)
    finally:
        shutil.rmtree(workdir)
    print("| binary | " + " | ".join("%s: instructions | ratio" % n for n, *_ in LOADS) + " |")
    print("|---|" + "---|---|" * len(LOADS))
    for b in binaries:
        cells = []
        for name, *_ in LOADS:
            v = rows[(b, name)]
            cells.append("%.0f | %.4f" % (v, v / rows[(binaries[0], name)]))
        print("| %s | %s |" % (b, " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
