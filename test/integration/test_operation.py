# SPDX-License-Identifier: MIT
"""Operation: flags and variables, --help/--version, configuration errors, signals and
graceful shutdown, probes, connection limits, idle time-out, header memory."""

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import CT, DOMAIN, KUBIA, clean_env, is_root, pod_fqdn, run_kubia
from kubiatest.http import http_request
from kubiatest.ports import free_port
from kubiatest.servers import FakeDNS, HungPeer
from kubiatest.waits import wait_until

FLAGS = ["--port", "--data-file", "--mode", "--service", "--port-name", "--peer-port",
         "--peer-timeout-ms", "--dns-server", "--dns-timeout-ms", "--max-body", "--hostname", "--dns-cache-ms",
         "--peer-connect-timeout-ms", "--peer-max-bytes", "--max-peers", "--max-pending",
         "--max-connections", "--max-connections-per-ip", "--connection-memory",
         "--idle-timeout-s", "--threads", "--max-memory", "--shutdown-timeout-ms",
         "--log-level", "--resolv-conf", "--help", "--version"]


# ---------------------------------------------------------------------------
# command line


def test_help_mentions_every_flag():
    p = run_kubia(["--help"])
    assert p.returncode == 0, p.stderr
    out = (p.stdout + p.stderr).decode()
    missing = [f for f in FLAGS if f not in out]
    assert not missing, "--help does not mention %s" % missing
    # and every variable of the contract's table
    for var in ("KUBIA_PORT", "KUBIA_DATA_FILE", "KUBIA_MODE", "KUBIA_SERVICE",
                "KUBIA_PEER_PORT", "KUBIA_PEER_TIMEOUT_MS", "KUBIA_DNS_SERVER",
                "KUBIA_DNS_TIMEOUT_MS", "KUBIA_MAX_BODY", "KUBIA_HOSTNAME"):
        assert var in out, "--help does not mention %s" % var


def test_version():
    p = run_kubia(["--version"])
    assert p.returncode == 0, p.stderr
    out = (p.stdout + p.stderr).decode()
    assert re.search(r"\d+\.\d+\.\d+", out), out


def _bad(workdir):
    return ["--data-file", os.path.join(workdir, "d", "kubia.txt"), "--hostname", "bad"]


BAD_FLAGS = [
    (["--port", "abc"], "--port", "abc"),
    (["--port=abc"], "--port", "abc"),
    (["--port", "0"], "--port", "0"),
    (["--port", "70000"], "--port", "70000"),
    (["--port", "80x"], "--port", "80x"),
    (["--mode", "cluster"], "--mode", "cluster"),
    (["--mode="], "--mode", '""'),
    (["--max-body", "-5"], "--max-body", "-5"),
    (["--max-body", "lots"], "--max-body", "lots"),
    (["--peer-timeout-ms", "soon"], "--peer-timeout-ms", "soon"),
    (["--dns-timeout-ms", "12x"], "--dns-timeout-ms", "12x"),
    (["--peer-port", "65536"], "--peer-port", "65536"),
    (["--dns-server", "127.0.0.1:99999"], "--dns-server", "127.0.0.1:99999"),
    # a host name: the resolver needs an address; refused at start in either mode
    (["--dns-server", "kube-dns:53"], "--dns-server", "kube-dns:53"),
    (["--mode", "pet", "--dns-server", "kube-dns"], "--dns-server", "kube-dns"),
    (["--log-level", "loud"], "--log-level", "loud"),
    (["--threads", "many"], "--threads", "many"),
    (["--max-memory", "lots"], "--max-memory", "lots"),
    (["--port-name", "Web"], "--port-name", "Web"),
    (["--idle-timeout-s", "-1"], "--idle-timeout-s", "-1"),
    (["--max-connections", "1e3"], "--max-connections", "1e3"),
    (["--shutdown-timeout-ms", "99999999999999999999999"], "--shutdown-timeout-ms",
     "99999999999999999999999"),
]


@pytest.mark.parametrize("args,name,value", BAD_FLAGS,
                         ids=["%s=%s" % (n, v) for _, n, v in BAD_FLAGS])
def test_bad_flag_value(workdir, args, name, value):
    extra = [] if name == "--port" else ["--port", str(free_port())]
    p = run_kubia(_bad(workdir) + extra + args, timeout=5)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, (p.returncode, err)
    assert name in err and value in err, err


