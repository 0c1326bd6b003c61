# SPDX-License-Identifier: MIT
"""The connection guard (server/guard.c): a request's head within --header-timeout-s,
its body at --body-min-rate, and a full connection table that makes room, here against
a flood of trickling connections from 1,100 loopback addresses."""

import errno
import resource
import selectors
import socket
import threading
import time

from kubiatest.waits import wait_until

from test_hostile_http import metric, sockets_of

HEAD = b"GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n"


def trickled_until_closed(port, data, gap, limit):
    """Sends data a byte every gap seconds until kubia closes the connection; returns
    the seconds from connecting to the close (None: still open after limit seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    try:
        s.setblocking(False)
        i = 0
        while time.monotonic() - t0 < limit:
            try:
                if s.recv(4096) == b"":
                    return time.monotonic() - t0
            except BlockingIOError:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0
            if i < len(data):
                try:
                    s.send(data[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0
                i += 1
            time.sleep(gap)
        return None
    finally:
        s.close()


def test_head_deadline(factory):
    """A head trickled a byte every 0.2 s (each byte would reset the idle time-out) is
    closed at --header-timeout-s; a kept-alive connection that sends nothing more too,
    and each is counted."""
    k = factory.kubia("kubia-0", mode="pet", args=["--header-timeout-s", "1",
                                                   "--idle-timeout-s", "30"])
    took = trickled_until_closed(k.port, HEAD * 3, 0.2, 5)
    assert took is not None and 0.9 <= took < 2.0, took
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    try:
        s.sendall(HEAD)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200"), got
        t0 = time.monotonic()
        while s.recv(4096):
            pass
        waited = time.monotonic() - t0
        assert 0.9 <= waited < 2.0, waited
    finally:
        s.close()
    assert metric(k, 'kubia_http_connections_closed_total{reason="header_timeout"}') == 2
    assert k.get("/healthz").body == b"ok\n"
    assert k.stop() == 0, k.stderr()[-2000:]


def test_body_min_rate(factory):
    """A body at 50 B/s against --body-min-rate 1000 over 1 s windows is cut off after
    the grace and a window (and stores nothing); one at 4 KB/s for 3 s is stored."""
    k = factory.kubia("kubia-0", mode="pet", args=["--body-min-rate", "1000",
                                                   "--body-rate-window-s", "1"])
    assert k.post("/", b"kept").status == 200
    head = b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 100000\r\n\r\n"
    took = trickled_until_closed(k.port, head + b"x" * 100000, 0.02, 10)
    # the head goes at the same pace: its bytes come before the body's clock starts
    assert took is not None and len(head) * 0.02 + 1.9 <= took < len(head) * 0.02 + 3.5, took
    assert metric(k, 'kubia_http_connections_closed_total{reason="body_too_slow"}') == 1
    assert k.get("/data").body == b"kept"

    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    try:
        body = b"y" * 12000
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 400):
            s.sendall(body[i:i + 400])
            time.sleep(0.1)
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200"), got
    finally:
        s.close()
    assert k.get("/data").body == b"y" * 12000
    assert metric(k, 'kubia_http_connections_closed_total{reason="body_too_slow"}') == 1
    assert k.stop() == 0, k.stderr()[-2000:]


FLOOD = 1100
TIMEOUT_S = 3
MARGIN_S = 1.5  # the guard's look (50 ms) and a loaded machine's scheduling


def address(i):
    """The i-th of the flood's loopback source addresses, 127.1.0.1 and on."""
    n = i + 1
    return "127.1.%d.%d" % (n // 256, n % 256)


class Flood:
    """FLOOD connections, one from each address, each sending a byte of a request head
    every 2 s; one that kubia closes is opened again from its address. Each close is
    timed from its connection's start."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.lives = []  # seconds each closed connection lived
        self.stop_reopening = False
        self.socks = {}
        self.stopped = threading.Event()
        for i in range(FLOOD):
            self.open(i)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((address(i), 0))
        err = s.connect_ex(("127.0.0.1", self.port))
        assert err in (0, errno.EINPROGRESS), err
        self.socks[s] = [i, time.monotonic(), 0]
        self.sel.register(s, selectors.EVENT_READ)

    def closed(self, s):
        i, t0, _ = self.socks.pop(s)
        self.sel.unregister(s)
        s.close()
        self.lives.append(time.monotonic() - t0)
        if not self.stop_reopening:
            self.open(i)

    def run(self):
        next_byte = time.monotonic()
        while not self.stopped.is_set():
            for key, _ in self.sel.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data == b"":
                    self.closed(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += 2.0
                for s, st in list(self.socks.items()):
                    try:
                        s.send(HEAD[st[2] % 20:st[2] % 20 + 1])
                        st[2] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        self.closed(s)

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        for s in list(self.socks):
            s.close()


def test_flood_from_many_addresses(factory):
    """1,100 connections from 1,100 loopback addresses trickle request heads against the
    default --max-connections 1024, and open again whenever kubia closes one. A client
    from yet another address asks GET /data every 0.25 s on a new connection: at least
    95% of its answers come within a second. Every trickling connection is closed within
    --header-timeout-s (with a margin for the guard's look)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, min(hard, want)), max(hard, want)))
    k = factory.kubia("kubia-0", mode="pet", args=["--header-timeout-s", str(TIMEOUT_S)])
    assert k.post("/", b"kept").status == 200
    flood = Flood(k.port)
    times = []
    try:
        # counted in /proc: with no room made, /metrics itself would not be answered
        wait_until(lambda: sockets_of(k.proc.pid) >= 1000, 10, interval=0.1,
                   what="the flood to fill kubia's connection table")
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            try:
                s = socket.create_connection(("127.0.0.1", k.port), timeout=1,
                                             source_address=("127.0.0.3", 0))
                s.settimeout(max(0.01, 1 - (time.monotonic() - t0)))
                s.sendall(HEAD)
                got = b""
                while not got.endswith(b"\r\n\r\nkept"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                s.close()
                ok = got.startswith(b"HTTP/1.1 200") and got.endswith(b"kept")
            except OSError:
                ok = False
            took = time.monotonic() - t0
            times.append(took if ok else None)
            time.sleep(max(0, 0.25 - took))
        flood.stop_reopening = True
        # the connections left end by their deadline
        wait_until(lambda: not flood.socks, TIMEOUT_S + MARGIN_S + 1, interval=0.1,
                   what="every trickling connection to be closed")
    finally:
        flood.close()
    answered = [t for t in times if t is not None and t < 1.0]
    share = len(answered) / len(times)
    evicted = metric(k, 'kubia_http_connections_closed_total{reason="evicted"}')
    timeouts = metric(k, 'kubia_http_connections_closed_total{reason="header_timeout"}')
    print("%d requests, %.0f%% answered within 1 s (slowest answered %.0f ms); "
          "%d trickling connections closed (longest lived %.2f s): %d evicted, "
          "%d past the head deadline" % (
              len(times), share * 100, max(answered) * 1000 if answered else 0,
              len(flood.lives), max(flood.lives), evicted, timeouts))
    assert share >= 0.95, times
    assert max(flood.lives) <= TIMEOUT_S + MARGIN_S, max(flood.lives)
    assert len(flood.lives) >= FLOOD
    assert k.get("/data").body == b"kept"
    assert k.stop() == 0, k.stderr()[-2000:]
