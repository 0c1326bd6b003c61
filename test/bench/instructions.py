#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Instructions a request costs kubia, counted by valgrind's callgrind: a figure that a
busy machine does not blur, to go with metrics.sh's throughput.

Usage: instructions.py BINARY...     (the first is the base of the ratios)

Each binary runs in pet mode with one HTTP thread under callgrind, on loopback, twice per
load: once answering A requests, once B, all on one keep-alive connection; the count per
request is the difference of the two totals over B - A, so start-up and shutdown cancel
out. Loads: GET /data (64-byte body) and POST of 100 bytes (durable: the fsyncs are
system calls, not counted), and the cluster view (GET /) of 3 and 30 pods: then the
binary runs in peers mode as kubia-0, its peers are kubias of the first binary in pet
mode, not counted, and a DNS server of the benchmark (srvdns.py) lists them; one view
at a time, so no two views share a fetch, and every line must be the peer's data.
Prints a table of instructions a request and ratios.
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

# name, method, pods (0: pet mode), requests of the short run, of the long run
LOADS = (("GET /data", "GET", 0, 500, 3000), ("POST 100 B", "POST", 0, 50, 300),
         ("view, 3 pods", "GET", 3, 20, 220), ("view, 30 pods", "GET", 30, 10, 60))
SERVICE = "kubia.default.svc.cluster.local"
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))


def wait_ready(p, port, what):
    """Waits until port answers GET /readyz with 200, or exits."""
    deadline = time.monotonic() + 60
    while True:
        if p.poll() is not None:
            sys.exit("%s exited with %s" % (what, p.returncode))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                c.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("%s not ready in 60 s" % what)
        time.sleep(0.2)


class Cluster:
    """kubia-1 .. kubia-(pods-1) in pet mode and a DNS server listing them with kubia-0
    on port0; stop() ends them."""

    def __init__(self, binary, pods, workdir):
        self.procs, self.port0, self.dns = [], free_port(), free_port()
        records = ["kubia-0.%s,%d,127.0.0.1" % (SERVICE, self.port0)]
        try:
            for i in range(1, pods):
                port, d = free_port(), os.path.join(workdir, "peer-%d" % i)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "kubia.txt"), "w") as f:
                    f.write("data of pod %d" % i)
                self.procs.append(subprocess.Popen(
                    [binary, "--port", str(port), "--data-file", os.path.join(d, "kubia.txt"),
                     "--mode", "pet", "--hostname", "kubia-%d" % i, "--threads", "1",
                     "--log-level", "warn"], stdin=subprocess.DEVNULL))
                wait_ready(self.procs[-1], port, "peer kubia-%d" % i)
                records.append("kubia-%d.%s,%d,127.0.0.1" % (i, SERVICE, port))
            self.procs.append(subprocess.Popen(
                [sys.executable, os.path.join(SCRIPT_DIR, "srvdns.py"), str(self.dns), "5",
                 SERVICE] + records, stdin=subprocess.DEVNULL))
        except BaseException:
            self.stop()
            raise
        self.resolv = os.path.join(workdir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver 127.0.0.1\n")

    def args(self):
        return ["--mode", "peers", "--service", SERVICE + ".", "--dns-server",
                "127.0.0.1:%d" % self.dns, "--resolv-conf", self.resolv]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def count(binary, method, n, workdir, cluster=None):
    """Total instructions of binary answering n requests of method (a view of cluster's
    when cluster is given)."""
    out = os.path.join(workdir, "callgrind.out")
    port = cluster.port0 if cluster else free_port()
    mode = cluster.args() if cluster else ["--mode", "pet"]
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary,
         "--port", str(port), "--data-file", os.path.join(workdir, "kubia.txt"),
         "--hostname", "kubia-0", "--threads", "1", "--log-level", "warn"] + mode,
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
                c.request("GET", "/" if cluster else "/data")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                sys.exit("%s answered %d" % (binary, r.status))
            if cluster and body.count(b"data of pod ") != len(cluster.procs) - 1:
                sys.exit("%s: a view without every peer's data:\n%s" % (binary, body.decode()))
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
        for name, method, pods, a, n in LOADS:
            cluster = Cluster(binaries[0], pods, workdir) if pods else None
            try:
                for b in binaries:
                    ia = count(b, method, a, workdir, cluster)
                    ib = count(b, method, n, workdir, cluster)
                    rows[(b, name)] = (ib - ia) / (n - a)
            finally:
                if cluster:
                    cluster.stop()
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
