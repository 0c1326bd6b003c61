# SPDX-License-Identifier: MIT
"""Shared fixtures for the kubia integration tests.

Everything here talks to loopback only (127.0.0.0/8 and ::1). Every process a test
starts is recorded and ended by its PID in a finalizer; every wait is bounded.
Only the system python3 and its standard library (plus Debian's pytest) are used.
"""

import http.client
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from ports import free_port  # noqa: F401 (the suites import it from here)

KUBIA = os.environ.get("KUBIA_BINARY") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "kubia")
DNSMASQ = "/usr/sbin/dnsmasq"
CT = "text/plain; charset=utf-8"
NS = "default"
DOMAIN = "kubia.default.svc.cluster.local"
# The build's -Db_sanitize ("none", "address,undefined", "thread" ...), from
# test/meson.build. In a sanitizer build every kubia a test starts writes its reports
# to a directory of that test, and a report fails the test (see sanitizer_reports).
SANITIZE = os.environ.get("KUBIA_SANITIZE") or "none"
SANITIZER_OPTIONS = {"address": "ASAN_OPTIONS", "undefined": "UBSAN_OPTIONS",
                     "thread": "TSAN_OPTIONS"}


def pod_fqdn(hostname, ns=NS, service="kubia"):
    return "%s.%s.%s.svc.cluster.local" % (hostname, service, ns)


def is_root():
    return os.geteuid() == 0


