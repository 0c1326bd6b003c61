# SPDX-License-Identifier: MIT
"""The view stream (GET /?watch=1, Accept: text/event-stream; docs/contract.md "The view
stream") with real kubia pods and a real dnsmasq on loopback: the first event at once, an
event within 2 s of a change (a POST to a peer, a pod leaving and coming back to DNS),
nothing but heartbeats while nothing changes, one fan-out per round however many
subscribe (counted at a relay in front of the peer), a subscriber that never reads
dropped and counted within the memory budget, and every stream ended at once by
SIGTERM."""

import json
import re
import signal
import socket
import threading
import time

import pytest

from harness import DOMAIN, SANITIZE, pod_fqdn
from kubiatest.ports import free_port
from kubiatest.waits import wait_until
from test_fanout import CountingRelay, raise_fd_limit
from test_metrics import parse, scrape, value
from test_view import SCHEMA_PATH

try:
    import jsonschema
except ImportError:  # test/setup.sh installs python3-jsonschema
    jsonschema = None

SSE = "text/event-stream"
# How soon a change must show (the bound): DNS or a peer's data. A sanitizer
# build is slower at everything; the release build holds the bound itself.
CHANGE_S = 2.0 if SANITIZE == "none" else 4.0
# How long kubia's own shutdown may take with 50 streams open (it logs "stopped in").
STOP_MS = 20 if SANITIZE == "none" else 250


@pytest.fixture(scope="module")
def validator():
    """docs/view.schema.json, whose optional "stream" member only events have."""
    if jsonschema is None:
        pytest.fail("python3-jsonschema is not installed (test/setup.sh installs it)")
    with open(SCHEMA_PATH) as f:
        return jsonschema.Draft202012Validator(json.load(f))


