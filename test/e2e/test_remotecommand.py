"""kubiasim/remotecommand.py (and the channels.py, spdy.py and websocket.py it serves
with) against the real kubectl: exec and attach over SPDY (kubectl 1.27), over
WebSocket (1.33), and 1.33's fall back to SPDY from a server without WebSocket; what
kubectl does not send (refused requests, pings, fragments) from raw clients.

A small API server in the test answers what kubectl exec asks before it execs
(/version, discovery, the pod) and hands the exec request to remotecommand.serve(),
whose run() is run_command() of a local command in a temporary directory.
"""

import base64
import fcntl
import hashlib
import http.client
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from conftest import IMAGE, KUBIA, image_available, wait_until
from kubiatest.ports import free_port

from kubiasim import channels, remotecommand, spdy
from kubiasim.pod_commands import pod_exec
from kubiasim.state import Cluster

POD = "kubia-0"
TIMEOUT_S = 60


def kubectl_binary(minor):
    name = "kubectl.1.%d" % minor
    found = shutil.which(name)
    if found:
        return found
    # beside the dispatcher (`kubectl`), wherever it is installed
    disp = shutil.which("kubectl")
    if disp:
        p = os.path.join(os.path.dirname(os.path.realpath(disp)), name)
        if os.access(p, os.X_OK):
            return p
    return None


def pod_doc():
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": POD, "namespace": "default", "uid": "0e1f-kubia-0",
                         "resourceVersion": "1"},
            "spec": {"containers": [{"name": "kubia", "image": "kubia", "stdin": True}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "kubia", "ready": True, "restartCount": 0, "image": "kubia",
                 "imageID": "", "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}}}]}}


RESOURCES = {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
     "shortNames": ["po"], "verbs": ["get", "list", "create", "delete"]},
    {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
     "verbs": ["create", "get"]},
    {"name": "pods/attach", "singularName": "", "namespaced": True,
     "kind": "PodAttachOptions", "verbs": ["create", "get"]}]}


class Api:
    """The fixture API server: exec requests are recorded (method, Upgrade) and served
    by remotecommand with run_command in workdir."""

    def __init__(self, workdir, websocket=True, run=None):
        self.workdir, self.websocket = workdir, websocket
        self.execs, self.codes, self.sessions = [], [], []
        self.run_pod = run
        self.limits = {}  # serve()'s limits
        self.run_opts = {}  # run_command()'s
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                api.route(self)

            def do_POST(self):
                api.route(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def run(self, session):
        self.sessions.append(session)
        if self.run_pod is not None:
            return self.run_pod(session)
        if session.container not in (None, "kubia"):
            raise remotecommand.RemoteCommandError(
                "container %s is not valid for pod %s" % (session.container, POD))
        # attach: the container's "main process" greets, then echoes its stdin
        argv = session.command or ["sh", "-c", "echo attached; exec cat"]
        return remotecommand.run_command(argv, session, cwd=self.workdir, **self.run_opts)

    def route(self, h):
        u = urlsplit(h.path)
        base = "/api/v1/namespaces/default/pods/" + POD
        if u.path == "/version":
            h.answer(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                           "platform": "linux/amd64"})
        elif u.path == "/api":
            h.answer(200, {"kind": "APIVersions", "versions": ["v1"],
                           "serverAddressByClientCIDRs": [{
                               "clientCIDR": "0.0.0.0/0",
                               "serverAddress": "127.0.0.1:%d" % self.port}]})
        elif u.path == "/apis":
            h.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        elif u.path == "/api/v1":
            h.answer(200, RESOURCES)
        elif u.path == base:
            h.answer(200, pod_doc())
        elif u.path in (base + "/exec", base + "/attach"):
            self.execs.append((h.command, h.headers.get("Upgrade", "")))
            code = remotecommand.serve(h.connection, h.rfile, h.command, h.headers, u.query,
                                       self.run, attach=u.path.endswith("/attach"),
                                       websocket=self.websocket, **self.limits)
            self.codes.append(code)
            h.close_connection = True
        else:
            h.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"})

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# (kubectl minor, the server offers WebSocket, the requests kubectl makes to exec)
CLIENTS = {
    "spdy-1.27": (27, True, [("POST", "SPDY/3.1")]),
    "websocket-1.33": (33, True, [("GET", "websocket")]),
    "fallback-1.33": (33, False, [("GET", "websocket"), ("POST", "SPDY/3.1")]),
}