def wait_until(pred, timeout, interval=0.01, what="condition"):
    """Polls pred() until it returns a true value; fails the test after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# ports


# free_port: see test/ports.py (below the ephemeral range, one port per run)


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# minimal DNS (only what the fixtures need: build a query, read the header)


def dns_query_packet(name, qtype, qid=None):
    if qid is None:
        qid = random.randrange(1, 65535)
    hdr = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p)
    return qid, hdr + q + b"\x00" + struct.pack("!HH", qtype, 1)


def dns_query(server, port, name, qtype=33, timeout=0.5):
    """Returns (rcode, ancount, truncated) or None when nothing answered in time."""
    qid, pkt = dns_query_packet(name, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (server, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(4096)
            except (socket.timeout, ConnectionRefusedError):
                return None
            if len(data) >= 12:
                rid, flags, _qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
                if rid == qid:
                    return flags & 0xF, an, bool(flags & 0x0200)
        return None
    finally:
        s.close()


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
            if self.rcode is None or len(data) < 12:
                continue
            qid, flags = struct.unpack("!HH", data[:4])
            rflags = 0x8000 | (flags & 0x0100) | 0x0080 | self.rcode
            # echo the question section only, no answers
            i = 12
            while i < len(data) and data[i] != 0:
                i += 1 + data[i]
            resp = struct.pack("!HHHHHH", qid, rflags, 1, 0, 0, 0) + data[12:i + 5]
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


# ---------------------------------------------------------------------------
# process bookkeeping


class Procs:
    """Every process a test starts; ended by PID (TERM, then KILL) at teardown."""

    def __init__(self):
        self.items = []

    def add(self, p):
        self.items.append(p)
        return p

    def cleanup(self):
        for p in reversed(self.items):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
                except ProcessLookupError:
                    pass
        self.items = []


class Dnsmasq:
    """dnsmasq serving SRV and A/AAAA records on 127.0.0.1:<port>.

    srv: list of (name, target, port[, priority, weight]); hosts: list of
    (name, ipv4 or None, ipv6 or None). SIGHUP does not reload SRV records, so a
    change of the record set means restart()."""

    def __init__(self, procs, workdir, srv=(), hosts=(), log_queries=False, extra=()):
        if not os.access(DNSMASQ, os.X_OK):
            pytest.skip("%s not installed" % DNSMASQ)
        self.procs = procs
        self.extra = list(extra)
        self.workdir = workdir
        self.srv = list(srv)
        self.hosts = list(hosts)
        self.log_queries = log_queries
        self._marks = 0  # flush_log()'s queries so far
        self.port = free_port(udp=True)
        self.proc = None
        self.logpath = os.path.join(workdir, "dnsmasq.%d.log" % self.port)
        self.start()

    def args(self):
        a = [DNSMASQ, "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1",
             "--port=%d" % self.port, "--local=/cluster.local/", "--local=//",
             "--pid-file=", "--log-facility=-"]
        if is_root():
            a.append("--user=root")
        if self.log_queries:
            a.append("--log-queries")
        a += self.extra
        for rec in self.srv:
            name, target, port, prio, weight = tuple(rec) + (0, 0)[: 5 - len(rec)]
            a.append("--srv-host=%s,%s,%d,%d,%d" % (name, target, port, prio, weight))
        for name, v4, v6 in self.hosts:
            a.append("--host-record=%s,%s" % (name, ",".join(x for x in (v4, v6) if x)))
        return a

    def start(self):
        log = open(self.logpath, "ab")
        try:
            self.proc = self.procs.add(subprocess.Popen(
                self.args(), stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        finally:
            log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited (%s): %s" % (self.proc.returncode,
                                                                  self.log()))
            return dns_query("127.0.0.1", self.port, "ready.cluster.local", 1, 0.2)

        wait_until(ready, 10, what="dnsmasq to answer")
        # make sure the fixture itself serves what the test asked for
        names = {}
        for rec in self.srv:
            names[rec[0]] = names.get(rec[0], 0) + 1
        # (UDP: a query or its answer may be dropped on a loaded machine, so each name
        # is asked again, as a resolver would, until it answers or 10 s have passed)
        for name, count in names.items():
            last = []

            def served(name=name, count=count, last=last):
                last[:] = [dns_query("127.0.0.1", self.port, name, 33, 1.0)]
                r = last[0]
                return r is not None and r[0] == 0 and (r[1] == count or r[2])

            try:
                wait_until(served, 10, what="dnsmasq to serve %s SRV x%d" % (name, count))
            except AssertionError as e:
                raise AssertionError("%s; last answer %r; dnsmasq log: %s"
                                     % (e, last[0], self.log())) from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self, srv=None, hosts=None):
        self.stop()
        if srv is not None:
            self.srv = list(srv)
        if hosts is not None:
            self.hosts = list(hosts)
        self.start()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def flush_log(self, timeout=5):
        """Waits until every query dnsmasq received before this call is in its log:
        asks a name of its own and waits for that query's line. dnsmasq answers and
        logs one query after the other, so the lines before it are complete."""
        assert self.log_queries, "dnsmasq was started without log_queries=True"
        self._marks += 1
        name = "log-mark-%d.cluster.local" % self._marks
        wait_until(lambda: dns_query("127.0.0.1", self.port, name, 1, 0.5) is not None,
                   timeout, what="dnsmasq to answer %s" % name)
        line = "query[A] %s from " % name
        wait_until(lambda: line in self.log(), timeout, what="%s in dnsmasq's log" % name)

    def srv_queries(self):
        """How many SRV queries dnsmasq has received so far (from anyone: the fixture's
        own checks included, so tests compare counts before and after)."""
        self.flush_log()
        return len(re.findall(r"\bquery\[SRV\] \S+ from ", self.log()))


# ---------------------------------------------------------------------------
# kubia


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


def http_request(host, port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.headers, data)
    finally:
        conn.close()


class Kubia:
    def __init__(self, procs, workdir, hostname="kubia-0", port=None, data_dir=None,
                 args=(), env=None, mode=None, dns=None, resolv=None, wait=True,
                 host="127.0.0.1", raw=False, wrapper=(), ready_timeout=10):
        self.procs = procs
        self.hostname = hostname
        self.port = port or free_port()
        self.host = host
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="data-%s-" % hostname,
                                                     dir=workdir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.data_file = os.path.join(self.data_dir, "kubia.txt")
        self.stderr_path = os.path.join(workdir, "kubia-%s-%d.%d.err" % (
            hostname, self.port, len(procs.items)))
        # raw: only the given args (configuration through the environment)
        self.argv = [KUBIA] if raw else [KUBIA, "--port", str(self.port), "--data-file",
                                         self.data_file, "--hostname", hostname]
        if mode:
            self.argv += ["--mode", mode]
        if dns is not None:
            self.argv += ["--dns-server", "127.0.0.1:%d" % dns]
        if resolv is not None:
            self.argv += ["--resolv-conf", resolv]
        self.argv += list(args)
        # wrapper: a command the binary runs under (valgrind in test_valgrind.py)
        self.argv = list(wrapper) + self.argv
        self.ready_timeout = ready_timeout
        self.env = clean_env(env)
        self.proc = None
        self.start(wait)

    def start(self, wait=True):
        err = open(self.stderr_path, "ab")
        try:
            self.proc = self.procs.add(subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err))
        finally:
            err.close()
        if wait:
            self.wait_ready(self.ready_timeout)

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout=10):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("kubia exited with %s before ready; stderr:\n%s" % (
                    self.proc.returncode, self.stderr()))
            try:
                r = http_request(self.host, self.port, "GET", "/readyz", timeout=1)
                return r.status == 200
            except OSError:
                return False
            except http.client.HTTPException:
                return False

        wait_until(ready, timeout, interval=0.01, what="kubia /readyz")

    def request(self, method, path, body=None, headers=None, timeout=10, host=None):
        return http_request(host or self.host, self.port, method, path, body, headers,
                            timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Signals the process and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("kubia did not exit within %ss of signal %d" % (
                    timeout, sig))
        return self.proc.returncode

    def restart(self, wait=True):
        rc = self.stop()
        assert rc == 0, "kubia exited %s on SIGTERM: %s" % (rc, self.stderr())
        self.start(wait)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBIA_")}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(_sanitizer_env(env))
    if extra:
        env.update(extra)
    return env


_report_dir = None  # set for each test by sanitizer_reports()


def _sanitizer_env(env):
    """The sanitizers' options of env with their reports sent to this test's report
    directory (one file per process and sanitizer: <dir>/<name>.<pid>)."""
    if _report_dir is None:
        return {}
    out = {}
    for san in SANITIZE.split(","):
        var = SANITIZER_OPTIONS.get(san)
        if var is None:
            continue
        opts = env.get(var, "")
        out[var] = "%s%slog_path=%s" % (opts, ":" if opts else "",
                                       os.path.join(_report_dir, san))
    return out


def run_kubia(args, env=None, timeout=10):
    """Runs kubia to completion (for --help, bad flags ...)."""
    return subprocess.run([KUBIA] + list(args), env=clean_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def write_resolv(workdir, search=("default.svc.cluster.local", "svc.cluster.local",
                                  "cluster.local"), name="resolv.conf"):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("search %s\nnameserver 127.0.0.1\noptions ndots:5\n" % " ".join(search))
    return path


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


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session", autouse=True)
def _binary():
    if not os.path.isfile(KUBIA) or not os.access(KUBIA, os.X_OK):
        pytest.fail("kubia binary not found at %s (set KUBIA_BINARY)" % KUBIA)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def sanitizer_reports():
    """In a sanitizer build, a report from any kubia the test started fails the test.
    Autouse fixtures are set up first and torn down last, so every process has ended
    (and written its reports) by the time they are read here."""
    global _report_dir
    if not any(san in SANITIZER_OPTIONS for san in SANITIZE.split(",")):
        yield None
        return
    d = tempfile.mkdtemp(prefix="kubia-it-reports-")
    _report_dir = d
    try:
        yield d
    finally:
        _report_dir = None
        reports = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), errors="replace") as f:
                reports.append("---- %s:\n%s" % (name, f.read()))
        shutil.rmtree(d, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer reports from kubia:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="kubia-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs(request):
    p = Procs()
    yield p
    p.cleanup()


class ClusterFactory:
    """Builds dnsmasq + kubia processes for a test."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.workdir = workdir
        self.kubias = []
        self.closers = []

    def on_close(self, fn):
        """fn() runs at the end of the test, before its processes are ended."""
        self.closers.append(fn)

    def close(self):
        while self.closers:
            self.closers.pop()()

    def dns(self, srv=(), hosts=(), **kw):
        return Dnsmasq(self.procs, self.workdir, srv, hosts, **kw)

    def kubia(self, hostname="kubia-0", **kw):
        k = Kubia(self.procs, self.workdir, hostname=hostname, **kw)
        self.kubias.append(k)
        return k

    def resolv(self, search=None, name="resolv.conf"):
        if search is None:
            return write_resolv(self.workdir, name=name)
        return write_resolv(self.workdir, search, name=name)

    def cluster(self, names=("kubia-0", "kubia-1", "kubia-2"), mode=None, args=(),
                ns=NS, service="kubia", svc_name=None, extra_srv=(), extra_hosts=()):
        """Starts one kubia per name, each on its own port and its own loopback
        address (127.0.0.(i+1)), and a dnsmasq publishing them as the SRV records
        of <service>.<ns>.svc.cluster.local."""
        ports = [free_port() for _ in names]
        svc = svc_name or "%s.%s.svc.cluster.local" % (service, ns)
        srv = [(svc, pod_fqdn(n, ns, service), p) for n, p in zip(names, ports)]
        hosts = [(pod_fqdn(n, ns, service), "127.0.0.%d" % (i + 1), None)
                 for i, n in enumerate(names)]
        dns = self.dns(srv + list(extra_srv), hosts + list(extra_hosts))
        rc = self.resolv(("%s.svc.cluster.local" % ns, "svc.cluster.local",
                          "cluster.local"), name="resolv-%s.conf" % ns)
        ks = []
        for i, (n, p) in enumerate(zip(names, ports)):
            ks.append(self.kubia(n, port=p, mode=mode, dns=dns.port, resolv=rc,
                                 args=list(args), host="127.0.0.%d" % (i + 1)))
        return dns, ks


