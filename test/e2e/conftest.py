"""Fixtures for the end-to-end tests: a simulated StatefulSet per test (kubia-sim).

Each test gets its own cluster (own name, /24, API proxy port, run and data
directories under the test's tmp_path). Whatever happens in the test, the cluster is
taken down afterwards and the test fails if any namespace, interface, mount or
process of it is left behind.
"""

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from kubiasim.containers import container_pid
from kubiasim.endpoints import pod_state, sts_status
from kubiasim.state import Cluster
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "kubia-sim")
KUBIA = os.environ.get("KUBIA_BINARY") or os.path.join(HERE, "..", "..", "build", "kubia")
IMAGE = os.environ.get("KUBIA_IMAGE", "localhost/kubia:test")
K8S = os.path.normpath(os.path.join(HERE, "..", "..", "k8s"))
# the chapter's files, under the book's names (k8s/ itself is the default kustomization)
BASE = os.path.join(K8S, "base")
TOOLS = ("/usr/sbin/ip", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/sbin/dnsmasq",
         "/usr/sbin/nginx", "/usr/bin/dig", "/usr/bin/kubectl")
# kubectl on the PATH runs the client of the server's minor; kubectl.1.<minor> beside the
# real file is that client itself
KUBECTL = "/usr/bin/kubectl"
STS_NAME = "kubia"


def pytest_configure(config):
    # meson ends a test that runs too long with SIGTERM; as an interrupt, pytest still
    # runs the fixtures' teardown, so the clusters are taken down.
    def interrupt(signo, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config, items):
    why = None
    if os.geteuid() != 0:
        why = "the simulated cluster needs root (network namespaces, mounts)"
    else:
        missing = [t for t in TOOLS if not os.access(t, os.X_OK)]
        if missing:
            why = "not installed: %s (bash test/setup.sh)" % ", ".join(missing)
    if why:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=why))


def subnet_in_use(base):
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    out += subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                          text=True).stdout
    return (base + ".") in out or (base + ".0/") in out


class Reply:
    def __init__(self, status, body, headers, elapsed):
        self.status, self.body, self.headers, self.elapsed = status, body, headers, elapsed

    def __repr__(self):
        return "<%s %r>" % (self.status, self.body)


