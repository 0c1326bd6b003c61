"""The API server's pods beyond the StatefulSet's, and its exec and attach.

exec and attach (pods/<name>/exec, /attach) go to remotecommand.serve(), which takes
the connection from the HTTP handler (nginx's front passes the WebSocket and SPDY
upgrades through). exec runs its command in the pod (pod_commands.pod_exec: nsenter,
or podman exec). attach to a kubia pod streams the container's output (its log, as
the kubelet writes it) from the moment of the attach; kubia reads no stdin, so an
attach asking for stdin is refused before the upgrade.

A bare pod created through the API (`kubectl run -it srvlookup --image=tutum/dnsutils
--rm --restart=Never -- dig SRV ...`, the chapter's section 10.4.1) is a throwaway
pod: its own network and UTS namespaces on the cluster's
bridge, the cluster's DNS as its resolver. Its image is not pulled: its command runs
from this machine's files (dig is the machine's own). It is kept in the API server's
memory only (gone when the server stops). With stdin asked for (kubectl run -i), its
command starts when the first attach comes (so the attach sees all it prints), or
RUN_START_S seconds after it was created; without, at once. It is Running while its
command runs, then Succeeded or Failed with its exit code; its output is its log.
"""

import contextlib
import copy
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.parse

from . import remotecommand
from .apiobjects import default_pod_spec, meta, ts, uid_of
from .channels import RemoteCommandError
from .network import pod_net_create, pod_net_delete
from .pod_commands import pod_exec
from .remotecommand import run_command
from .state import STS
from .util import read_json, tool

RUN_START_S = 30.0  # a pod asked to keep stdin open starts this long without an attach
MAX_RUN_PODS = 8    # throwaway pods at once (addresses .200 .. .207)
RUN_ADDR0 = 200


def api_error(*a, **kw):
    from .apiserver import ApiError
    return ApiError(*a, **kw)


def remote_command(req):
    """pods/<name>/exec and /attach: checks the pod, then hands the connection to
    remotecommand.serve (which answers the upgrade, or a Status)."""
    h = req.h
    if req.method not in ("GET", "POST"):
        raise api_error(405, "MethodNotAllowed", "the server does not allow this method "
                        "on the requested resource")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query,
                                  keep_blank_values=True)
    attach = req.sub == "attach"
    runs = req.api.runs
    rp = runs.get(req.ns, req.name)
    if rp is not None:
        if rp.phase != "Running" and not (attach and rp.phase == "Pending"):
            raise api_error(400, "BadRequest", "container %s is not running: pod %s is %s"
                            % (rp.name, rp.name, rp.phase))
        run = rp.attach if attach else lambda s: rp.exec(s)
    else:
        o = req.api.store.get("", "pods", req.ns, req.name)
        if o is None:
            raise req.not_found()
        container = (query.get("container") or [None])[-1]
        if container not in (None, STS):
            raise api_error(400, "BadRequest", "container %s is not valid for pod %s"
                            % (container, req.name))
        cs = (o["status"].get("containerStatuses") or [{}])[0]
        if "running" not in (cs.get("state") or {}):
            raise api_error(400, "BadRequest", 'container %s is not running in pod %s'
                            % (STS, req.name))
        st = req.api.store.st or {}
        p = (st.get("pods") or {}).get(req.name) or {}
        node = (st.get("nodes") or {}).get(p.get("node")) or {}
        if node.get("cut"):
            # the API server reaches the container through the node's kubelet
            raise api_error(500, "InternalError", "error dialing backend: dial tcp %s:10250: "
                            "connect: no route to host" % node.get("addr"))
        try:
            stdin = remotecommand.parse_bool("stdin", query.get("stdin", []))
        except RemoteCommandError as e:
            raise api_error(400, "BadRequest", str(e))
        if attach and stdin:
            raise api_error(400, "BadRequest", "kubia-sim: kubia reads no stdin: attach "
                            "to %s without -i (its output only)" % req.name)
        c = req.api.c
        if attach:
            def run(s):
                return attach_log(req.api, req.name, s)
        else:
            def run(s):
                return pod_exec(c, req.name, s)
    remotecommand.serve(h.connection, h.rfile, h.command, h.headers, query, run,
                        attach=attach)
    h.close_connection = True


def attach_log(api, name, session):
    """An attach to a kubia pod: its output as its kubelet logs it, from now until the
    pod's container ends or the client goes."""
    c = api.c
    st = read_json(c.statefile) or {}
    p = (st.get("pods") or {}).get(name)
    if p is None:
        raise RemoteCommandError('pods "%s" not found' % name)
    path = os.path.join(c.run, "pods", p["netns"] + ".log")
    out = session.stdout or session.stderr
    try:
        pos = os.path.getsize(path)
    except OSError:
        pos = 0
    while not session.gone.wait(0.1) and not api.stop.is_set():
        try:
            size = os.path.getsize(path)
        except OSError:
            break
        if size > pos and out is not None:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read(size - pos)
            pos += len(data)
            try:
                out.write(data)
            except ConnectionError:
                break
        now = (read_json(c.statefile) or {}).get("pods", {}).get(name)
        if now is None or now["netns"] != p["netns"]:
            break
    return 0


