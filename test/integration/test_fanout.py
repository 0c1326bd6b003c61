# SPDX-License-Identifier: MIT
"""Shared fetches in the cluster view: a view never shows a pod's data older than what
that pod had acknowledged when the view arrived, even while other views keep fetches
to that pod in flight; and under a thousand concurrent views no pod opens more
connections to a peer than --peer-max-connections (4 by default)."""

import asyncio
import http.client
import resource
import socket
import threading
import time

from harness import DOMAIN, pod_fqdn, run_kubia
from kubiatest.ports import free_port
from kubiatest.servers import LoopbackServer
from kubiatest.waits import wait_until

NAMES = ("kubia-0", "kubia-1", "kubia-2")
TCP_CLOSE_WAIT = 8  # tcp_info.tcpi_state, linux/tcp_states.h


def head(hostname):
    return b"You've hit " + hostname.encode() + b"\nData stored in the cluster:\n"


def line(name, data):
    return b"- " + pod_fqdn(name).encode() + b": " + data + b"\n"


def raise_fd_limit(want=8192):
    """A thousand client sockets, the relays' and the pods' own: more than the usual
    soft limit of 1024. The pods started afterwards inherit the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------------------
# a relay in front of a peer


class CountingRelay(LoopbackServer):
    """A relay in front of one peer for one querying pod (so every connection it sees
    comes from that pod): holds each request delay seconds before passing it on, and
    each answer answer_delay seconds before passing it back, so that fetches overlap;
    counts the connections open through it, now and at most.

    A connection the pod has closed is not counted once its end has arrived, even if the
    relay's reader has not seen it yet: the pod's close reaches the relay before the
    connection it opens next."""

    def __init__(self, upstream, delay=0.0, answer_delay=0.0):
        self.upstream = upstream
        self.delay = delay
        self.answer_delay = answer_delay
        self.lock = threading.Lock()
        self.live = set()
        self.max_open = 0
        self.accepted = 0
        self.requests = 0
        super().__init__(backlog=512)

    @staticmethod
    def _closing(s):
        # TCP_CLOSE_WAIT: the pod's end of the connection has arrived. Asked of the
        # kernel, so nothing is taken from the reader's stream.
        try:
            return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE_WAIT
        except OSError:
            return True

    def _accepted(self, c):
        with self.lock:
            self.accepted += 1
            self.live.add(c)
            now = sum(1 for s in self.live if s is c or not self._closing(s))
            self.max_open = max(self.max_open, now)

    @staticmethod
    def _recv_until(s, buf, end):
        while end not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return buf

    def _response(self, up):
        buf = self._recv_until(up, b"", b"\r\n\r\n")
        if buf is None:
            return None
        hdr, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for h in hdr.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while len(rest) < length:
            chunk = up.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return hdr + b"\r\n\r\n" + rest

    def _serve(self, c):
        up = None
        buf = b""
        try:
            c.settimeout(60)
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            while not self._stop.is_set():
                buf = self._recv_until(c, buf, b"\r\n\r\n")
                if buf is None:
                    return
                req, _, buf = buf.partition(b"\r\n\r\n")
                with self.lock:
                    self.requests += 1
                if self.delay > 0 and self._stop.wait(self.delay):
                    return
                up.sendall(req + b"\r\n\r\n")
                resp = self._response(up)
                if resp is None or (self.answer_delay > 0
                                    and self._stop.wait(self.answer_delay)):
                    return
                c.sendall(resp)
        except OSError:
            pass
        finally:
            with self.lock:
                self.live.discard(c)
            c.close()
            if up is not None:
                up.close()

    def _wake(self):
        with self.lock:
            # the pods keep their connections alive: wake the readers
            for c in self.live:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        super().close(join_s=5)


# ---------------------------------------------------------------------------
# read after arrival


class ViewLoad:
    """Clients that keep cluster views running on one pod, each on its own kept-alive
    connection, until stop(): fetches to that pod's peers are always in flight."""

    def __init__(self, kubia, clients):
        self.kubia = kubia
        self._stop = threading.Event()
        self.views = 0
        self.errors = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        conn = http.client.HTTPConnection(self.kubia.host, self.kubia.port, timeout=10)
        try:
            while not self._stop.is_set():
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                with self._lock:
                    self.views += 1
                    if r.status != 200 or not body.startswith(head(self.kubia.hostname)):
                        self.errors.append((r.status, body[:200]))
        except (OSError, http.client.HTTPException) as e:
            with self._lock:
                self.errors.append(repr(e))
        finally:
            conn.close()

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a load client hung"


def line_of(body, name):
    prefix = b"- " + pod_fqdn(name).encode() + b": "
    for ln in body.split(b"\n"):
        if ln.startswith(prefix):
            return ln[len(prefix):]
    return None