BAD_ENV = [
    ("KUBIA_PORT", "abc"),
    ("KUBIA_PORT", "0"),
    ("KUBIA_MODE", "solo"),
    ("KUBIA_MAX_BODY", "big"),
    ("KUBIA_PEER_PORT", "70000"),
    ("KUBIA_PEER_TIMEOUT_MS", "-3"),
    ("KUBIA_DNS_TIMEOUT_MS", "x"),
    ("KUBIA_LOG_LEVEL", "chatty"),
    ("KUBIA_MAX_PENDING", "1k"),
]


@pytest.mark.parametrize("var,value", BAD_ENV, ids=["%s=%s" % e for e in BAD_ENV])
def test_bad_env_value(workdir, var, value):
    extra = [] if var == "KUBIA_PORT" else ["--port", str(free_port())]
    p = run_kubia(_bad(workdir) + extra, env={var: value}, timeout=5)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, (p.returncode, err)
    assert var in err and value in err, err


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--no-such-flag=1"], ["-z"],
                                  ["stray-argument"]])
def test_unknown_flag(workdir, args):
    p = run_kubia(_bad(workdir) + ["--port", str(free_port())] + args, timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip(), "no message on stderr"


def test_missing_value(workdir):
    p = run_kubia(_bad(workdir) + ["--port"], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"--port" in p.stderr


def test_environment_alone_configures(factory, workdir):
    port = free_port()
    data = os.path.join(workdir, "envdata", "kubia.txt")
    os.makedirs(os.path.dirname(data))
    k = factory.kubia("ignored", port=port, raw=True, env={
        "KUBIA_PORT": str(port), "KUBIA_DATA_FILE": data, "KUBIA_HOSTNAME": "from-env",
        "KUBIA_MODE": "pet", "KUBIA_MAX_BODY": "10"})
    r = k.post("/", b"0123456789")
    assert r.status == 200 and r.body == b"Data stored on pod from-env\n"
    assert k.post("/", b"0123456789A").status == 413  # small: sent before the answer
    assert k.get("/").body == b"You've hit from-env\nData stored on this pod: 0123456789\n"
    with open(data, "rb") as f:
        assert f.read() == b"0123456789"


def test_flags_win_over_environment(factory, workdir):
    p_flag, p_env = free_port(), free_port()
    d_flag = os.path.join(workdir, "flagdata")
    d_env = os.path.join(workdir, "envdata")
    os.makedirs(d_flag)
    os.makedirs(d_env)
    k = factory.kubia("ignored", port=p_flag, raw=True, env={
        "KUBIA_PORT": str(p_env), "KUBIA_DATA_FILE": os.path.join(d_env, "kubia.txt"),
        "KUBIA_HOSTNAME": "from-env", "KUBIA_MODE": "peers", "KUBIA_MAX_BODY": "4"},
        args=["--port", str(p_flag), "--data-file=%s" % os.path.join(d_flag, "kubia.txt"),
              "--hostname=from-flag", "--mode", "pet", "--max-body=100"])
    r = k.post("/", b"longer than four")
    assert r.status == 200 and r.body == b"Data stored on pod from-flag\n"
    assert k.get("/").body == (b"You've hit from-flag\nData stored on this pod: "
                               b"longer than four\n")
    assert os.path.exists(os.path.join(d_flag, "kubia.txt"))
    assert not os.path.exists(os.path.join(d_env, "kubia.txt"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p_env), timeout=2).close()


# ---------------------------------------------------------------------------
# probes


def test_healthz_readyz(factory):
    k = factory.kubia("kubia-0", mode="pet")
    for method in ("GET", "HEAD"):
        r = k.request(method, "/healthz")
        assert r.status == 200 and r.header("Content-Type") == CT
        assert r.body == (b"ok\n" if method == "GET" else b"")
        r = k.request(method, "/readyz")
        assert r.status == 200 and r.header("Content-Type") == CT
        assert r.body == (b"ready\n" if method == "GET" else b"")


def test_readyz_503_when_data_dir_removed(factory):
    k = factory.kubia("kubia-0", mode="pet")
    k.post("/", b"x")
    shutil.rmtree(k.data_dir)
    wait_until(lambda: k.get("/readyz").status == 503, 5, "readyz 503", interval=0.05)
    r = k.get("/readyz")
    assert r.header("Content-Type") == CT
    assert r.body.startswith(b"not ready: ") and r.body.endswith(b"\n"), r.body
    assert r.body.count(b"\n") == 1 and len(r.body) > len(b"not ready: \n")
    r = k.get("/healthz")
    assert r.status == 200 and r.body == b"ok\n"


# ---------------------------------------------------------------------------
# signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_idle_exits_fast(factory, sig):
    k = factory.kubia("kubia-0", mode="pet")
    k.post("/", b"x")
    t0 = time.monotonic()
    k.proc.send_signal(sig)
    rc = k.proc.wait(5)
    dt = time.monotonic() - t0
    assert rc == 0, k.stderr()
    assert dt < 1.0, "exit took %.2fs" % dt


def connection_refused(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), timeout=0.2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def test_sigterm_finishes_inflight_cluster_get(factory):
    hung = HungPeer()
    try:
        dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-0"), 1),
                               (DOMAIN, pod_fqdn("kubia-1"), hung.port)],
                          hosts=[(pod_fqdn("kubia-1"), "127.0.0.1", None),
                                 (pod_fqdn("kubia-0"), "127.0.0.1", None)])
        k = factory.kubia("kubia-0", mode="peers", dns=dns.port, resolv=factory.resolv(),
                          args=["--peer-timeout-ms", "20000", "--shutdown-timeout-ms",
                                "1500"])
        k.post("/", b"in flight")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = ex.submit(http_request, "127.0.0.1", k.port, "GET", "/", None, None, 10)
            wait_until(lambda: hung.accepted >= 1, 3, what="the fan-out to reach the hung peer")
            t0 = time.monotonic()
            k.proc.send_signal(signal.SIGTERM)
            # new connections are refused while the request is still being finished
            wait_until(lambda: connection_refused(k.port), 1.0,
                       "new connections to be refused after SIGTERM", interval=0.02)
            r = fut.result(timeout=10)
            rc = k.proc.wait(5)
            dt = time.monotonic() - t0
        assert r.status == 200, r
        lines = r.body.split(b"\n")
        assert lines[:3] == [b"You've hit kubia-0", b"Data stored in the cluster:",
                             b"- kubia-0.kubia.default.svc.cluster.local: in flight"], r.body
        assert re.match(rb"^- kubia-1\.kubia\.default\.svc\.cluster\.local: Error: [^\n]+$",
                        lines[3]), r.body
        assert lines[4:] == [b""]
        assert rc == 0, k.stderr()
        assert dt < 1.5 + 1.0, "exit took %.2fs with --shutdown-timeout-ms 1500" % dt
    finally:
        hung.close()