class Sim:
    """One simulated cluster, driven through the kubia-sim command as a user would."""

    def __init__(self, tmp_path):
        self.name = "e%05d%s" % (os.getpid() % 100000, "".join(
            random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3)))
        for _ in range(100):
            base = "10.%d.%d" % (random.randrange(100, 250), random.randrange(0, 255))
            if not subnet_in_use(base):
                break
        self.base = base
        self.api_port = free_port()
        self.reports = str(tmp_path / "sanitizer-reports")
        self.run_dir = str(tmp_path / "run")
        self.data_dir = str(tmp_path / "data")
        # `up` makes its context current in the kubeconfig: the test's own, never ~/.kube
        self.kubeconfig = str(tmp_path / "kubeconfig")
        self.refs = []  # every process the cluster ever had, checked at the end
        self.ns = "default"
        self.runtime = "process"

    def cli(self, *args, check=True, timeout=180):
        cmd = [SIM, "--cluster", self.name, "--run-dir", self.run_dir,
               "--data-dir", self.data_dir] + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL,
                           env=dict(os.environ, KUBECONFIG=self.kubeconfig))
        if check and r.returncode != 0:
            raise AssertionError("kubia-sim %s failed (%d):\n%s\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        self.remember()
        return r

    def up(self, replicas=3, mode="peers", *extra, manifest=None, check=True):
        """kubia-sim up from manifest (default: k8s/, the peers StatefulSet); replicas
        and mode override the manifest's unless None."""
        args = ["up", "--binary", KUBIA, "--subnet", self.base + ".0/24",
                "--api-port", self.api_port, "--namespace", self.ns]
        if manifest is not None:
            args += ["-f", manifest]
        if replicas is not None:
            args += ["--replicas", replicas]
        if mode is not None:
            args += ["--mode", mode]
        if self.runtime != "process":
            args += ["--runtime", self.runtime]
        return self.cli(*args, *self.template_args(), *extra, check=check)

    def template_args(self):
        """What every pod template of this test gets on top of its manifest: the image
        built by the image suite, and the sanitizers' report paths."""
        image = ["--image", IMAGE] if self.runtime == "podman" else []
        return image + self.sanitizer_env()

    def sanitizer_env(self):
        """In a sanitizer build, every pod writes its reports where the test reads them."""
        if os.environ.get("KUBIA_SANITIZE", "none") == "none":
            return []
        os.makedirs(self.reports, exist_ok=True)
        return ["--env", "ASAN_OPTIONS=detect_leaks=1:log_path=%s/asan" % self.reports,
                "--env", "UBSAN_OPTIONS=print_stacktrace=1:log_path=%s/ubsan" % self.reports]

    def sanitizer_reports(self):
        if not os.path.isdir(self.reports):
            return []
        out = []
        for name in sorted(os.listdir(self.reports)):
            with open(os.path.join(self.reports, name), errors="replace") as f:
                out.append("%s:\n%s" % (name, f.read()))
        return out

    def kubectl(self, *args, minor=None, check=True, timeout=120):
        """kubectl with the cluster's kubeconfig: the dispatcher on the PATH, or with
        minor (27, "1.33") that client itself."""
        exe = KUBECTL
        if minor is not None:
            exe = os.path.join(os.path.dirname(os.path.realpath(KUBECTL)),
                               "kubectl.1.%s" % str(minor).split(".")[-1])
        r = subprocess.run([exe] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL,
                           env=dict(os.environ, KUBECONFIG=self.kubeconfig))
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s failed (%d):\n%s\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        self.remember()
        return r

    def get(self, *what):
        """kubectl get WHAT -o json, parsed."""
        return json.loads(self.kubectl("get", *what, "-o", "json").stdout)

    def endpoints(self):
        """The pods the Service kubia has as ready endpoints (kubectl get endpoints)."""
        ep = self.get("endpoints", STS_NAME)
        return sorted((a["targetRef"]["name"] for s in ep.get("subsets") or []
                       for a in s.get("addresses") or []),
                      key=lambda n: int(n.rsplit("-", 1)[1]))

    def sts(self):
        """The StatefulSet's status as kubectl shows it (its omitted counts as 0)."""
        s = self.get("statefulset", STS_NAME)["status"]
        for k in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas",
                  "currentReplicas"):
            s.setdefault(k, 0)
        return s

    def pod_obj(self, pod):
        """The pod as kubectl get po -o json shows it, or None while there is none (a
        StatefulSet's replacement comes a moment after the deletion)."""
        return next((p for p in self.get("po")["items"] if p["metadata"]["name"] == pod),
                    None)

    def restarts(self, pod):
        """The pod's RESTARTS (its container's restartCount); -1 while there is no pod."""
        p = self.pod_obj(pod)
        return p["status"]["containerStatuses"][0]["restartCount"] if p else -1

    def pods_ready(self):
        """{pod: True/False} for every pod, as its Ready condition says."""
        return {p["metadata"]["name"]: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions") or [])
            for p in self.get("po")["items"]}

    def wait_pods(self, n, timeout=120, names=None):
        """Until exactly the pods kubia-0 .. kubia-<n-1> (or names) exist, each ready and
        none being deleted, and they are the endpoints: what the controller has done
        once a scale, a deletion or a rollout is done."""
        want = names or ["kubia-%d" % i for i in range(n)]

        def done():
            pods = self.get("po")["items"]
            return sorted(p["metadata"]["name"] for p in pods) == sorted(want) and all(
                "deletionTimestamp" not in p["metadata"] and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or []) for p in pods) and \
                self.endpoints() == want
        wait_until(done, timeout, "pods %s ready" % want, interval=0.2)

    def scale(self, n, timeout=120):
        """kubectl scale statefulset kubia --replicas N, until the pods are there."""
        r = self.kubectl("scale", "statefulset", STS_NAME, "--replicas", n)
        self.wait_pods(n, timeout)
        return r

    def uid(self, pod):
        r = self.kubectl("get", "po", pod, "-o", "jsonpath={.metadata.uid}", check=False)
        return r.stdout if r.returncode == 0 else None

    def delete_pod(self, pod, wait=True, timeout=120):
        """kubectl delete po POD (it returns once the pod is gone); with wait, until the
        StatefulSet's replacement is ready."""
        old = self.uid(pod)
        r = self.kubectl("delete", "po", pod, timeout=timeout)
        if wait:
            def back():
                p = self.get("po")["items"]
                return any(o["metadata"]["name"] == pod and o["metadata"]["uid"] != old and
                           "deletionTimestamp" not in o["metadata"] and any(
                               c["type"] == "Ready" and c["status"] == "True"
                               for c in o["status"].get("conditions") or []) for o in p)
            wait_until(back, timeout, "the new %s to be ready" % pod, interval=0.2)
        return r

    def patch(self, patch, check=True):
        """kubectl patch statefulset kubia -p PATCH (a strategic merge patch)."""
        return self.kubectl("patch", "statefulset", STS_NAME, "-p", json.dumps(patch),
                            check=check)

    def set_env(self, *pairs, check=True):
        """A template update: NAME=VALUE pairs into the container's env (kubectl patch)."""
        env = [dict(zip(("name", "value"), p.split("=", 1))) for p in pairs]
        return self.patch({"spec": {"template": {"spec": {"containers": [
            {"name": STS_NAME, "env": env}]}}}}, check=check)

    def set_partition(self, n, check=True):
        return self.patch({"spec": {"updateStrategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"partition": n}}}},
                          check=check)

    def rollout_status(self, timeout="120s", check=True):
        """kubectl rollout status statefulset kubia: until the rollout is done."""
        return self.kubectl("rollout", "status", "statefulset", STS_NAME,
                            "--timeout", timeout, check=check, timeout=300)

    def exec(self, pod, *command, check=True):
        """kubectl exec POD -- COMMAND."""
        return self.kubectl("exec", pod, "--", *command, check=check)

    def dig(self, *args):
        """dig in a throwaway pod of the cluster, as the chapter runs it: what dig printed
        (without kubectl's line on the pod's deletion)."""
        out = self.kubectl("run", "-i", "srvlookup", "--image=tutum/dnsutils", "--rm",
                           "--restart=Never", "--", "dig", *args).stdout
        return re.sub(r'pod "srvlookup" deleted.*\n\Z', "", out)

    def watch(self):
        """The pods' events from now on (Watch)."""
        return Watch(self)

    def controller_log(self):
        """What the API server's controller said (it prints what kubectl cannot show:
        the endpoint lag, how long a pod took to stop)."""
        with open(os.path.join(self.run_dir, self.name, "apiserver.log")) as f:
            return f.read()

    def status(self):
        """The simulation's own record of the cluster, read from its files without the
        lock (also while a command runs): what no API object shows (processes, network
        namespaces, nodes' links, orphans), for the tests that look inside. What kubectl
        shows is read with kubectl."""
        st = read_state(self)
        if st is None:
            raise AssertionError("cluster %s is not up" % self.name)
        c = Cluster(self.name, self.run_dir, self.data_dir, SIM)
        c.st = st
        st["pod_status"] = {}
        for p in st["pods"].values():
            ps = pod_state(c, p)
            ps["container_pid"] = container_pid(c, p, ps)
            st["pod_status"][p["name"]] = ps
        st["orphan_status"] = [pod_state(c, o) for o in st["orphans"]]
        st["status"] = sts_status(c)
        st["volumes"], st["run"] = c.volumes, c.run
        return st

    def remember(self):
        st = read_state(self)
        if not st:
            return
        for key in ("dns", "nginx", "nginx_front", "prometheus", "endpoints_controller",
                    "apiserver"):
            if st.get(key):
                self.refs.append(st[key])
        for p in list(st["pods"].values()) + st["orphans"]:
            if p.get("kubelet"):
                self.refs.append(p["kubelet"])
            s = read_json(os.path.join(self.run_dir, self.name, "pods",
                                       p["netns"] + ".status.json"))
            if s and s.get("pid"):
                self.refs.append({"pid": s["pid"], "start": s.get("start")})

    def pod(self, name):
        return self.status()["pods"][name]

    def container_pid(self, name):
        return self.status()["pod_status"][name]["pid"]

    def volume(self, ordinal):
        return os.path.join(self.data_dir, self.name, "volumes", "data-kubia-%d" % ordinal)

    # the API server's proxy, as curl sees it
    def request(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            data = r.read().decode()
            return Reply(r.status, data, dict(r.getheaders()), time.monotonic() - t0)
        finally:
            conn.close()

    def pod_path(self, pod, path="/"):
        return "/api/v1/namespaces/%s/pods/%s/proxy%s" % (self.ns, pod, path)

    def svc_path(self, path="/", svc="kubia-public"):
        return "/api/v1/namespaces/%s/services/%s/proxy%s" % (self.ns, svc, path)

    def get_pod(self, pod, path="/"):
        return self.request("GET", self.pod_path(pod, path))

    def post_pod(self, pod, body):
        return self.request("POST", self.pod_path(pod), body)

    def post_each(self, n):
        """POSTs "data of kubia-N" to each of the pods 0..n-1, each acknowledged; the
        data by pod name, as view() and wait_view() take it."""
        data = {}
        for i in range(n):
            pod = "kubia-%d" % i
            data[pod] = "data of %s" % pod
            r = self.post_pod(pod, data[pod])
            assert r.status == 200, (pod, r)
        return data

    def get_svc(self, path="/"):
        return self.request("GET", self.svc_path(path))

    def post_svc(self, body):
        return self.request("POST", self.svc_path(), body)

    def fqdn(self, pod):
        return "%s.kubia.%s.svc.cluster.local" % (pod, self.ns)

    def view(self, me, data):
        """The exact cluster view pod `me` must give, data = {pod: text}."""
        lines = "".join("- %s: %s\n" % (self.fqdn(p), data[p])
                        for p in sorted(data, key=lambda p: int(p.split("-")[1])))
        return "You've hit %s\nData stored in the cluster:\n%s" % (me, lines)

    def wait_view(self, me, data, timeout=10):
        """Pods reuse an SRV answer for up to --dns-cache-ms: wait for the new one."""
        want = self.view(me, data)
        last = []

        def ok():
            r = self.get_pod(me)
            last[:] = [r]
            return r.status == 200 and r.body == want
        try:
            wait_until(ok, timeout, "the view of %s" % me, interval=0.1)
        except AssertionError:
            assert last[0].body == want
        return last[0]

    def leftovers(self):
        """Everything of this cluster still on the machine (should be nothing)."""
        left = []
        prefix = "ksim-%s-" % self.name
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left += ["netns " + n.split()[0] for n in ns.splitlines() if n.startswith(prefix)]
        if os.path.exists("/sys/class/net/ksim-" + self.name):
            left.append("interface ksim-" + self.name)
        if os.path.isdir("/etc/netns"):
            left += ["/etc/netns/" + d for d in os.listdir("/etc/netns") if d.startswith(prefix)]
        with open("/proc/self/mountinfo") as f:
            mounts = f.read()
        for d in (self.run_dir, self.data_dir, "/run/netns/" + prefix):
            if d in mounts:
                left.append("mount under " + d)
        for ref in self.refs:
            if proc_alive(ref):
                left.append("process %d" % ref["pid"])
        return sorted(set(left))


class Watch:
    """The pods' events from now on, in their order, each as (event, pod, ready): the
    watch kubectl get po --watch-only makes, asked of the API server directly from the
    resourceVersion of a list, so that nothing after it is missed (kubectl's own watch
    starts from a list of its own, which may come after the test's next step)."""

    def __init__(self, sim):
        # the list's own resourceVersion (kubectl get prints a List of its own, without)
        rv = json.loads(sim.kubectl("get", "--raw", "/api/v1/namespaces/%s/pods"
                                    % sim.ns).stdout)["metadata"]["resourceVersion"]
        assert rv, "no resourceVersion to watch from"
        self.conn = http.client.HTTPConnection("127.0.0.1", sim.api_port, timeout=300)
        self.conn.request("GET", "/api/v1/namespaces/%s/pods?watch=true&resourceVersion=%s"
                          % (sim.ns, rv))
        self.r = self.conn.getresponse()
        assert self.r.status == 200, self.r.status
        self.out = []
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            for line in self.r:
                e = json.loads(line)
                o = e["object"]
                ready = [c["status"] for c in o["status"].get("conditions") or []
                         if c["type"] == "Ready"]
                self.out.append((e["type"], o["metadata"]["name"]) + tuple(ready))

    def events(self):
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.t.join(10)
        self.conn.close()
        return list(self.out)


def first(events, want, start=0):
    """The index of the first event from start on that begins with want."""
    return next(i for i, e in enumerate(events) if i >= start and e[:len(want)] == want)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_state(sim):
    return read_json(os.path.join(sim.run_dir, sim.name, "state.json"))


def proc_alive(ref):
    try:
        with open("/proc/%d/stat" % ref["pid"]) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and fields[19] == ref.get("start")


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    try:
        yield s
    finally:
        s.remember()
        r = s.cli("down", "--delete-volumes", check=False)
        left = s.leftovers()
        reports = s.sanitizer_reports()  # written as the pods exit
        shutil.rmtree(str(tmp_path), ignore_errors=True)
        assert r.returncode == 0, r.stderr
        assert left == [], "left behind: %s" % left
        assert reports == [], "\n".join(reports)


def lines_of(text, pattern):
    return [m for m in (re.search(pattern, line) for line in text.splitlines()) if m]


def image_available():
    """The image suite builds the image; without it the container variants skip."""
    if not os.access("/usr/bin/podman", os.X_OK):
        return False
    return subprocess.run(["podman", "--runtime", "runc", "image", "exists", IMAGE],
                          capture_output=True).returncode == 0