def test_view_after_post_shows_it_under_load(factory):
    # kubia-0 (A) takes the POSTs; kubia-1 (B) is viewed by the test and, at the same
    # time, by load clients whose views keep fetches to A in flight. B reaches A
    # through a relay that holds each of A's answers 10 ms on its way back, so an answer
    # A gave before a POST can still be on its way when the POST has been answered. A
    # view that arrives after that must not be served by such a fetch: A's line always
    # shows the body just posted.
    ports = {n: free_port() for n in NAMES}
    relay = CountingRelay(ports["kubia-0"], answer_delay=0.01)
    factory.on_close(relay.close)
    hosts = [(pod_fqdn(n), "127.0.0.1", None) for n in NAMES]
    common = factory.dns([(DOMAIN, pod_fqdn(n), ports[n]) for n in NAMES], hosts)
    via_relay = factory.dns([(DOMAIN, pod_fqdn(n), relay.port if n == "kubia-0" else ports[n])
                             for n in NAMES], hosts)
    rc = factory.resolv()
    ks = [factory.kubia(n, port=ports[n], mode="peers", resolv=rc,
                        dns=(via_relay if n == "kubia-1" else common).port) for n in NAMES]
    a, b = ks[0], ks[1]
    load = ViewLoad(b, 8)
    factory.on_close(load.stop)
    wait_until(lambda: load.views >= 50, 10, what="the load clients' first views")
    post = http.client.HTTPConnection(a.host, a.port, timeout=10)
    view = http.client.HTTPConnection(b.host, b.port, timeout=10)
    try:
        for i in range(1000):
            data = b"posted %d" % i
            post.request("POST", "/", body=data)
            r = post.getresponse()
            assert r.status == 200 and r.read() == b"Data stored on pod kubia-0\n"
            view.request("GET", "/")
            r = view.getresponse()
            body = r.read()
            assert r.status == 200, (i, r.status, body)
            got = line_of(body, "kubia-0")
            assert got == data, (
                "view %d, arrived after POST %r was answered, shows %r for kubia-0:\n%s"
                % (i, data, got, body.decode(errors="replace")))
    finally:
        post.close()
        view.close()
    views = load.views
    load.stop()
    assert not load.errors, load.errors[:5]
    assert views >= 1000, "only %d concurrent views ran alongside" % views


# ---------------------------------------------------------------------------
# connections per peer


async def _views(targets, rounds, timeout):
    """One kept-alive connection per (host, port, want) of targets, all connected
    first, then rounds views on each, all at once. Returns the wrong answers."""
    go = asyncio.Event()
    wrong = []

    async def client(host, port, want):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await go.wait()
            for _ in range(rounds):
                writer.write(b"GET / HTTP/1.1\r\nHost: kubia\r\n\r\n")
                await writer.drain()
                hdr = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for h in hdr.split(b"\r\n")[1:]:
                    k, _, v = h.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                body = await reader.readexactly(length)
                if not hdr.startswith(b"HTTP/1.1 200 ") or body != want:
                    wrong.append((port, hdr.split(b"\r\n")[0], body[:300]))
        finally:
            writer.close()

    async def main():
        tasks = [asyncio.ensure_future(client(*t)) for t in targets]
        try:
            await asyncio.sleep(0)
            go.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    await main()
    return wrong


def test_connections_per_peer_capped_under_1000_views(factory):
    # Each pod has a DNS server of its own that lists the other pods at relays, one
    # relay per (pod, peer), so each relay sees the connections of exactly one pod to
    # one peer. kubia-0 keeps the default cap (4), kubia-1 sets 3 through the variable,
    # kubia-2 sets 2 with the flag.
    raise_fd_limit()
    ports = {n: free_port() for n in NAMES}
    caps = {"kubia-0": 4, "kubia-1": 3, "kubia-2": 2}
    extra = {"kubia-0": ([], None), "kubia-1": ([], {"KUBIA_PEER_MAX_CONNECTIONS": "3"}),
             "kubia-2": (["--peer-max-connections", "2"], None)}
    relays = {}
    ks = {}
    rc = factory.resolv()
    for n in NAMES:
        for m in NAMES:
            if m != n:
                relays[(n, m)] = CountingRelay(ports[m], delay=0.02)
                factory.on_close(relays[(n, m)].close)
        srv = [(DOMAIN, pod_fqdn(m), ports[m] if m == n else relays[(n, m)].port)
               for m in NAMES]
        hosts = [(pod_fqdn(m), "127.0.0.1", None) for m in NAMES]
        dns = factory.dns(srv, hosts)
        args, env = extra[n]
        ks[n] = factory.kubia(n, port=ports[n], mode="peers", dns=dns.port, resolv=rc,
                              args=args, env=env)
    for n in NAMES:
        assert ks[n].post("/", b"data of " + n.encode()).status == 200
    want = {n: head(n) + b"".join(line(m, b"data of " + m.encode()) for m in NAMES)
            for n in NAMES}
    for n in NAMES:
        r = ks[n].get("/")
        assert r.status == 200 and r.body == want[n], r
    targets = [("127.0.0.1", ks[NAMES[i % 3]].port, want[NAMES[i % 3]]) for i in range(1000)]
    t0 = time.monotonic()
    wrong = asyncio.run(_views(targets, 2, 240))
    took = time.monotonic() - t0
    assert not wrong, "%d of 2000 views wrong, e.g. %r" % (len(wrong), wrong[0])
    report = []
    for (n, m), relay in sorted(relays.items()):
        with relay.lock:
            report.append("%s -> %s: %d connections at most (cap %d), %d accepted, "
                          "%d requests" % (n, m, relay.max_open, caps[n], relay.accepted,
                                           relay.requests))
    print("2000 views in %.1fs\n%s" % (took, "\n".join(report)))
    for (n, m), relay in relays.items():
        assert 1 <= relay.max_open <= caps[n], report
    total = sum(r.requests for r in relays.values())
    # Two peers per view: without shared fetches that would be 4000 requests.
    assert total < 2000, report


def test_peer_max_connections_setting():
    r = run_kubia(["--help"])
    assert b"--peer-max-connections" in r.stdout and b"KUBIA_PEER_MAX_CONNECTIONS" in r.stdout
    assert b"[4]" in [ln for ln in r.stdout.split(b"\n")
                      if b"--peer-max-connections" in ln][0]
    for args, env in ((["--peer-max-connections", "0"], None),
                      ([], {"KUBIA_PEER_MAX_CONNECTIONS": "0"}),
                      (["--peer-max-connections", "many"], None)):
        r = run_kubia(args, env=env)
        assert r.returncode == 2, (args, env, r)
        assert b"peer-max-connections" in r.stderr or b"PEER_MAX_CONNECTIONS" in r.stderr, r
