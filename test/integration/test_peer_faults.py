# SPDX-License-Identifier: MIT
"""Peer faults, each as a cluster view must show it: a peer that refuses, hangs after
accepting, answers byte by byte (in time, and too slowly), sends 10 MB, answers another
status, sends garbage instead of HTTP, closes without answering or in the middle of the
body, resets the connection; and the legitimate answers a peer may give that are not
the usual Content-Length: HTTP/1.0 read to the close, and chunked.

Each fault is one peer of its own next to a healthy pod, asked three times: its own line
(an `Error:` line, or its data where the answer is legitimate HTTP), the same every time,
within --peer-timeout-ms plus a margin, the healthy pod's line intact. Then all of them
at once, while GET /data, the probes and another view are answered as usual."""

import concurrent.futures
import re
import socket
import struct
import time

from harness import DOMAIN, SANITIZE, pod_fqdn
from kubiatest.ports import free_port
from kubiatest.servers import TricklePeer
from kubiatest.waits import wait_until
from faultdns import FaultDNS

PEER_TIMEOUT_MS = 1000
MARGIN_S = 0.5 if SANITIZE == "none" else 1.5
RUNS = 3
HEAD = b"You've hit kubia-0\nData stored in the cluster:\n"
TEN_MB = 10 * 1000 * 1000


def answer_ok(body):
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)


# mode -> (what the peer does, the line kubia must show for it after "<name>: ")
CASES = {
    "refusing": (None, rb"Error: could not connect: Connection refused"),
    "hung after accept": ("hang", rb"Error: timed out after 1000 ms without a complete answer"),
    "byte by byte, in time": ("trickle-fast", rb"slow but whole"),
    "byte by byte, too slow": ("trickle-slow", rb"Error: timed out after 1000 ms without a complete answer"),
    "10 MB": ("big", rb"Error: reply larger than 1048576 bytes"),
    "10 MB, no length": ("big-close", rb"Error: reply larger than 1048576 bytes"),
    "status 500": ("status-500", rb"Error: HTTP 500"),
    "status 404": ("status-404", rb"Error: HTTP 404"),
    "redirect 301": ("status-301", rb"Error: HTTP 301"),
    "garbage": ("garbage", rb"Error: its answer is not HTTP"),
    "closes at once": ("close", rb"Error: closed the connection without answering"),
    "closes mid-body": ("cut", rb"Error: closed the connection in the middle of its answer"),
    "resets mid-body": ("reset", rb"Error: the connection broke while reading its answer"),
    # legitimate HTTP: the body is the peer's data
    "HTTP/1.0, no length": ("http10", rb"read to the close"),
    "chunked": ("chunked", rb"in two chunks"),
}


class FaultPeer(TricklePeer):
    """A TCP server on 127.0.0.1 answering each request for /data as mode says: the
    trickling peer, with answers of its own."""

    def __init__(self, mode):
        self.mode = mode
        self.accepted = 0
        super().__init__()

    def _send_slowly(self, c, data, interval):
        for i in range(len(data)):
            if self._stop.wait(interval):
                return
            c.sendall(data[i:i + 1])

    def _serve(self, c):
        self.accepted += 1
        super()._serve(c)

    def _answer(self, c):
        m = self.mode
        if m == "hang":
            self._stop.wait(30)
        elif m == "trickle-fast":
            self._send_slowly(c, answer_ok(b"slow but whole"), 0.002)
        elif m == "trickle-slow":
            self._send_slowly(c, answer_ok(b"x" * 1000), 0.05)
        elif m == "big":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TEN_MB)
            c.sendall(b"b" * TEN_MB)
        elif m == "big-close":
            c.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"b" * TEN_MB)
        elif m.startswith("status-"):
            code = int(m.split("-")[1])
            c.sendall(b"HTTP/1.1 %d Something\r\nContent-Length: 4\r\nLocation: /x\r\n\r\nnope"
                      % code)
        elif m == "garbage":
            c.sendall(b"\x00\x01garbage, not a status line\r\n\r\nmore garbage")
        elif m == "cut":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        elif m == "reset":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            time.sleep(0.05)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif m == "http10":
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread to the close")
        elif m == "chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"6\r\nin two\r\n7\r\n chunks\r\n0\r\n\r\n")
        # "close": nothing at all



def line(name, data):
    return b"- " + pod_fqdn(name).encode() + b": " + data + b"\n"