@pytest.fixture(params=sorted(CLIENTS))
def kube(request, tmp_path):
    minor, websocket, want = CLIENTS[request.param]
    binary = kubectl_binary(minor)
    if binary is None:
        pytest.skip("kubectl.1.%d is not installed" % minor)
    work = tmp_path / "work"
    work.mkdir()
    api = Api(str(work), websocket)
    k = Kube(binary, kube_env(tmp_path, api), api, want, work)
    try:
        yield k
    finally:
        for p in k.started:
            if p.poll() is None:
                p.kill()
                p.wait()
        api.close()


def kube_env(tmp_path, api):
    """kubectl's environment: a kubeconfig of its own, for api; no KUBECTL_* setting
    of the caller's (KUBECTL_REMOTE_COMMAND_WEBSOCKETS would change the protocol)."""
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": "http://127.0.0.1:%d" % api.port}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t",
                                               "namespace": "default"}}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
    env.update(KUBECONFIG=str(cfg), HOME=str(tmp_path))
    return env


class Kube:
    def __init__(self, binary, env, api, want, work):
        self.binary, self.env, self.api, self.want, self.work = binary, env, api, want, work
        self.started = []

    def exec(self, *args, stdin=None, flags=()):
        r = subprocess.run([self.binary, "exec"] + list(flags) + [POD, "--"] + list(args),
                           input=stdin, capture_output=True, env=self.env, timeout=TIMEOUT_S)
        return r

    def served(self):
        """serve()'s answers, once it returned for every exec request (it returns once
        the client closed, which may be after kubectl printed its result)."""
        wait_until(lambda: len(self.api.codes) == len(self.api.execs), TIMEOUT_S,
                   "serve() to return")
        return self.api.codes

    def check_transport(self):
        """Each exec went the way its client goes (SPDY, WebSocket, or WebSocket
        refused then SPDY)."""
        n = len(self.want)
        assert len(self.api.execs) % n == 0 and self.api.execs[:n] == self.want, \
            self.api.execs


