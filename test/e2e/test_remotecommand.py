"""kubiasim/remotecommand.py against the real kubectl: exec over SPDY (kubectl 1.27),
over WebSocket (1.33), and 1.33's fall back to SPDY from a server without WebSocket.

A small API server in the test answers what kubectl exec asks before it execs
(/version, discovery, the pod) and hands the exec request to remotecommand.serve(),
whose run() is run_command() of a local command in a temporary directory.
"""

import hashlib
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import fcntl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from ports import free_port

from kubiasim import remotecommand

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
            "spec": {"containers": [{"name": "kubia", "image": "kubia"}]},
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

    def __init__(self, workdir, websocket=True):
        self.workdir, self.websocket = workdir, websocket
        self.execs, self.codes = [], []
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
        return remotecommand.run_command(session.command, session, cwd=self.workdir)

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
        elif u.path == base + "/exec":
            self.execs.append((h.command, h.headers.get("Upgrade", "")))
            code = remotecommand.serve(h.connection, h.rfile, h.command, h.headers, u.query,
                                       self.run, websocket=self.websocket)
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
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": "http://127.0.0.1:%d" % api.port}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t",
                                               "namespace": "default"}}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
    env.update(KUBECONFIG=str(cfg), HOME=str(tmp_path))
    k = Kube(binary, env, api, want, work)
    try:
        yield k
    finally:
        for p in k.started:
            if p.poll() is None:
                p.kill()
                p.wait()
        api.close()


class Kube:
    def __init__(self, binary, env, api, want, work):
        self.binary, self.env, self.api, self.want, self.work = binary, env, api, want, work
        self.started = []

    def exec(self, *args, stdin=None, flags=()):
        r = subprocess.run([self.binary, "exec"] + list(flags) + [POD, "--"] + list(args),
                           input=stdin, capture_output=True, env=self.env, timeout=TIMEOUT_S)
        return r

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
    assert kube.api.codes[-1] == 0


def test_exit_code_is_kubectls(kube):
    r = kube.exec("sh", "-c", "exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert b"command terminated with exit code 3" in r.stderr
    kube.check_transport()


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


def run_on_pty(k, args, rows, cols, stdin=b""):
    """kubectl exec -it on a terminal of rows x cols: its output, and its exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen([k.binary, "exec", "-it", POD, "--"] + args, stdin=slave,
                         stdout=slave, stderr=slave, env=k.env, start_new_session=True)
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
    except FileNotFoundError:
        return True
