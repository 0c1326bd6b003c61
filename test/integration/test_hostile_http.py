# SPDX-License-Identifier: MIT
"""Hostile clients: a corpus of malformed and hostile requests (hostile/corpus.json),
each sent on a connection of its own and its outcome checked; then 500 trickling
connections from one address while another is served.

Each corpus case holds the raw request (a list of parts: a string whose characters are
bytes 0-255, or [count, string] for a repeated part), what must happen and why. The
expected outcome is a list of words: a status ("400"), a status class ("4xx"), a status
repeated ("200x1000"), then "close" when the server must close the connection after
its answers, and then nothing more on the wire; "closed" alone means no answer at all and
the connection closed.

Throughout, kubia must not crash, its memory (VmRSS) must stay bounded, and afterwards
it must serve as before with the stored data unchanged."""

import concurrent.futures
import json
import os
import re
import socket
import threading
import time

import pytest

from harness import SANITIZE
from kubiatest.waits import wait_until

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile", "corpus.json")
SENTINEL = b"sentinel"  # stored before the corpus; its legitimate POSTs store it again
IDLE_S = 2  # kubia's --idle-timeout-s here: the "closed" cases end by it
STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def load_corpus():
    with open(CORPUS) as f:
        cases = json.load(f)
    for c in cases:
        raw = b""
        for part in c["request"]:
            if isinstance(part, list):
                raw += part[1].encode("latin-1") * part[0]
            else:
                raw += part.encode("latin-1")
        c["raw"] = raw
    return cases


def parse_expect(text):
    """([status patterns], close, nothing): "200x3 400 close" -> (["200"]*3+["400"], True,
    False); "closed" -> ([], True, True)."""
    words = text.split()
    if words == ["closed"]:
        return [], True, True
    close = words[-1] == "close"
    if close:
        words = words[:-1]
    want = []
    for w in words:
        status, _, times = w.partition("x") if re.match(r"^\d{3}x\d+$", w) else (w, "", "")
        want += [status] * (int(times) if times else 1)
    return want, close, False


def parse_answers(buf, heads=None):
    """The statuses of the complete responses at the start of buf, each body skipped by
    its Content-Length, and the bytes after them; each head (lower case) appended to
    heads when given."""
    statuses = []
    pos = 0
    while True:
        m = STATUS_RE.match(buf, pos)
        end = buf.find(b"\r\n\r\n", pos)
        if m is None or end < 0:
            break
        head = buf[pos:end].lower()
        if heads is not None:
            heads.append(head)
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        statuses.append(m.group(1).decode())
        pos = end + 4 + (int(length.group(1)) if length and m.group(1) != b"100" else 0)
    return statuses, buf[pos:]


def read_answers(s, raw, deadline, enough=None):
    """Sends raw and reads until the server closes or the deadline; or, given enough,
    until that many answers have come and then a moment more (for any extra one).
    Returns (statuses, closed, what was left unparsed, the last head)."""
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server refused part way: what it answered is still to be read
    buf = b""
    closed = False
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
        if enough is not None and len(parse_answers(buf)[0]) >= enough:
            deadline = min(deadline, time.monotonic() + 0.3)
    heads = []
    statuses, rest = parse_answers(buf, heads)
    return statuses, closed, rest[:200], heads[-1] if heads else b""


def run_case(port, case):
    want, close, nothing = parse_expect(case["expect"])
    # the "closed" cases wait out the idle time-out; the others are answered at once,
    # those that keep the connection open read until their answers are in
    deadline = time.monotonic() + (IDLE_S + 3 if nothing else 15)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        got, closed, rest, last = read_answers(s, case["raw"], deadline,
                                         None if close else len(want))
    finally:
        s.close()
    ok = len(got) == len(want) and all(
        g == w or (w.endswith("xx") and g[0] == w[0]) for g, w in zip(got, want))
    if close and not closed:
        ok = False
    # Nothing may follow the last answer: bytes there are a second head (libmicrohttpd
    # 0.9.75 sends its own refusals' head twice), or a body longer than its
    # Content-Length said.
    if rest:
        ok = False
    # A refusal says it closes the connection (RFC 9112 9.6).
    if close and got and got[-1][0] == "4" and b"\r\nconnection: close" not in last:
        ok = False
    if ok:
        return None
    short = got if len(got) < 6 else got[:3] + ["...%d answers..." % len(got)] + got[-2:]
    return "%s: want %r, got %r%s (left over %r) -- %s" % (
        case["name"], case["expect"], short, " and closed" if closed else ", left open",
        rest, case["why"])


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