# throwaway pods ----------------------------------------------------------------------
class RunPod:
    """A bare pod run through the API: see the module's docstring."""

    def __init__(self, runs, obj, addr, netns, veth):
        self.runs, self.obj, self.addr, self.netns, self.veth = runs, obj, addr, netns, veth
        m = obj["metadata"]
        self.name, self.ns = m["name"], m["namespace"]
        ct = obj["spec"]["containers"][0]
        self.argv = list(ct.get("command") or []) + list(ct.get("args") or [])
        self.stdin = bool(ct.get("stdin"))
        self.tty = bool(ct.get("tty"))
        self.phase, self.exit_code = "Pending", None
        self.started = self.finished = None
        self.log = bytearray()
        self.attached = threading.Event()
        self.sessions = queue.Queue()  # the first attach's session, for the command
        self.done = threading.Event()
        self.deleted = False

    def render(self):
        o = copy.deepcopy(self.obj)
        ct = o["spec"]["containers"][0]
        cs = {"name": ct["name"], "image": ct.get("image", ""), "imageID": "",
              "ready": self.phase == "Running", "restartCount": 0,
              "started": self.phase == "Running", "lastState": {}}
        if self.phase == "Running":
            cs["state"] = {"running": {"startedAt": ts(self.started)}}
            cs["containerID"] = "kubia-sim://%s" % self.netns
        elif self.phase in ("Succeeded", "Failed"):
            cs["state"] = {"terminated": {
                "exitCode": self.exit_code, "startedAt": ts(self.started),
                "finishedAt": ts(self.finished),
                "reason": "Completed" if self.exit_code == 0 else "Error"}}
        else:
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        ready = "True" if self.phase == "Running" else "False"
        t0 = o["metadata"]["creationTimestamp"]
        o["status"] = {
            "phase": self.phase, "hostIP": self.runs.api.c.host_ip, "podIP": self.addr,
            "podIPs": [{"ip": self.addr}], "startTime": t0, "qosClass": "BestEffort",
            "containerStatuses": [cs], "conditions": [
                {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": t0}
                for t, s in (("Initialized", "True"), ("Ready", ready),
                             ("ContainersReady", ready), ("PodScheduled", "True"))]}
        o["_status"] = {"Pending": "ContainerCreating", "Succeeded": "Completed",
                        "Failed": "Error"}.get(self.phase, self.phase)
        return o

    def start(self):
        threading.Thread(target=self.main, daemon=True).start()

    def main(self):
        c = self.runs.api.c
        try:
            self.phase, self.started = "Running", time.time()
            self.runs.changed()
            session = None
            if self.stdin:
                try:
                    session = self.sessions.get(timeout=RUN_START_S)
                except queue.Empty:
                    session = None
            argv = [tool("ip"), "netns", "exec", self.netns, tool("unshare"), "--uts", "--",
                    "/bin/sh", "-c", 'hostname "$0"; exec "$@"', self.name] + self.argv
            if session is not None:
                code = run_command(argv, Tee(session, self.log))
                session.result = code
                session.ended.set()
            else:
                r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, check=False)
                self.log += r.stdout
                code = r.returncode
        except OSError as e:
            self.log += ("kubia-sim: %s\n" % e).encode()
            code = 127
        finally:
            pod_net_delete(c, self.netns, self.veth)
        self.exit_code = code
        self.finished = time.time()
        self.phase = "Succeeded" if code == 0 else "Failed"
        self.done.set()
        self.runs.changed()

    def attach(self, session):
        """The first attach is the command's stdin and output; a later one (or one
        after the command started without it) sees the output from then on."""
        if self.stdin and not self.attached.is_set() and self.phase in ("Pending",
                                                                         "Running"):
            self.attached.set()
            session.ended = threading.Event()
            session.result = None
            self.sessions.put(session)
            while not session.ended.wait(0.2):
                if session.gone.is_set() and self.done.is_set():
                    break
            return session.result if session.result is not None else 0
        pos = len(self.log)
        out = session.stdout or session.stderr
        while not self.done.wait(0.1) and not session.gone.is_set():
            if len(self.log) > pos and out is not None:
                data = bytes(self.log[pos:])
                pos += len(data)
                out.write(data)
        if out is not None and len(self.log) > pos:
            out.write(bytes(self.log[pos:]))
        return self.exit_code or 0

    def exec(self, session):
        raise RemoteCommandError("kubia-sim does not exec in the throwaway pod %s: its "
                                 "image is not there" % self.name)