class Stream:
    """One subscriber on its own socket: the answer's head, then events and heartbeats
    as they arrive, each with its arrival time, read by a thread of its own (chunked
    transfer decoded, SSE parsed)."""

    def __init__(self, port, path="/?watch=1", headers=None, rcvbuf=None, read=True,
                 host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        hdrs = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: kubia\r\n%s\r\n" % (path, hdrs)).encode())
        self.lock = threading.Lock()
        self.events = []  # (arrival, id, doc)
        self.heartbeats = []  # arrival times
        self.status = None
        self.headers = {}
        self.ended = None  # "eof" (the chunked body's end), "closed", "reset"
        self.raw = b""
        if read:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _recv(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.ended = self.ended or "reset"
            return None
        except OSError:
            self.ended = self.ended or "closed"
            return None
        if not chunk:
            self.ended = self.ended or "closed"
            return None
        return chunk

    def _run(self):
        self.sock.settimeout(60)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self._recv()
            if chunk is None:
                return
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        with self.lock:
            self.status = int(lines[0].split()[1])
            self.headers = {k.strip().lower(): v.strip()
                            for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if self.headers.get("transfer-encoding") != "chunked":
            return
        body = b""
        while True:
            while b"\r\n" not in buf:
                chunk = self._recv()
                if chunk is None:
                    return
                buf += chunk
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = self._recv()
                if chunk is None:
                    return
                buf += chunk
            if size == 0:
                self.ended = "eof"
                return
            body += buf[:size]
            buf = buf[size + 2:]
            body = self._parse(body)

    def _parse(self, body):
        while b"\n\n" in body:
            block, _, body = body.partition(b"\n\n")
            now = time.monotonic()
            with self.lock:
                self.raw += block + b"\n\n"
                if block == b": hb":
                    self.heartbeats.append(now)
                    continue
                fields = dict(ln.split(b": ", 1) for ln in block.split(b"\n"))
                assert fields[b"event"] == b"view", block
                self.events.append((now, int(fields[b"id"]), json.loads(fields[b"data"])))
        return body

    def wait_events(self, n, timeout=10):
        wait_until(lambda: len(self.events) >= n, timeout,
                   what="%d events on the stream (have %d, ended %s)" % (
                       n, len(self.events), self.ended))
        with self.lock:
            return list(self.events)

    def mark(self):
        """Where the events from now on begin, for wait_for()."""
        with self.lock:
            return len(self.events)

    def wait_for(self, pred, timeout, what, start):
        """The first event from start (a mark()) on whose document satisfies pred."""

        def found():
            with self.lock:
                for ev in self.events[start:]:
                    if pred(ev[2]):
                        return ev
            return None
        return wait_until(found, timeout, what=what)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def metric(k, name):
    return value(parse(scrape(k))[0], name)


def peer(doc, name):
    for p in doc["peers"]:
        if p["name"] == pod_fqdn(name):
            return p
    return None


def streams_closer(factory, streams):
    factory.on_close(lambda: [s.close() for s in streams])


def test_first_event_at_once_with_the_headers_of_a_stream(factory, validator):
    dns, ks = factory.cluster(("kubia-0", "kubia-1"))
    assert ks[1].post("/", b"one").status == 200
    text_before = ks[0].get("/")
    streams = []
    streams_closer(factory, streams)
    for kw in ({"path": "/?watch=1"}, {"path": "/", "headers": {"Accept": SSE}},
               {"path": "/anything?watch=1"}):
        t0 = time.monotonic()
        s = Stream(ks[0].port, **kw)
        streams.append(s)
        (t, eid, doc) = s.wait_events(1)[0]
        assert t - t0 < 1.0, "the first event took %.2fs" % (t - t0)
        assert s.status == 200
        assert s.headers["content-type"] == SSE
        assert s.headers["cache-control"] == "no-cache"
        assert s.headers["x-accel-buffering"] == "no"
        assert s.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in s.headers
        assert eid == 1
        assert doc["stream"]["served_by"] == "kubia-0"
        assert doc["stream"]["seq"] == 1
        assert abs(doc["stream"]["changed_at_ms"] / 1000 - time.time()) < 60
        assert peer(doc, "kubia-1")["data"] == "one"
        assert doc["pod"]["name"] == "kubia-0"
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, "; ".join(e.message for e in errors)
        # The event's data are one line: the document of the JSON view, plus "stream".
        assert re.match(rb"id: 1\nevent: view\ndata: \{[^\n]*\}\n\n", s.raw), s.raw[:200]
    # The plain JSON view has no "stream" member; the text view is the text view.
    plain = json.loads(ks[0].get("/?format=json").body)
    assert "stream" not in plain
    # With streams open, GET / is what it was, headers and bytes.
    r = ks[0].get("/")
    assert r.status == 200
    assert r.body == text_before.body
    assert sorted(k for k in r.headers.keys() if k != "Date") == \
        sorted(k for k in text_before.headers.keys() if k != "Date")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    r = ks[0].get("/?watch=0", headers={"Accept": SSE})
    assert r.header("Content-Type") == "text/plain; charset=utf-8"


def test_a_post_to_a_peer_shows_within_two_seconds(factory):
    dns, ks = factory.cluster(("kubia-0", "kubia-1"))
    s = Stream(ks[0].port)
    streams_closer(factory, [s])
    s.wait_events(1)
    for i in range(3):
        data = "posted %d" % i
        start = s.mark()
        t0 = time.monotonic()
        assert ks[1].post("/", data.encode()).status == 200
        t, eid, doc = s.wait_for(lambda d, data=data: peer(d, "kubia-1").get("data") == data,
                                 CHANGE_S, "kubia-1's new data on the stream", start)
        assert t - t0 <= CHANGE_S
        assert doc["stream"]["seq"] == eid
    ids = [e[1] for e in s.wait_events(4)]
    assert ids == list(range(1, len(ids) + 1)), ids


def test_a_pod_leaving_dns_and_coming_back_shows_within_two_seconds(factory):
    names = ("kubia-0", "kubia-1", "kubia-2")
    dns, ks = factory.cluster(names, args=["--replicas", "3"])
    full_srv, full_hosts = list(dns.srv), list(dns.hosts)
    s = Stream(ks[0].port)
    streams_closer(factory, [s])
    s.wait_events(1)
    for _ in range(2):
        start = s.mark()
        dns.restart(srv=[r for r in full_srv if "kubia-1" not in r[1]],
                    hosts=[h for h in full_hosts if "kubia-1" not in h[0]])
        t0 = time.monotonic()
        t, _, doc = s.wait_for(lambda d: d["srv"]["result"] == "peers"
                               and peer(d, "kubia-1") is not None
                               and peer(d, "kubia-1")["missing"],
                               CHANGE_S, "kubia-1 missing on the stream", start)
        assert t - t0 <= CHANGE_S
        assert not peer(doc, "kubia-1")["in_dns"]
        start = s.mark()
        dns.restart(srv=full_srv, hosts=full_hosts)
        t0 = time.monotonic()
        t, _, doc = s.wait_for(lambda d: d["srv"]["result"] == "peers"
                               and peer(d, "kubia-1") is not None
                               and peer(d, "kubia-1")["in_dns"],
                               CHANGE_S, "kubia-1 back on the stream", start)
        assert t - t0 <= CHANGE_S


def test_nothing_changed_only_heartbeats(factory):
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), args=["--stream-heartbeat-s", "1"])
    s = Stream(ks[0].port)
    streams_closer(factory, [s])
    s.wait_events(1)
    wait_until(lambda: len(s.heartbeats) >= 3, 10, what="three heartbeats")
    with s.lock:
        assert len(s.events) == 1, [e[2] for e in s.events]
        gaps = [b - a for a, b in zip(s.heartbeats, s.heartbeats[1:])]
    # One a second of silence: not more often (the watcher's rounds are 0.5 s).
    assert all(g >= 0.8 for g in gaps), gaps
    assert metric(ks[0], "kubia_stream_heartbeats_total") >= 3
    assert metric(ks[0], "kubia_stream_subscribers") == 1


def test_a_hundred_subscribers_cost_one_fanout_per_round(factory):
    raise_fd_limit()
    names = ("kubia-0", "kubia-1")
    ports = {n: free_port() for n in names}
    relay = CountingRelay(ports["kubia-1"])
    factory.on_close(relay.close)
    hosts = [(pod_fqdn(n), "127.0.0.1", None) for n in names]
    common = factory.dns([(DOMAIN, pod_fqdn(n), ports[n]) for n in names], hosts)
    via_relay = factory.dns([(DOMAIN, pod_fqdn(n), relay.port if n == "kubia-1" else ports[n])
                             for n in names], hosts)
    rc = factory.resolv()
    interval_ms = 500
    k0 = factory.kubia("kubia-0", port=ports["kubia-0"], resolv=rc, dns=via_relay.port,
                       args=["--stream-interval-ms", str(interval_ms)])
    k1 = factory.kubia("kubia-1", port=ports["kubia-1"], resolv=rc, dns=common.port)
    # No subscriber, no watcher: nothing reaches the peer.
    time.sleep(1.0)
    assert relay.requests == 0
    streams = []
    streams_closer(factory, streams)
    for _ in range(100):
        streams.append(Stream(k0.port))
    for s in streams:
        s.wait_events(1, timeout=20)
    assert metric(k0, "kubia_stream_subscribers") == 100
    with relay.lock:
        before = relay.requests
    starts = [s.mark() for s in streams]
    t0 = time.monotonic()
    assert k1.post("/", b"for the hundred").status == 200
    for s, start in zip(streams, starts):
        s.wait_for(lambda d: peer(d, "kubia-1").get("data") == "for the hundred", 10,
                   "the change on every stream", start)
    window = 3.0
    left = window - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)  # a window to count rounds in, not a wait for anything
    elapsed = time.monotonic() - t0
    with relay.lock:
        fetched = relay.requests - before
    # One fetch of kubia-1 per round (at most one round per interval, and rounds never
    # overlap), not one per subscriber.
    rounds = elapsed * 1000 / interval_ms + 2
    assert 1 <= fetched <= rounds, "%d fetches in %.1fs for 100 subscribers" % (
        fetched, elapsed)
    for s in streams:
        with s.lock:
            # The change once per stream, each in one event: no duplicate.
            got = [e for e in s.events if peer(e[2], "kubia-1").get("data") == "for the hundred"]
        assert len(got) == 1
    for s in streams:
        s.close()
    # The last subscriber gone, the watcher stops: no more fetches.
    wait_until(lambda: metric(k0, "kubia_stream_subscribers") == 0, 20,
               what="the closed streams to be noticed (a heartbeat at the latest)",
               interval=0.2)
    time.sleep(interval_ms / 1000 * 2)  # a round in flight may still end
    with relay.lock:
        settled = relay.requests
    time.sleep(interval_ms / 1000 * 3)
    assert relay.requests == settled