class RssWatch:
    """Samples a process's VmRSS every 20 ms until stop(); keeps the peak."""

    def __init__(self, pid):
        self.pid = pid
        self.start = rss_kib(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        return self.peak - self.start


def rss_bound_kib():
    # ASan keeps freed memory in quarantine (256 MiB by default) and TSan shadows it:
    # those builds get a bound that only catches growth without end.
    return 32 * 1024 if SANITIZE == "none" else 512 * 1024


def test_corpus_is_large_and_explained():
    cases = load_corpus()
    assert len(cases) >= 200, len(cases)
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"
    for c in cases:
        assert c["why"].strip() and c["raw"], c["name"]
        want, close, nothing = parse_expect(c["expect"])
        assert want or nothing, c["name"]
        assert set(c) <= {"name", "expect", "why", "request", "raw"}, c["name"]


def test_hostile_corpus(factory):
    cases = load_corpus()
    k = factory.kubia("kubia-0", mode="pet",
                      args=["--idle-timeout-s", str(IDLE_S), "--max-body", "4096"])
    assert k.post("/", SENTINEL).status == 200
    watch = RssWatch(k.proc.pid)
    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            failures = [f for f in ex.map(lambda c: run_case(k.port, c), cases) if f]
    finally:
        grew = watch.stop()
    took = time.monotonic() - t0
    counts = {}
    for c in cases:
        key = c["expect"].split()[0] if c["expect"] != "closed" else "closed"
        key = re.sub(r"x\d+$", "", key) if key.startswith("200x") else key
        counts[key] = counts.get(key, 0) + 1
    print("%d cases in %.1fs; expected outcomes: %s; VmRSS grew %d KiB at most" % (
        len(cases), took, ", ".join("%s %d" % kv for kv in sorted(counts.items())), grew))
    assert k.proc.poll() is None, "kubia died: %s" % k.stderr()[-2000:]
    assert not failures, "%d of %d cases failed:\n%s" % (len(failures), len(cases),
                                                          "\n".join(failures))
    assert grew < rss_bound_kib(), "VmRSS grew %d KiB during the corpus" % grew
    # serves normally afterwards, the data unchanged in memory and on disk
    assert k.get("/healthz").body == b"ok\n"
    assert k.get("/data").body == SENTINEL
    assert k.post("/", b"after").status == 200
    assert k.get("/").body == b"You've hit kubia-0\nData stored on this pod: after\n"
    with open(k.data_file, "rb") as f:
        assert f.read() == b"after"
    assert k.stop() == 0, k.stderr()[-2000:]


@pytest.mark.parametrize("name", ["cl-then-te", "te-cl-smuggled-post", "cl-two-different",
                                  "get-cl-smuggle-post", "te-gzip-chunked",
                                  "hidden-post-after-empty-name", "empty-name-drops-cl",
                                  "cl-nul-inside", "te-nul-then-gzip", "chunk-ext-quoted-lf",
                                  "kettle-te-cl", "chunk-size-wraps-64-bits"])
def test_smuggling_shapes_leave_data_alone(factory, name):
    """One smuggling shape at a time, with the stored data read back after each: the
    hidden body or request never reaches the store."""
    case = {c["name"]: c for c in load_corpus()}[name]
    k = factory.kubia("kubia-0", mode="pet")
    assert k.post("/", b"kept").status == 200
    assert run_case(k.port, case) is None
    assert k.get("/data").body == b"kept"
    with open(k.data_file, "rb") as f:
        assert f.read() == b"kept"


def test_absolute_target_is_served_as_its_path(factory):
    """RFC 9112 3.2.2: the absolute form is reduced to its path; in pet mode any other
    path would answer with the pet view, not the stored data."""
    k = factory.kubia("kubia-0", mode="pet")
    assert k.post("/", b"kept").status == 200
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    try:
        s.sendall(b"GET http://other.example/data HTTP/1.1\r\nHost: kubia\r\n"
                  b"Connection: close\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    assert buf.startswith(b"HTTP/1.1 200 ") and buf.endswith(b"\r\n\r\nkept"), buf


# ---------------------------------------------------------------------------
# slowloris


def open_trickling(port, n, source):
    """n connections from source, each having sent part of a request line."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def first_answer(s):
    """What the server did with a connection: 'open' (nothing yet), 'closed', or the
    status it answered."""
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return "open"
    except (ConnectionResetError, ConnectionRefusedError):
        return "closed"
    if not data:
        return "closed"
    m = STATUS_RE.match(data)
    return m.group(1).decode() if m else "garbage"


def timed_view(k, source):
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", k.port), timeout=2, source_address=(source, 0))
    try:
        s.sendall(b"GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n")
        buf = b""
        while not buf.endswith(b"\r\n\r\nkept"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return buf, time.monotonic() - t0


def trickle(socks, i):
    """One more byte of a request line on every connection still open."""
    line = b"GET /data HTTP/1.1\r\n"
    for s in socks:
        try:
            s.send(line[1 + i % (len(line) - 1):][:1])
        except OSError:
            pass


def start_trickling(k, n, limit):
    """n connections from 127.0.0.2, each sending its first byte; checks that exactly
    limit of them are left open and the rest closed by kubia."""
    socks = open_trickling(k.port, n, "127.0.0.2")
    wait_until(lambda: all(_connected(s) for s in socks), 10, interval=0.05,
               what="%d connections to be established" % n)
    for s in socks:
        try:
            s.send(b"G")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def settled():
        states = [first_answer(s) for s in socks]
        return states if states.count("open") == limit else None
    try:
        states = wait_until(settled, 10, interval=0.1,
                            what="exactly %d connections left open" % limit)
    except AssertionError:
        states = [first_answer(s) for s in socks]
        raise AssertionError("limit %d: %d open, %d closed, others %r" % (
            limit, states.count("open"), states.count("closed"),
            sorted(set(states) - {"open", "closed"})))
    assert states.count("closed") == n - limit, states
    return socks


def test_slowloris_per_address_limit(factory):
    """500 connections from 127.0.0.2 that send a byte of their request line now and
    then: --max-connections-per-ip 100 turns away exactly 400 of them, and meanwhile a
    client from 127.0.0.3 is served in under 100 ms: 99 requests of 100 (a busy machine
    may deschedule the test itself now and then) and every one in under a second (a
    server that the trickling connections held up would keep it waiting for seconds,
    until their idle time-out)."""
    k = factory.kubia("kubia-0", mode="pet", args=["--max-connections-per-ip", "100"])
    assert k.post("/", b"kept").status == 200
    socks = start_trickling(k, 500, 100)
    try:
        times = []
        t_end = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < t_end:
            trickle(socks, i)
            i += 1
            buf, dt = timed_view(k, "127.0.0.3")
            assert buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"kept"), buf[:200]
            times.append(dt)
        times.sort()
        p99 = times[len(times) * 99 // 100]
        print("100 open, 400 refused; %d requests from another address: median %.1f ms, "
              "99th percentile %.1f ms, slowest %.1f ms" % (
                  len(times), times[len(times) // 2] * 1000, p99 * 1000, times[-1] * 1000))
        assert p99 < 0.1, "a client from another address: 99th percentile %.0f ms" % (
            p99 * 1000)
        assert times[-1] < 1.0, "a client from another address took %.0f ms" % (
            times[-1] * 1000)
    finally:
        for s in socks:
            s.close()
    assert k.get("/data").body == b"kept"
    assert k.stop() == 0, k.stderr()[-2000:]


def sockets_of(pid):
    """How many sockets the process holds."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def _steady(pid):
    """The process's socket count after 0.3 s without a change."""
    before = sockets_of(pid)
    time.sleep(0.3)
    return before if sockets_of(pid) == before else -1


def test_slowloris_connection_limit(factory):
    """500 trickling connections against --max-connections 300 (no per-address limit):
    kubia never holds more than 300, and a client from another address, which waits in
    the listening socket's queue, is let in within a second: the connections that have
    waited longest for their heads are closed to make room (each counted)."""
    k = factory.kubia("kubia-0", mode="pet", args=["--max-connections", "300"])
    assert k.post("/", b"kept").status == 200
    # the count before: once the test's own earlier connections are gone from kubia
    base = wait_until(lambda: sockets_of(k.proc.pid) == _steady(k.proc.pid) and
                      sockets_of(k.proc.pid), 5, interval=0.05, what="kubia's sockets to settle")
    socks = open_trickling(k.port, 500, "127.0.0.2")
    other = None
    try:
        wait_until(lambda: all(_connected(s) for s in socks), 10, interval=0.05,
                   what="500 connections to be established")
        trickle(socks, 0)
        wait_until(lambda: sockets_of(k.proc.pid) - base >= 300, 10, interval=0.05,
                   what="kubia to take 300 trickling connections")
        taken = sockets_of(k.proc.pid) - base
        assert taken <= 300, "kubia holds %d connections, limit 300" % taken
        t0 = time.monotonic()
        other = socket.create_connection(("127.0.0.1", k.port), timeout=2,
                                         source_address=("127.0.0.3", 0))
        other.sendall(b"GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n")
        other.settimeout(5)
        got = b""
        while not got.endswith(b"kept"):
            chunk = other.recv(4096)
            assert chunk, "closed without an answer: %r" % got
            got += chunk
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 200"), got
        assert took < 1.0, "the other client waited %.0f ms for room" % (took * 1000)
        evicted = metric(k, 'kubia_http_connections_closed_total{reason="evicted"}')
        assert evicted >= 1, evicted
        print("--max-connections 300: %d of 500 taken; the other client answered in "
              "%.0f ms, %d closed to make room" % (taken, took * 1000, evicted))
    finally:
        for s in socks:
            s.close()
        if other is not None:
            other.close()
    assert k.stop() == 0, k.stderr()[-2000:]


def metric(k, series):
    """The value of one series of kubia's /metrics."""
    for line in k.get("/metrics").body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError("no %s in /metrics" % series)


def _connected(s):
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and _peer(s)


def _peer(s):
    try:
        s.getpeername()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# a client that shuts its sending side after its request


def half_closed(port, raw):
    """Sends raw, shuts the sending side, and reads until the server closes (at most
    5 s). Returns every byte the server sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_post_half_closed_is_stored_and_answered(factory, framing):
    """A complete POST whose client shuts its sending side right after the body (as
    `curl -T` or `nc -N` do) is stored and answered, once."""
    k = factory.kubia("kubia-0", mode="pet")
    head = b"POST / HTTP/1.1\r\nHost: kubia\r\n"
    raw = (head + b"Content-Length: 9\r\n\r\nhalf-shut" if framing == "length" else
           head + b"Transfer-Encoding: chunked\r\n\r\n9\r\nhalf-shut\r\n0\r\n\r\n")
    buf = half_closed(k.port, raw)
    statuses, rest = parse_answers(buf)
    assert statuses == ["200"] and rest == b"", buf
    assert buf.endswith(b"Data stored on pod kubia-0\n"), buf
    assert k.get("/data").body == b"half-shut"
    with open(k.data_file, "rb") as f:
        assert f.read() == b"half-shut"


def test_pipelined_then_half_closed_every_request_answered(factory):
    """Three requests, then the end of the client's stream: three answers, in order."""
    k = factory.kubia("kubia-0", mode="pet")
    raw = (b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 3\r\n\r\none"
           b"GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n"
           b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 3\r\n\r\ntwo")
    buf = half_closed(k.port, raw)
    statuses, rest = parse_answers(buf)
    assert statuses == ["200", "200", "200"] and rest == b"", buf
    assert b"\r\n\r\none" in buf, buf
    assert k.get("/data").body == b"two"


def test_half_closed_incomplete_post_stores_nothing(factory):
    """A body cut short by the end of the stream is an abort: nothing is stored."""
    k = factory.kubia("kubia-0", mode="pet")
    assert k.post("/", b"kept").status == 200
    buf = half_closed(k.port, b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 9\r\n\r\nhalf")
    assert parse_answers(buf)[0] in ([], ["400"]), buf
    assert k.get("/data").body == b"kept"
