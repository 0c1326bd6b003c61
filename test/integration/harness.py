# SPDX-License-Identifier: MIT
"""What the integration tests start and drive: kubia and dnsmasq processes on loopback
(Kubia, Dnsmasq, a ClusterFactory of both), ended by PID at the end of the test (Procs),
and kubia under the faultfs shim. The fixtures that hand them to a test are in
conftest.py; helpers every suite shares are in test/lib/kubiatest.
"""

import http.client
import os
import re
import signal
import subprocess
import tempfile

import pytest
from kubiatest.dnswire import dns_query
from kubiatest.http import http_request
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

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


report_dir = None  # set for each test by sanitizer_reports()


def _sanitizer_env(env):
    """The sanitizers' options of env with their reports sent to this test's report
    directory (one file per process and sanitizer: <dir>/<name>.<pid>)."""
    if report_dir is None:
        return {}
    out = {}
    for san in SANITIZE.split(","):
        var = SANITIZER_OPTIONS.get(san)
        if var is None:
            continue
        opts = env.get(var, "")
        out[var] = "%s%slog_path=%s" % (opts, ":" if opts else "",
                                       os.path.join(report_dir, san))
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