def test_exec_prints_the_output_and_exits_0(kube):
    r = kube.exec("echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    kube.check_transport()
    assert kube.served()[-1] == 0


def test_exit_code_is_kubectls(kube):
    r = kube.exec("sh", "-c", "exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert b"command terminated with exit code 3" in r.stderr
    kube.check_transport()
    assert kube.served()[-1] == 3


def test_a_command_that_cannot_run_is_kubectls_error(kube):
    r = kube.exec("echo", "hi", flags=["-c", "nope"])
    assert (r.returncode, r.stdout) == (1, b""), r.stderr
    assert r.stderr.endswith(b"error: container nope is not valid for pod kubia-0\n"), r.stderr
    kube.check_transport()
    assert kube.served()[-1] is None


def test_stdout_and_stderr_are_apart(kube):
    r = kube.exec("sh", "-c", "echo out; echo err >&2; echo out2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"out\nout2\n"
    assert r.stderr == b"err\n"


def test_stdin_round_trips_one_mib(kube):
    data = os.urandom(1 << 20)
    r = kube.exec("cat", stdin=data, flags=["-i"])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == len(data)
    assert hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest()
    kube.check_transport()


def test_stdin_the_command_leaves_is_dropped(kube):
    # the server goes on to the client's close at once, not after linger_s
    kube.api.limits = {"linger_s": 10 * TIMEOUT_S, "max_stdin_buffer": 65536}
    r = kube.exec("true", stdin=b"z" * (8 << 20), flags=["-i"])
    assert r.returncode == 0, r.stderr
    assert kube.served()[-1] == 0


def test_output_a_child_keeps_open_is_read_for_drain_s(kube):
    kube.api.run_opts = {"drain_s": 0.5}
    t0 = time.monotonic()
    r = kube.exec("sh", "-c", "sleep 60 & echo $!")
    took = time.monotonic() - t0
    pid = int(r.stdout)
    try:
        assert r.returncode == 0, r.stderr
        assert took < 30, "the exec waited for the child that holds its output"
    finally:
        os.kill(pid, signal.SIGKILL)  # sh's child: an exec's children outlive it


def test_large_output_arrives_whole(kube):
    # 4 MiB from the command: far beyond SPDY's initial window and the frame size
    r = kube.exec("sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' x")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * (4 << 20)


def test_stdin_reaches_a_file_in_the_working_directory(kube):
    r = kube.exec("sh", "-c", "cat > got; wc -c < got", stdin=b"abc\n", flags=["-i"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"4"
    assert (kube.work / "got").read_bytes() == b"abc\n"


def run_on_pty(k, args, rows, cols, stdin=b"", replies=()):
    """kubectl exec -it on a terminal of rows x cols (its controlling terminal, so it
    hears the terminal's resizes): its output, and its exit code. replies: (text, what)
    in turn: once text has been shown, what is typed (bytes) or done (called with the
    terminal)."""
    replies = list(replies)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    # not a process group leader, setsid(1) makes its session without a fork: p is
    # kubectl itself
    p = subprocess.Popen(["setsid", "-c", k.binary, "exec", "-it", POD, "--"] + args,
                         stdin=slave, stdout=slave, stderr=slave, env=k.env)
    k.started.append(p)
    os.close(slave)
    if stdin:
        os.write(master, stdin)
    out, deadline = b"", time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: kubectl and its terminal are gone
                    break
                if not data:
                    break
                out += data
                while replies and replies[0][0] in out:
                    what = replies.pop(0)[1]
                    what(master) if callable(what) else os.write(master, what)
            elif p.poll() is not None:
                break
        rc = p.wait(max(1, deadline - time.monotonic()))
    finally:
        os.close(master)
    return out, rc


def test_tty_gives_a_terminal_of_the_clients_size(kube):
    out, rc = run_on_pty(kube, ["sh", "-c", "tty && stty size"], 33, 111)
    assert rc == 0, out
    lines = out.replace(b"\r", b"").split(b"\n")
    assert any(x.startswith(b"/dev/pts/") for x in lines), out
    # the size comes through the resize channel (a terminal opens at 0 x 0)
    assert b"33 111" in lines, out


def test_the_terminal_follows_the_clients_resizes(kube):
    def resize(master):
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out, rc = run_on_pty(kube, ["sh", "-c", "trap 'stty size' WINCH; stty size; "
                                "echo ready; while :; do sleep 0.1; done"], 24, 80,
                         replies=[(b"ready\r\n", resize), (b"40 120\r\n", b"\x03")])
    assert rc == 130, out  # ^C: SIGINT ended the shell
    assert out.index(b"24 80\r\n") < out.index(b"ready") < out.index(b"40 120\r\n"), out


def test_ctrl_c_on_the_terminal_interrupts_the_command(kube):
    # the remote terminal is the command's controlling terminal: ^C is its SIGINT
    out, rc = run_on_pty(kube, ["sh", "-c", "trap 'echo interrupted; exit 9' INT; "
                                "echo ready; while :; do sleep 0.1; done"], 24, 80,
                         replies=[(b"ready\r\n", b"\x03")])
    assert rc == 9, out
    assert b"interrupted\r\n" in out, out


def test_without_tty_there_is_no_terminal(kube):
    r = kube.exec("tty")
    assert r.returncode == 1, r.stdout
    assert r.stdout == b"not a tty\n"


def test_client_gone_kills_the_command(kube):
    pidfile = kube.work / "pid"
    p = subprocess.Popen([kube.binary, "exec", POD, "--", "sh", "-c",
                          "echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 600"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kube.env)
    kube.started.append(p)
    deadline = time.monotonic() + TIMEOUT_S
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the command did not start"
        assert p.poll() is None, "kubectl ended"
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    while os.path.exists("/proc/%d" % pid) and not zombie(pid):
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.05)


def zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone while we looked
        return True


def test_attach_joins_the_main_process(kube):
    r = subprocess.run([kube.binary, "attach", "-i", POD], input=b"data\n",
                       capture_output=True, env=kube.env, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(b"attached\ndata\n"), r.stdout
    kube.check_transport()
    assert kube.api.sessions[-1].attach and kube.api.sessions[-1].command == []


def test_an_interactive_shell_on_a_terminal(kube):
    out, rc = run_on_pty(kube, ["sh"], 24, 80, stdin=b"echo $((6*7))\nexit 5\n")
    assert rc == 5, out
    assert b"42\r\n" in out, out  # the typed line has no 42: the shell answered


@pytest.fixture
def api(tmp_path):
    a = Api(str(tmp_path))
    try:
        yield a
    finally:
        a.close()


def raw_request(port, method, query, headers):
    """One request as given, its answer: (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    try:
        lines = ["%s /api/v1/namespaces/default/pods/%s/exec?%s HTTP/1.1" % (method, POD, query),
                 "Host: 127.0.0.1:%d" % port] + ["%s: %s" % kv for kv in headers]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        r = http.client.HTTPResponse(s)
        r.begin()
        return r.status, r.headers, r.read()
    finally:
        s.close()


SPDY = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io")]
WS = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
      ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
      ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")]


@pytest.mark.parametrize("method,query,headers,code,message", [
    ("POST", "stdout=true", SPDY, 400, "you must specify at least 1 command"),
    ("POST", "command=true&stdout=maybe", SPDY, 400, "stdout: invalid boolean value"),
    ("POST", "command=true", SPDY, 400, "at least 1 of stdin, stdout, stderr"),
    ("GET", "command=true&stdout=true", WS[:-1] + [
        ("Sec-WebSocket-Protocol", "base64.channel.k8s.io")], 400, "no common stream protocol"),
    ("GET", "command=true&stdout=true", WS[:3] + [("Sec-WebSocket-Key", "short")], 400,
     "malformed WebSocket upgrade"),
    ("POST", "command=true&stdout=true", WS, 400, "malformed WebSocket upgrade"),
    ("POST", "command=true&stdout=true", SPDY[:2] + [
        ("X-Stream-Protocol-Version", "v9.channel.k8s.io")], 403, "no common stream protocol"),
    ("POST", "command=true&stdout=true", SPDY[1:], 400, "Connection: Upgrade is required"),
    ("POST", "command=true&stdout=true", [], 400, "Upgrade request required"),
])
def test_malformed_requests_get_a_status_and_run_nothing(api, method, query, headers, code,
                                                         message):
    status, hdrs, body = raw_request(api.port, method, query, headers)
    assert status == code, body
    doc = json.loads(body)
    assert (doc["kind"], doc["status"], doc["code"]) == ("Status", "Failure", code)
    assert message in doc["message"], doc
    if code == 403:
        assert "v4.channel.k8s.io" in hdrs["X-Accepted-Stream-Protocol-Versions"]
    # the answer is out before serve() returns
    wait_until(lambda: api.codes, TIMEOUT_S, "serve() to return")
    assert api.sessions == [] and api.codes == [None]


def test_a_command_that_does_not_read_holds_stdin_back():
    inbox = channels.Inbox(8)
    dead = threading.Event()
    inbox.put(b"12345678", dead)
    t = threading.Thread(target=inbox.put, args=(b"9", dead))
    t.start()
    t.join(0.5)
    assert t.is_alive(), "a full inbox took more"
    assert inbox.read(4) == b"1234"
    t.join(TIMEOUT_S)
    assert not t.is_alive()
    inbox.close()
    assert inbox.read() == b"56789"
    assert inbox.read() == b""


class RawClient:
    """A connection that asked for an upgrade and got 101 (head: the answer's head)."""

    def __init__(self, port, method, query, headers):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.s.sendall(("%s /api/v1/namespaces/default/pods/%s/exec?%s HTTP/1.1\r\n"
                        "Host: x\r\n%s\r\n\r\n" % (method, POD, query, "\r\n".join(
                            "%s: %s" % kv for kv in headers))).encode())
        self.head = b""
        while not self.head.endswith(b"\r\n\r\n"):
            self.head += self.s.recv(1)
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s.close()

    def read(self, n):
        data = b""
        while len(data) < n:
            more = self.s.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data


class SpdyClient(RawClient):
    """Just enough of a SPDY/3.1 client to see the server's control frames."""

    def __init__(self, port, query):
        super().__init__(port, "POST", query, SPDY + [("Content-Length", "0")])
        self.deflate = zlib.compressobj(zdict=spdy.SPDY_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.SPDY_DICTIONARY)

    def frame(self):
        """(control type or None for data, stream id, flags, payload)."""
        head = self.read(8)
        flags, n = head[4], int.from_bytes(head[5:8], "big")
        payload = self.read(n)
        if head[0] & 0x80:
            ftype = int.from_bytes(head[2:4], "big")
            sid = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF if n >= 4 else 0
            if ftype == spdy.SYN_REPLY:
                self.inflate.decompress(payload[4:])
            return ftype, sid, flags, payload
        return None, int.from_bytes(head[:4], "big"), flags, payload

    def control(self, ftype, flags, payload):
        self.s.sendall(struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload))
                       + payload)

    def syn(self, sid, streamtype):
        block = struct.pack(">I", 1)
        for x in (b"streamtype", streamtype.encode()):
            block += struct.pack(">I", len(x)) + x
        block = self.deflate.compress(block) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.control(spdy.SYN_STREAM, 0, struct.pack(">IIH", sid, 0, 0) + block)
        assert self.frame()[:2] == (spdy.SYN_REPLY, sid)

    def data(self, sid, payload, fin=False):
        self.s.sendall(struct.pack(">II", sid, (int(fin) << 24) | len(payload)) + payload)


def test_spdy_acknowledges_stdin_with_window_updates_and_answers_pings(api):
    with SpdyClient(api.port, "command=wc&command=-c&stdin=true&stdout=true&stderr=true") as c:
        for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")):
            c.syn(sid, kind)
        c.control(spdy.PING, 0, struct.pack(">I", 1))
        size = 4 * spdy.SPDY_INITIAL_WINDOW
        for i in range(0, size, 16384):
            c.data(3, b"y" * 16384, fin=i + 16384 == size)
        acked, out, pings, finished = {}, b"", [], set()
        while finished != {1, 5, 7}:
            ftype, sid, flags, payload = c.frame()
            if ftype == spdy.WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", payload)
                acked[sid] = acked.get(sid, 0) + delta
            elif ftype == spdy.PING:
                pings.append(payload)
            elif ftype is None:
                out += payload if sid == 5 else b""
                if flags & 1:
                    finished.add(sid)
                if sid == 1 and flags & 1:
                    assert json.loads(payload)["status"] == "Success"
        assert out.strip() == str(size).encode()
        assert pings == [struct.pack(">I", 1)]
        # all but the last half window is acknowledged, for the stream and the session
        for sid in (0, 3):
            assert size - spdy.SPDY_INITIAL_WINDOW // 2 < acked.get(sid, 0) <= size


@pytest.mark.parametrize("runtime", ["process", "podman"])
def test_exec_in_a_pod_of_the_simulated_cluster(sim, tmp_path, runtime):
    """pod_exec, the run() the simulated API server gives serve(): in the pod's network,
    UTS and mount namespaces (podman exec in its container), with a terminal when
    asked."""
    binary = kubectl_binary(33)
    if binary is None:
        pytest.skip("kubectl.1.33 is not installed")
    if runtime == "podman" and not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = runtime
    sim.up(1, "pet")
    c = Cluster(sim.name, sim.run_dir, sim.data_dir, None)
    api = Api(str(tmp_path), run=lambda s: pod_exec(c, POD, s))
    k = Kube(binary, kube_env(tmp_path, api), api, [("GET", "websocket")], tmp_path)
    # the image has kubia and nothing else, no shell
    kubia = "/usr/bin/kubia" if runtime == "podman" else KUBIA
    try:
        r = k.exec(kubia, "--version")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"kubia ") and r.stdout.endswith(b"\n"), r.stdout
        assert b"\r" not in r.stdout
        assert c.st is None  # pod_exec read the state into a copy of its own
        out, rc = run_on_pty(k, [kubia, "--version"], 24, 80)
        assert rc == 0, out
        assert out.startswith(b"kubia ") and out.endswith(b"\r\n"), out  # a terminal's
        r = k.exec(kubia, "--no-such-option")
        assert r.returncode == 2, r.stderr
        assert b"unknown option" in r.stderr
        k.check_transport()
        if runtime == "podman":
            return
        r = k.exec("sh", "-c", "hostname; grep ^search /etc/resolv.conf; tty || true")
        assert r.returncode == 0, r.stderr
        host, search, tty = r.stdout.decode().splitlines()
        assert host == POD
        # the pod's resolv.conf, not this machine's: its mount namespace
        assert search.split()[:2] == ["search", "default.svc.cluster.local"], search
        assert tty == "not a tty"
        out, rc = run_on_pty(k, ["sh", "-c", "hostname; tty"], 24, 80)
        assert rc == 0, out
        assert b"%s\r\n/dev/pts/" % POD.encode() in out, out
    finally:
        api.close()


class WsClient(RawClient):
    """Just enough of a WebSocket client to send what kubectl does not: pings,
    fragments, the v5 close of stdin."""

    def __init__(self, port, query, protocols="v5.channel.k8s.io"):
        super().__init__(port, "GET", query, WS[:-1] + [("Sec-WebSocket-Protocol", protocols)])
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in self.head, self.head
        self.protocol = self.head.split(b"Sec-WebSocket-Protocol: ")[1].split(b"\r\n")[0]

    def send(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        self.s.sendall(head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload)))

    def frame(self):
        """(opcode, payload) of the server's next frame, which is never masked."""
        b0, b1 = self.read(2)
        assert not b1 & 0x80 and b0 & 0x80, "a masked or fragmented frame from the server"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.read(8))[0]
        return b0 & 0x0F, self.read(n)


def test_websocket_pings_fragments_and_the_close_of_stdin(api):
    with WsClient(api.port, "command=cat&stdin=true&stdout=true&stderr=true") as c:
        c.send(0x9, b"are you there")
        assert c.frame() == (0xA, b"are you there")
        # one stdin message in three frames, a ping between its parts
        c.send(0x2, b"\x00one ", fin=False)
        c.send(0x9, b"")
        c.send(0x0, b"two ", fin=False)
        c.send(0x0, b"three", fin=True)
        c.send(0x2, bytes([channels.CLOSE, channels.STDIN]))
        out, frames = b"", []
        while True:
            op, payload = c.frame()
            frames.append((op, payload[:1]))
            if op == 0x2 and payload[:1] == bytes([channels.STDOUT]):
                out += payload[1:]
            elif op == 0x2 and payload[:1] == bytes([channels.ERROR]):
                assert json.loads(payload[1:])["status"] == "Success"
            elif op == 0x8:
                assert payload[:2] == struct.pack(">H", 1000)
                break
        assert out == b"one two three"
        assert (0xA, b"") in frames
        # the server waits for the client's close, then ends the connection
        assert api.codes == []
        c.send(0x8, struct.pack(">H", 1000))
        assert c.s.recv(1) == b""
        wait_until(lambda: api.codes, TIMEOUT_S, "serve() to return")
        assert api.codes == [0]


@pytest.mark.parametrize("bad", [{"max_frame": 0}, {"chunk": 0}, {"chunk": 1 << 24},
                                 {"max_stdin_buffer": 0}, {"stream_timeout_s": 0},
                                 {"linger_s": -1}])
def test_limits_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        channels.Limits(**bad)


def ws_until_close(c):
    """The stdout frames' payloads up to the server's close frame, and that frame's."""
    outs = []
    while True:
        op, payload = c.frame()
        if op == 0x8:
            return outs, payload
        if op == 0x2 and payload[:1] == bytes([channels.STDOUT]):
            outs.append(payload[1:])


def test_websocket_frames_up_to_max_frame(api):
    api.limits = {"max_frame": 100}
    with WsClient(api.port, "command=cat&stdin=true&stdout=true") as c:
        c.send(0x2, b"\x00" + b"a" * 99)  # 100 bytes: taken
        op, payload = c.frame()
        assert (op, payload) == (0x2, b"\x01" + b"a" * 99)
        c.send(0x2, b"\x00" + b"b" * 100)
        assert c.frame() == (0x8, struct.pack(">H", 1009))  # message too big
        assert c.s.recv(1) == b""
        wait_until(lambda: api.codes, TIMEOUT_S, "serve() to return")
        assert api.codes == [128 + signal.SIGKILL]  # cat, killed: its client is gone


def test_output_frames_up_to_chunk(api):
    api.limits = {"chunk": 1000}
    with WsClient(api.port, "command=head&command=-c&command=5000&command=/dev/zero"
                  "&stdout=true") as c:
        outs, _ = ws_until_close(c)
        assert sum(map(len, outs)) == 5000
        assert max(map(len, outs)) == 1000


def test_the_server_waits_linger_s_for_the_clients_close(api):
    api.limits = {"linger_s": 1.0}
    with WsClient(api.port, "command=echo&command=hi&stdout=true") as c:
        outs, code = ws_until_close(c)
        t0 = time.monotonic()
        assert (b"".join(outs), code) == (b"hi\n", struct.pack(">H", 1000))
        assert c.s.recv(1) == b""  # no close frame from us: the server gives up
        assert time.monotonic() - t0 >= 0.9
        wait_until(lambda: api.codes, TIMEOUT_S, "serve() to return")
        assert api.codes == [0]


def test_spdy_client_that_opens_too_few_streams(api):
    api.limits = {"stream_timeout_s": 0.5}
    with SpdyClient(api.port, "command=true&stdin=true&stdout=true") as c:
        c.syn(1, "error")
        c.syn(3, "stdout")  # and no stdin stream
        while True:
            ftype, sid, flags, payload = c.frame()
            if ftype is None and sid == 1 and flags & 1:
                break
        status = json.loads(payload)
        assert status["status"] == "Failure"
        assert "timed out waiting for the client to create its streams" in status["message"]
        assert api.sessions == []


def test_spdy_frames_up_to_max_frame(api):
    api.limits = {"max_frame": 1000}
    with SpdyClient(api.port, "command=cat&stdin=true&stdout=true") as c:
        for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout")):
            c.syn(sid, kind)
        c.data(3, b"a" * 1000)
        assert c.frame() == (None, 5, 0, b"a" * 1000)
        c.data(3, b"b" * 1001)
        ftype, _sid, _flags, payload = c.frame()
        assert ftype == spdy.GOAWAY
        assert struct.unpack(">II", payload) == (5, 1)  # PROTOCOL_ERROR


@pytest.mark.parametrize("offered,chosen,status", [
    ("v4.channel.k8s.io, v3.channel.k8s.io", b"v4.channel.k8s.io", b'"NonZeroExitCode"'),
    ("channel.k8s.io, v2.channel.k8s.io", b"v2.channel.k8s.io",
     b"command terminated with non-zero exit code: 3"),
])
def test_older_websocket_protocols(api, offered, chosen, status):
    """v4 ends with a Status as v5 does; v2 and v3 with a failure's text alone."""
    with WsClient(api.port, "command=sh&command=-c&command=echo+x%3B+exit+3&stdout=true",
                  offered) as c:
        assert c.protocol == chosen
        frames = []
        while True:
            op, payload = c.frame()
            if op == 0x8:
                break
            frames.append(payload)
        assert frames[0] == b"\x01x\n"
        assert frames[-1][:1] == bytes([channels.ERROR]) and status in frames[-1]


def test_websocket_base64_channels(api):
    """v4.base64.channel.k8s.io: text messages, the channel's digit, base64 data."""
    with WsClient(api.port, "command=head&command=-c&command=6&stdin=true&stdout=true",
                  "v4.base64.channel.k8s.io") as c:
        assert c.protocol == b"v4.base64.channel.k8s.io"
        c.send(0x1, b"0aGVs", fin=False)  # "hello " in two fragments
        c.send(0x0, b"bG8g")
        got = {}
        while True:
            op, payload = c.frame()
            if op == 0x8:
                break
            assert op == 0x1, (op, payload)
            got[payload[:1]] = got.get(payload[:1], b"") + base64.b64decode(payload[1:])
        assert got[b"1"] == b"hello "
        assert json.loads(got[b"3"])["status"] == "Success"