@pytest.fixture
def factory(procs, workdir, request):
    f = ClusterFactory(procs, workdir)
    try:
        yield f
    finally:
        f.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for k in f.kubias:
            print("---- kubia %s (port %d) stderr:\n%s" % (k.hostname, k.port,
                                                         k.stderr()[-4000:]))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# ---------------------------------------------------------------------------
# faults: kubia under the faultfs shim (test/faults/faultfs.c), loaded with LD_PRELOAD

SHIM = os.path.join(os.path.dirname(os.path.abspath(KUBIA)), "test", "faults", "faultfs.so")
OLD = b"old data\n"



def preload():
    """The shim, after the ASan runtime in a build that has one: ASan insists on coming
    first in the list of libraries, and its interceptors then reach the shim's."""
    if "address" not in SANITIZE:
        return SHIM
    out = subprocess.run(["ldd", KUBIA], capture_output=True, text=True, check=True).stdout
    asan = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", out, re.M)
    if asan is None:
        pytest.skip("no ASan runtime found in ldd %s" % KUBIA)
    return "%s %s" % (asan.group(1), SHIM)


@pytest.fixture
def faultfs():
    """Skips a test that needs the faultfs shim where it was not built."""
    if not os.path.isfile(SHIM):
        pytest.skip("faultfs shim not built (expected at %s)" % SHIM)


def start_faulty(factory, workdir, faults, old=OLD, args=()):
    """kubia in pet mode on a data directory holding old (None: no data file), with
    the faults (FAULTFS_* variables) confined to that directory."""
    data_dir = os.path.realpath(tempfile.mkdtemp(prefix="faults-", dir=workdir))
    if old is not None:
        with open(os.path.join(data_dir, "kubia.txt"), "wb") as f:
            f.write(old)
    env = {"LD_PRELOAD": preload(), "FAULTFS_PATH": data_dir}
    env.update(faults)
    return factory.kubia("kubia-0", mode="pet", data_dir=data_dir, env=env, args=args)


def on_disk(k):
    try:
        with open(k.data_file, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def temp_files(k):
    return [n for n in os.listdir(k.data_dir) if ".tmp." in n]


def injected(k, what):
    """The faults of one kind the shim reports having injected."""
    return [ln for ln in k.stderr().splitlines() if ln.startswith("faultfs: " + what)]