def test_a_subscriber_that_never_reads_is_dropped_within_the_budget(factory):
    budget = 64 << 20
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), args=[
        "--stream-interval-ms", "100", "--stream-max-pending", "4",
        "--max-memory", str(budget), "--stream-heartbeat-s", "1"])
    k0 = ks[0]
    reader = Stream(k0.port)
    slow = Stream(k0.port, rcvbuf=4096, read=False)
    streams_closer(factory, [reader, slow])
    reader.wait_events(1)
    wait_until(lambda: metric(k0, "kubia_stream_subscribers") == 2, 5,
               what="both subscribers")
    # Each POST to kubia-0 changes its view by 512 KiB (twice: its own data is both
    # "pod" and a line), so the slow subscriber's socket fills after a few events and its
    # queue after a few more.
    peak = 0
    i = 0
    deadline = time.monotonic() + 60
    while metric(k0, "kubia_stream_drops_total") == 0:
        assert time.monotonic() < deadline, "the slow subscriber was never dropped"
        data = (b"%06d" % i) * (512 * 1024 // 6)
        start = reader.mark()
        assert k0.post("/", data).status == 200
        reader.wait_for(lambda d, want=data[:6].decode(): d["pod"]["data"].startswith(want),
                        10, "the POST on the reading stream", start)
        peak = max(peak, metric(k0, "kubia_memory_budget_used_bytes"))
        i += 1
    assert metric(k0, "kubia_stream_drops_total") == 1
    assert peak <= budget
    # The slow one's connection is closed: what it has not read ends in EOF or a reset.
    slow.sock.settimeout(10)
    try:
        while slow.sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    wait_until(lambda: metric(k0, "kubia_stream_subscribers") == 1, 5,
               what="the dropped subscriber gone")
    # The reader is still served.
    start = reader.mark()
    assert k0.post("/", b"after the drop").status == 200
    reader.wait_for(lambda d: d["pod"]["data"] == "after the drop", CHANGE_S,
                    "an event after the drop", start)
    assert reader.ended is None
    # Its queue given back: what is held now is the reader's and the last event's.
    wait_until(lambda: metric(k0, "kubia_memory_budget_used_bytes") < 8 << 20, 5,
               what="the budget given back")


def test_too_many_subscribers_are_refused(factory):
    dns, ks = factory.cluster(("kubia-0",), args=["--max-stream-subscribers", "2"])
    a, b = Stream(ks[0].port), Stream(ks[0].port)
    streams_closer(factory, [a, b])
    a.wait_events(1)
    b.wait_events(1)
    r = ks[0].get("/?watch=1")
    assert r.status == 503
    assert r.header("Retry-After") == "1"
    assert r.body == b"Too many view streams open; try again\n"


def test_pet_mode_answers_its_text(factory):
    k = factory.kubia("kubia-0", mode="pet")
    assert k.post("/", b"pet data").status == 200
    for kw in ({"path": "/?watch=1"}, {"path": "/", "headers": {"Accept": SSE}}):
        r = k.get(kw["path"], headers=kw.get("headers"))
        assert r.status == 200
        assert r.header("Content-Type") == "text/plain; charset=utf-8"
        assert r.body == k.get("/").body
        assert b"pet data" in r.body


def test_sigterm_ends_fifty_streams_at_once(factory):
    dns, ks = factory.cluster(("kubia-0", "kubia-1"))
    k = ks[0]
    streams = [Stream(k.port) for _ in range(50)]
    streams_closer(factory, streams)
    for s in streams:
        s.wait_events(1)
    t0 = time.monotonic()
    k.proc.send_signal(signal.SIGTERM)
    rc = k.proc.wait(10)
    dt = time.monotonic() - t0
    assert rc == 0, k.stderr()
    stopped = re.findall(r"stopped in (\d+) ms", k.stderr())
    assert stopped, k.stderr()[-2000:]
    # kubia's own measure, from the signal to the end of its shutdown.
    assert int(stopped[-1]) <= STOP_MS, "shutdown took %s ms with 50 streams" % stopped[-1]
    assert dt < 1.0, "exit took %.2fs with 50 streams open" % dt
    for s in streams:
        s.thread.join(5)
        # Idle streams end after their last whole event: the chunked body's end, or the
        # connection closed when kubia's exit got there first; never a reset.
        assert s.ended in ("eof", "closed"), s.ended
        with s.lock:
            assert len(s.events) == 1