class Setup:
    """kubia-0 asking a DNS server of the test's own (its records changed per case, the
    SRV cache off), kubia-1 healthy with data, and one fault peer per case."""

    def __init__(self, factory):
        self.p0, self.p1 = free_port(), free_port()
        self.dns = FaultDNS(hosts={pod_fqdn("kubia-%d" % i): "127.0.0.1" for i in range(40)})
        factory.on_close(self.dns.close)
        self.k1 = factory.kubia("kubia-1", port=self.p1, mode="pet")
        self.k1.post("/", b"healthy")
        self.k0 = factory.kubia("kubia-0", port=self.p0, mode="peers", dns=self.dns.port,
                                resolv=factory.resolv(),
                                args=["--peer-timeout-ms", str(PEER_TIMEOUT_MS),
                                      "--dns-cache-ms", "0"])
        self.k0.post("/", b"mine")
        self.peers = {}
        for mode, (what, _) in CASES.items():
            if what is None:
                self.peers[mode] = free_port()  # nothing listens there
            else:
                p = FaultPeer(what)
                factory.on_close(p.close)
                self.peers[mode] = p

    def publish(self, modes):
        """The SRV records: kubia-0, kubia-1 and the fault peers of modes as kubia-2..."""
        recs = [(pod_fqdn("kubia-0"), self.p0), (pod_fqdn("kubia-1"), self.p1)]
        for i, mode in enumerate(modes):
            p = self.peers[mode]
            recs.append((pod_fqdn("kubia-%d" % (i + 2)), p if isinstance(p, int) else p.port))
        self.dns.srv = {DOMAIN: recs}


def timed_view(k):
    t0 = time.monotonic()
    r = k.get("/", timeout=20)
    return r, time.monotonic() - t0


def test_each_fault_its_own_line(factory):
    s = Setup(factory)
    bound = PEER_TIMEOUT_MS / 1000 + MARGIN_S
    report = []
    failures = []
    for mode, (_, want) in CASES.items():
        s.publish([mode])
        pattern = re.compile(re.escape(HEAD + line("kubia-0", b"mine") + line("kubia-1", b"healthy")) +
                             rb"- " + re.escape(pod_fqdn("kubia-2").encode()) + rb": " + want +
                             rb"\n\Z")
        results = [timed_view(s.k0) for _ in range(RUNS)]
        slowest = max(dt for _, dt in results)
        bodies = {r.body for r, _ in results}
        shown = results[0][0].body.split(b"\n")[4][len(pod_fqdn("kubia-2")) + 4:]
        report.append("%-24s %5.0f ms  %s" % (mode, slowest * 1000, shown[:80].decode(
            errors="replace")))
        if any(r.status != 200 for r, _ in results) or not pattern.match(results[0][0].body):
            failures.append("%s: %r" % (mode, results[0][0].body[:400]))
        elif len(bodies) != 1:
            failures.append("%s: differs between runs: %r" % (mode, bodies))
        elif slowest >= bound:
            failures.append("%s: a view took %.2fs (bound %.1fs)" % (mode, slowest, bound))
    print("\n".join(report))
    assert not failures, "\n".join(failures)


def test_all_faults_at_once_others_unaffected(factory):
    s = Setup(factory)
    modes = list(CASES)
    s.publish(modes)
    bound = PEER_TIMEOUT_MS / 1000 + MARGIN_S
    hung = s.peers["hung after accept"]
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        first = ex.submit(timed_view, s.k0)
        wait_until(lambda: hung.accepted >= 1, 3, what="the view to reach the hung peer")
        # meanwhile: the pod's own data and its probes at once, and another view that
        # arrives later is bounded by its own time-outs, not queued behind the first
        for path, want in (("/data", b"mine"), ("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
            t0 = time.monotonic()
            r = s.k0.get(path, timeout=5)
            dt = time.monotonic() - t0
            assert r.status == 200 and r.body == want, (path, r)
            assert dt < 0.2, "%s took %.2fs while a view waited on faulty peers" % (path, dt)
        second = ex.submit(timed_view, s.k0)
        r1, dt1 = first.result(timeout=20)
        r2, dt2 = second.result(timeout=20)
    assert dt1 < bound and dt2 < bound, (dt1, dt2)
    assert r1.status == 200 and r2.status == 200
    assert r1.body == r2.body, "the two views differ"
    lines = r1.body.split(b"\n")
    assert lines[:4] == HEAD.split(b"\n")[:2] + [line("kubia-0", b"mine")[:-1],
                                                 line("kubia-1", b"healthy")[:-1]], r1.body[:500]
    for i, mode in enumerate(modes):
        want = CASES[mode][1]
        got = lines[4 + i]
        assert re.match(rb"- " + re.escape(pod_fqdn("kubia-%d" % (i + 2)).encode()) + rb": " +
                        want + rb"\Z", got), (mode, got[:200])
    assert lines[4 + len(modes):] == [b""]