def test_sigterm_finishes_inflight_chunked_post(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--shutdown-timeout-ms", "3000"])
    k.post("/", b"old")
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nTransfer-Encoding: chunked\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        # the 100 Continue proves the request is being processed
        s.settimeout(3)
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 100"), got
        s.sendall(b"6\r\nfirst \r\n")
        t0 = time.monotonic()
        k.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: connection_refused(k.port), 1.0,
                   "new connections to be refused after SIGTERM", interval=0.02)
        assert k.proc.poll() is None, "kubia exited with a request in flight"
        s.sendall(b"4\r\nlast\r\n0\r\n\r\n")
        buf = b""
        s.settimeout(5)
        while b"\r\n\r\n" not in buf or not buf.endswith(b"Data stored on pod kubia-0\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 200"), buf
        assert buf.endswith(b"\r\n\r\nData stored on pod kubia-0\n"), buf
        rc = k.proc.wait(5)
        assert rc == 0
        assert time.monotonic() - t0 < 3.0
    finally:
        s.close()
    with open(k.data_file, "rb") as f:
        assert f.read() == b"first last"
    k.start()
    assert k.get("/data").body == b"first last"


# ---------------------------------------------------------------------------
# connections


def served(host, port, source=None, timeout=1.5):
    """True when a fresh connection gets a 200 for /healthz; False when it is refused,
    closed, reset or left unanswered."""
    try:
        s = socket.create_connection((host, port), timeout=timeout,
                                     source_address=(source, 0) if source else None)
    except OSError:
        return False
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubia\r\n\r\n")
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not buf.endswith(b"ok\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"ok\n")
    except OSError:
        return False
    finally:
        s.close()


def open_kept(host, port, n, source=None, timeout=5):
    """n keep-alive connections, each known to be accepted (one request served).
    A connection the server drops at once is retried until timeout: connections the
    test closed just before (readiness probes) may not have been reaped yet."""
    socks = []
    deadline = time.monotonic() + timeout
    while len(socks) < n:
        assert time.monotonic() < deadline, "could not open %d kept connections" % n
        s = socket.create_connection((host, port), timeout=5,
                                     source_address=(source, 0) if source else None)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubia\r\n\r\n")
            buf = b""
            while not buf.endswith(b"ok\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            buf = b""
        if buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"ok\n"):
            socks.append(s)
        else:
            s.close()
            time.sleep(0.02)
    return socks


def test_max_connections(factory):
    """Four connections each reading a body fill --max-connections 4: a fifth is not
    served until one closes."""
    k = factory.kubia("kubia-0", mode="pet", args=["--max-connections", "4"])
    socks = open_kept("127.0.0.1", k.port, 4)
    try:
        for s in socks:
            s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 100\r\n\r\n")
        assert not served("127.0.0.1", k.port), "a 5th connection was served"
        socks.pop().close()
        wait_until(lambda: served("127.0.0.1", k.port), 5,
                   "a connection to be served once one closed", interval=0.05)
    finally:
        for s in socks:
            s.close()


def test_max_connections_makes_room(factory):
    """Four kept-alive connections waiting for their next request fill
    --max-connections 4: a fifth client is served at once, and the connection that
    waited longest is the one closed for it."""
    k = factory.kubia("kubia-0", mode="pet", args=["--max-connections", "4"])
    socks = open_kept("127.0.0.1", k.port, 4)
    try:
        assert served("127.0.0.1", k.port), "a 5th client was kept out"
        socks[0].settimeout(2)
        assert socks[0].recv(1) == b"", "the oldest connection was not the one closed"
        for s in socks[1:]:
            s.settimeout(0)
            with pytest.raises(BlockingIOError):
                s.recv(1)
    finally:
        for s in socks:
            s.close()


def test_max_connections_per_ip(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--max-connections-per-ip", "2"])
    # the readiness probes came from 127.0.0.1: use other source addresses
    socks = open_kept("127.0.0.1", k.port, 2, source="127.0.0.3")
    try:
        assert not served("127.0.0.1", k.port, source="127.0.0.3"), \
            "a 3rd connection from one address was served"
        assert served("127.0.0.1", k.port, source="127.0.0.4"), \
            "another address was refused"
        socks.pop().close()
        wait_until(lambda: served("127.0.0.1", k.port, source="127.0.0.3"), 5,
                   "the address to be served again once one connection closed", interval=0.05)
    finally:
        for s in socks:
            s.close()


def test_idle_timeout(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--idle-timeout-s", "1"])
    (s,) = open_kept("127.0.0.1", k.port, 1)
    try:
        t0 = time.monotonic()
        s.settimeout(5)
        try:
            got = s.recv(1)
        except ConnectionResetError:
            got = b""
        dt = time.monotonic() - t0
        assert got == b"", got
        assert 0.5 < dt < 3.5, "idle connection closed after %.2fs (--idle-timeout-s 1)" % dt
    finally:
        s.close()
    assert k.get("/healthz").status == 200


def test_connection_memory_limits_headers(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--connection-memory", "8192"])
    k.post("/", b"unchanged")
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    try:
        try:
            s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nX-Big: " + b"a" * 20000 +
                      b"\r\nContent-Length: 3\r\n\r\nnew")
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except ConnectionResetError:
            pass
        if buf:
            status = int(buf.split(b" ")[1])
            assert status in (413, 431), buf[:200]
    finally:
        s.close()
    assert k.get("/healthz").body == b"ok\n"
    assert k.get("/data").body == b"unchanged"
    # an ordinary request with a modest header still works
    r = k.get("/data", headers={"X-Normal": "b" * 2000})
    assert r.status == 200 and r.body == b"unchanged"


# ---------------------------------------------------------------------------
# defaults and logging


def test_default_hostname_is_host_name(factory, workdir):
    port = free_port()
    d = os.path.join(workdir, "hn")
    os.makedirs(d)
    k = factory.kubia("ignored", port=port, raw=True, args=[
        "--port", str(port), "--data-file", os.path.join(d, "kubia.txt"), "--mode", "pet"])
    want = socket.gethostname().encode()
    assert k.post("/", b"x").body == b"Data stored on pod " + want + b"\n"
    assert k.get("/").body.startswith(b"You've hit " + want + b"\n")


def test_logs_go_to_stderr_not_stdout(workdir):
    port = free_port()
    d = os.path.join(workdir, "logs")
    os.makedirs(d)
    out_path, err_path = os.path.join(workdir, "out"), os.path.join(workdir, "err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen([KUBIA, "--port", str(port), "--data-file",
                              os.path.join(d, "kubia.txt"), "--mode", "pet",
                              "--hostname", "kubia-0", "--log-level", "debug"],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=clean_env())
    try:
        wait_until(lambda: _ready(port, p), 10, what="kubia ready")
        http_request("127.0.0.1", port, "POST", "/", b"log me")
        http_request("127.0.0.1", port, "GET", "/nothing-here")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            rc = None
    with open(err_path, "rb") as f:
        assert rc == 0, "exit status %s; stderr:\n%s" % (rc, f.read().decode(errors="replace"))
    with open(out_path, "rb") as f:
        assert f.read() == b""
    with open(err_path, "rb") as f:
        assert f.read().strip(), "nothing logged at --log-level debug"


def test_discovery_failures_are_logged(factory):
    """What goes wrong inside the discovery loop reaches kubia's log, not only the view."""
    fake = FakeDNS(2)
    try:
        k = factory.kubia("kubia-0", mode="peers", dns=fake.port, resolv=factory.resolv(),
                          args=["--service", "kubia.default.svc.cluster.local."])
        r = k.get("/")
        assert b"SERVFAIL" in r.body, r.body
        wait_until(lambda: "discovery: SRV lookup failed: kubia.default.svc.cluster.local: "
                   "server failure (SERVFAIL)" in k.stderr(), 5,
                   what="the failed lookup in the log")
        assert re.search(r'^time=\S+ level=warn msg="discovery: ', k.stderr(), re.M), k.stderr()
    finally:
        fake.close()


def test_unreadable_resolv_conf_is_logged(factory, workdir):
    """Without resolv.conf there is no search list: kubia says so at start."""
    missing = os.path.join(workdir, "no-such-resolv.conf")
    k = factory.kubia("kubia-0", mode="peers", resolv=missing)
    wait_until(lambda: "cannot read %s" % missing in k.stderr(), 5,
               what="the unreadable resolv.conf in the log")


def _ready(port, p):
    if p.poll() is not None:
        raise AssertionError("kubia exited early with %s" % p.returncode)
    try:
        return http_request("127.0.0.1", port, "GET", "/readyz", timeout=1).status == 200
    except OSError:
        return False


def test_sigterm_as_pid1(workdir):
    """As PID 1 of a PID namespace only signals with a handler are delivered: kubia
    must still end promptly and cleanly on SIGTERM."""
    if not is_root():
        pytest.skip("needs root for a PID namespace")
    port = free_port()
    d = os.path.join(workdir, "pid1")
    os.makedirs(d)
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", KUBIA, "--port",
                          str(port), "--data-file", os.path.join(d, "kubia.txt"), "--mode",
                          "pet", "--hostname", "kubia-0"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=clean_env())
    try:
        try:
            wait_until(lambda: _ready(port, p), 10, what="kubia as PID 1 ready")
        except AssertionError:
            if p.poll() is not None:
                pytest.skip("cannot create a PID namespace: %s" % p.stderr.read().decode())
            raise
        children = open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()
        assert len(children) == 1, children
        child = int(children[0])
        with open("/proc/%d/status" % child) as f:
            nspid = [ln for ln in f if ln.startswith("NSpid:")][0].split()
        assert nspid[-1] == "1", nspid
        t0 = time.monotonic()
        os.kill(child, signal.SIGTERM)
        rc = p.wait(5)
        dt = time.monotonic() - t0
        assert rc == 0, p.stderr.read()
        assert dt < 1.0, "PID 1 took %.2fs to exit on SIGTERM" % dt
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        p.stderr.close()


def test_sigterm_with_idle_keepalive_connections_exits_fast(factory):
    k = factory.kubia("kubia-0", mode="pet")
    socks = open_kept("127.0.0.1", k.port, 3)
    try:
        t0 = time.monotonic()
        k.proc.send_signal(signal.SIGTERM)
        rc = k.proc.wait(5)
        dt = time.monotonic() - t0
        assert rc == 0
        assert dt < 1.0, "exit took %.2fs with idle keep-alive connections" % dt
    finally:
        for s in socks:
            s.close()


def test_sigterm_under_connection_load(factory):
    """SIGTERM while clients keep connecting: exit 0, promptly, every time. (An
    intermittent abort in libmicrohttpd's quiesce path shows up here.)"""
    for i in range(8):
        k = factory.kubia("kubia-0", mode="pet")
        stop = time.monotonic() + 5

        def hammer():
            n = 0
            while time.monotonic() < stop and k.proc.poll() is None:
                try:
                    s = socket.create_connection(("127.0.0.1", k.port), timeout=1)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubia\r\n\r\n")
                    s.recv(100)
                    s.close()
                    n += 1
                except OSError:
                    pass
            return n

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(hammer) for _ in range(4)]
            wait_until(lambda: k.get("/healthz").status == 200, 2)
            time.sleep(0.01 * i)  # vary the instant of the signal
            t0 = time.monotonic()
            k.proc.send_signal(signal.SIGTERM)
            rc = k.proc.wait(5)
            dt = time.monotonic() - t0
            for f in futs:
                f.result(timeout=10)
        assert rc == 0, "iteration %d: exit status %s; stderr:\n%s" % (i, rc, k.stderr())
        assert dt < 1.5, "iteration %d: exit took %.2fs under load" % (i, dt)
