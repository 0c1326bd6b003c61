# SPDX-License-Identifier: MIT
"""Servers on loopback that a test points kubia at: DNS servers with a fixed answer or
a delay, TCP peers that hang or trickle, a listener whose accept queue is full. Each
binds its own port (port 0) and holds it for its life; close() ends its threads."""

import socket
import threading
import time

import pytest

from kubiatest import dnswire


class FakeDNS:
    """A UDP DNS server on 127.0.0.1 that answers every query with a fixed rcode
    (2 = SERVFAIL), or never answers at all (rcode None)."""

    def __init__(self, rcode):
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            q = dnswire.parse_question(data)
            if self.rcode is None or q is None:
                continue
            qid, flags, _name, _qtype, qend = q
            # the question echoed, no records
            rflags = 0x8000 | (flags & 0x0100) | 0x0080 | self.rcode
            resp = dnswire.reply_head(qid, rflags, 0, data, qend)
            try:
                self.sock.sendto(resp, addr)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class SlowDNS:
    """A UDP relay on 127.0.0.1 that holds every query for delay seconds before it
    passes it on to the DNS server on 127.0.0.1:upstream, and relays the answer back:
    a slow name server, so that lookups stay in flight long enough to overlap."""

    def __init__(self, upstream, delay):
        self.upstream = upstream
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.threads = []
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        self.threads.append(t)

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._relay, args=(data, addr, time.monotonic()),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def _relay(self, data, addr, received):
        if self._stop.wait(max(0.0, received + self.delay - time.monotonic())):
            return
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(2)
        try:
            up.sendto(data, ("127.0.0.1", self.upstream))
            answer, _ = up.recvfrom(65535)
            self.sock.sendto(answer, addr)
        except OSError:
            pass
        finally:
            up.close()

    def close(self):
        self._stop.set()
        for t in self.threads:
            t.join(3)
        self.sock.close()


class BacklogFull:
    """A listening socket whose accept queue is full and never drained: further
    connection attempts hang in SYN_SENT (loopback cannot otherwise simulate an
    unreachable host). skip()s when the kernel does not behave that way."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
        except socket.timeout:
            pass
        else:
            self.close()
            pytest.skip("a full accept queue does not stall connect() here")
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.fillers = []
        self.sock.close()


class LoopbackServer:
    """A TCP server on 127.0.0.1 (or host) that serves each connection in a thread of
    its own with _serve(c) (a subclass's; none when threaded is False); _accepted(c)
    runs first, in the accepting thread."""

    threaded = True

    def __init__(self, backlog=16, host="127.0.0.1", family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._accepted(c)
            if not self.threaded:
                continue
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _accepted(self, c):
        pass

    def _serve(self, c):
        raise NotImplementedError

    def _wake(self):
        """Called by close() after the listening socket: ends what blocks the serving
        threads (nothing by default; their reads time out)."""

    def close(self, join_s=2):
        self._stop.set()
        self.sock.close()
        self._wake()
        for t in self.threads:
            t.join(join_s)


class HungPeer(LoopbackServer):
    """Accepts TCP connections and never answers. Counts accepted connections."""

    threaded = False

    def __init__(self, host="127.0.0.1", family=socket.AF_INET):
        self.conns = []
        super().__init__(backlog=64, host=host, family=family)

    def _accepted(self, c):
        self.conns.append(c)

    @property
    def accepted(self):
        return len(self.conns)

    def _wake(self):
        self.threads[0].join(2)  # the accepting thread: no connection is added after
        for c in self.conns:
            c.close()


class TricklePeer(LoopbackServer):
    """An HTTP peer that answers /data with a valid head and then one byte of body
    every interval seconds, for ever."""

    def __init__(self, interval=0.1):
        self.interval = interval
        super().__init__()

    def _serve(self, c):
        try:
            c.settimeout(2)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
            self._answer(c)
        except OSError:
            pass
        finally:
            c.close()

    def _answer(self, c):
        """What the peer sends once the request's head has arrived."""
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 100000\r\n\r\n")
        while not self._stop.wait(self.interval):
            c.sendall(b"t")