class Tee:
    """A session whose output is also kept as the pod's log."""

    def __init__(self, session, log):
        self._s = session
        self.stdout = TeeBox(session.stdout, log) if session.stdout else None
        self.stderr = TeeBox(session.stderr, log) if session.stderr else None

    def __getattr__(self, name):
        return getattr(self._s, name)


class TeeBox:
    def __init__(self, box, log):
        self.box, self.log = box, log

    def write(self, data):
        self.log += data
        try:
            self.box.write(data)
        except ConnectionError:
            pass  # the client left: the command runs on, into its log


class RunPods:
    """The throwaway pods of the API server, rendered with the StatefulSet's."""

    def __init__(self, api):
        self.api = api
        self.pods = {}
        self.lock = threading.Lock()
        self.generation = 0

    def changed(self):
        with self.lock:
            self.generation += 1
        self.api.store.refresh(force=True)

    def get(self, ns, name):
        with self.lock:
            return self.pods.get((ns, name))

    def rendered(self):
        with self.lock:
            return self.generation, {k: rp.render() for k, rp in self.pods.items()}

    def create(self, req, obj, dry=False):
        """A new throwaway pod (dry: the object it would be, and nothing made)."""
        c = self.api.c
        st = self.api.store.st or {}
        m = obj.get("metadata") or {}
        name = m.get("name")
        ns = req.ns
        if ns != st.get("namespace"):
            raise api_error(404, "NotFound", 'namespaces "%s" not found' % ns,
                            {"name": ns, "kind": "namespaces"})
        if not name:
            raise api_error(422, "Invalid", 'Pod "" is invalid: metadata.name: Required '
                            'value: name or generateName is required')
        if name in (st.get("pods") or {}):
            raise api_error(409, "AlreadyExists", 'pods "%s" already exists' % name,
                            {"name": name, "kind": "pods"})
        if re.fullmatch(r"%s-[0-9]+" % STS, name):
            raise api_error(422, "Invalid", 'Pod "%s" is invalid: metadata.name: Invalid '
                            'value: "%s": kubia-sim keeps the names %s-N for the '
                            "StatefulSet's pods" % (name, name, STS))
        cts = (obj.get("spec") or {}).get("containers") or []
        if len(cts) != 1 or not (cts[0].get("command") or cts[0].get("args")):
            raise api_error(422, "Invalid", 'Pod "%s" is invalid: spec.containers: '
                            'Unsupported value: kubia-sim runs a bare pod of one container '
                            'with its command given (kubectl run NAME --image=... -- CMD)'
                            % name)
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = "v1", "Pod"
        m = obj.setdefault("metadata", {})
        for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            m.pop(k, None)
        now = time.time()
        obj["metadata"] = meta(name, ns, uid_of(c.name, "runpod", name, now), now,
                               m.get("labels"))
        spec = obj["spec"]
        default_pod_spec(spec)
        spec["nodeName"] = sorted((st.get("nodes") or {"kubia-sim": 0}))[0]
        if dry:
            return obj
        with self.lock:
            if (ns, name) in self.pods:
                raise api_error(409, "AlreadyExists", 'pods "%s" already exists' % name,
                                {"name": name, "kind": "pods"})
            used = {rp.addr for rp in self.pods.values()}
            free = [i for i in range(MAX_RUN_PODS)
                    if c.addr(RUN_ADDR0 + i) not in used]
            if not free:
                raise api_error(403, "Forbidden", "kubia-sim runs %d throwaway pods at "
                                "most: delete one" % MAX_RUN_PODS)
            i = free[0]
            rp = RunPod(self, obj, c.addr(RUN_ADDR0 + i), "%sapirun-%d" % (c.prefix, i),
                        "ar%d" % i)
            self.pods[(ns, name)] = rp
        try:
            c.st = st
            pod_net_create(c, rp.netns, rp.veth, rp.addr)
        except Exception:
            with self.lock:
                self.pods.pop((ns, name), None)
            pod_net_delete(c, rp.netns, rp.veth)
            raise
        rp.start()
        self.changed()
        return rp

    def delete(self, ns, name, refresh=True):
        with self.lock:
            rp = self.pods.pop((ns, name), None)
        if rp is None:
            return None
        rp.deleted = True
        if not rp.done.is_set():  # its command is killed; main() then removes its netns
            r = subprocess.run([tool("ip"), "netns", "pids", rp.netns], check=False,
                               capture_output=True, text=True)
            for pid in r.stdout.split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
        if refresh:
            self.changed()
        return rp

    def close(self):
        """The API server stops: its throwaway pods go with it."""
        with self.lock:
            keys = list(self.pods)
        for ns, name in keys:
            rp = self.delete(ns, name, refresh=False)
            if rp is not None and not rp.done.wait(5):
                pod_net_delete(self.api.c, rp.netns, rp.veth)
