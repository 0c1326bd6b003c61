"""The simulated cluster's Kubernetes API server, which the real kubectl talks to.

`kubia-sim _apiserver CLUSTER RUN DATA LAUNCHER` (started by `up`, stopped by `down`)
serves HTTP/1.1 on <run>/apiserver.sock; nginx (api_proxy.py) listens on the API port,
serves the pods' and Services' proxy paths itself and sends the rest here.

It keeps no model of its own: the objects are rendered from the state file
(apiobjects.py), read without the cluster's lock (it is written atomically), so that a
command holding the lock never keeps kubectl waiting. A thread re-renders the objects
when the state or a pod's status changes and turns the differences into watch events
with increasing resourceVersions (a pod recreated under its name is DELETED, then
ADDED with its new uid). Writes (apiwrites.py) take the lock in the request's thread;
the StatefulSet controller runs in a thread of its own, taking the lock while it has
work (pods to create or delete, a rolling update), so a create or a scale returns at
once and `kubectl get po -w` shows the pods come up one after the other.
"""

import http.server
import json
import os
import signal
import socketserver
import sys
import threading
import time
import traceback
import urllib.parse

from . import apiobjects, apipods, apitables, apiwrites
from .apiobjects import RESOURCES, Renderer, api_version, canonical, public
from .apiseed import LOOSE_FILE, SOCKET, WATCH_HISTORY
from .state import Cluster
from .util import read_json

POLL_S = 0.05
FULL_RENDER_S = 1.0  # ages and the node-lost grace change without any file changing
DEFAULT_VERSION = "1.33"
EVENT_TTL_S = 3600  # the API server's --event-ttl

DISCOVERY = {
    "v2": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "v2beta1": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
}
OPENAPI_V2_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


class ApiError(Exception):
    """An answer of the API server's other than success: a Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


def not_found(resource, name, group=""):
    return ApiError(404, "NotFound", '%s "%s" not found' % (
        resource + ("." + group if group else ""), name),
        {"name": name, "group": group, "kind": resource} if group else
        {"name": name, "kind": resource})


class Store:
    """The rendered objects, their resourceVersions and the log of changes."""

    def __init__(self, c, version):
        self.c = c
        self.version = version
        self.minor = int(version.split(".")[1])
        self.lock = threading.Condition()
        self.rv = 1
        self.objects = {}  # (group, resource) -> {(ns, name): obj}
        self.canon = {}    # (group, resource, ns, name) -> (uid, canonical json, rv)
        self.log = []      # (rv, group, resource, type, obj)
        self.first_rv = 1
        self.st = None
        self.fingerprint = None
        self.last_full = 0.0
        self.up = True
        self.seen = {}  # the claims' directories: when first seen
        self.events = {}  # every event rendered within EVENT_TTL_S, by (namespace, name)
        self.rendering = threading.Lock()
        self.extra_pods = None  # () -> (generation, {(ns, name): pod}): apipods' pods

    def files(self, st):
        fp = []
        for path in [self.c.statefile, os.path.join(self.c.run, LOOSE_FILE)] + [
                os.path.join(self.c.run, "pods", p["netns"] + ".status.json")
                for p in (st or {}).get("pods", {}).values()]:
            try:
                s = os.stat(path)
                fp.append((path, s.st_mtime_ns, s.st_size))
            except OSError:
                fp.append((path, None))
        if os.path.isdir(self.c.volumes):
            fp.append(tuple(sorted(os.listdir(self.c.volumes))))
        return fp

    def refresh(self, force=False):
        """Re-renders when anything it is rendered from has changed; returns False once
        the cluster is down. One rendering at a time: two, of states read one after the
        other, could otherwise be diffed in the wrong order and send a change back."""
        with self.rendering:
            return self._refresh(force)

    def _refresh(self, force):
        st = read_json(self.c.statefile)
        if st is None:
            return False
        fp = self.files(st)
        extra = self.extra_pods() if self.extra_pods else (0, {})
        fp.append(extra[0])
        now = time.monotonic()
        if not force and fp == self.fingerprint and now - self.last_full < FULL_RENDER_S:
            return True
        # the objects the API server keeps in a file of its own (apiwrites.LOOSE)
        loose = read_json(os.path.join(self.c.run, LOOSE_FILE)) or {}
        apiobjects.api_state(st).setdefault("objects", {}).update(loose)
        self.c.st = st
        try:
            r = Renderer(self.c, st, self.version, self.seen)
            objs = r.all()
            objs[("", "pods")].update(extra[1])
        except (KeyError, TypeError, ValueError, OSError) as e:
            # a state written by an older kubia-sim, or a moment between two files
            print("kubia-sim apiserver: render: %r" % e, file=sys.stderr, flush=True)
            return True
        with self.lock:
            self.fingerprint, self.last_full, self.st = fp, now, st
            objs[("", "events")] = self.remember_events(r, st, objs)
            self.diff(objs)
        return True

    def remember_events(self, r, st, objs):
        """The events rendered now and those rendered before, kept for EVENT_TTL_S as the
        API server keeps them (a pod's events outlive it), with the StatefulSet
        controller's SuccessfulDelete for each pod it removed (scale-down, rolling
        update): a pod gone whose ordinal is beyond the replicas or whose revision is not
        the update revision. A pod a user deleted gets the kubelet's Killing only."""
        pods = objs[("", "pods")]
        sts = objs[("apps", "statefulsets")]
        start = (st.get("controller") or {}).get("ordinals_start", 0)
        for key, old in (self.objects.get(("", "pods")) or {}).items():
            new = pods.get(key)
            if new is not None and new["metadata"]["uid"] == old["metadata"]["uid"]:
                continue
            owner = [o for o in old["metadata"].get("ownerReferences") or []
                     if o["kind"] == "StatefulSet"]
            labels = old["metadata"].get("labels") or {}
            if not owner or not sts:
                continue
            ordinal = int(labels.get("apps.kubernetes.io/pod-index", "0") or 0)
            if ordinal < start + st.get("replicas", 0) and labels.get(
                    "controller-revision-hash") == st.get("update_revision"):
                continue
            ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": owner[0]["name"],
                   "namespace": key[0], "uid": owner[0]["uid"]}
            ev = r.event(ref, "SuccessfulDelete", "delete Pod %s in StatefulSet %s "
                         "successful" % (key[1], owner[0]["name"]), "statefulset-controller",
                         time.time(), old["metadata"]["uid"])
            self.events[(key[0], ev["metadata"]["name"])] = ev
        self.events.update(objs[("", "events")])
        oldest = time.time() - EVENT_TTL_S
        for key, ev in list(self.events.items()):
            if apiobjects.parse_ts(ev["lastTimestamp"]) < oldest:
                del self.events[key]
        return dict(self.events)

    def diff(self, objs):
        seen = set()
        events = []
        for (g, res), items in objs.items():
            for (ns, name), o in items.items():
                key = (g, res, ns, name)
                seen.add(key)
                uid = o["metadata"].get("uid")
                canon = canonical(o)
                old = self.canon.get(key)
                if old is not None and old[0] == uid and old[1] == canon:
                    o["metadata"]["resourceVersion"] = str(old[2])
                    continue
                if old is not None and old[0] != uid:
                    events.append((g, res, "DELETED", self.objects[(g, res)][(ns, name)]))
                    old = None
                events.append((g, res, "ADDED" if old is None else "MODIFIED", o, key,
                               uid, canon))
        for key in list(self.canon):
            if key not in seen:
                g, res, ns, name = key
                events.append((g, res, "DELETED", self.objects[(g, res)][(ns, name)],
                               key))
        for ev in events:
            g, res, kind, o = ev[:4]
            self.rv += 1
            if kind == "DELETED":
                o = dict(o, metadata=dict(o["metadata"], resourceVersion=str(self.rv)))
                if len(ev) > 4:
                    del self.canon[ev[4]]
            else:
                o["metadata"]["resourceVersion"] = str(self.rv)
                self.canon[ev[4]] = (ev[5], ev[6], self.rv)
            self.log.append((self.rv, g, res, kind, o))
        keep = (self.st or {}).get("api", {}).get("watch_history") or WATCH_HISTORY
        if len(self.log) > keep:
            drop = len(self.log) - keep
            self.first_rv = self.log[drop][0]
            del self.log[:drop]
        self.objects = objs
        if events:
            self.lock.notify_all()

    def list(self, g, res):
        with self.lock:
            return list((self.objects.get((g, res)) or {}).items()), self.rv

    def get(self, g, res, ns, name):
        with self.lock:
            return (self.objects.get((g, res)) or {}).get((ns, name))

    get_unlocked = get  # the condition's lock is reentrant: for predicates holding it

    def run(self, stop):
        while not stop.is_set():
            try:
                if not self.refresh():
                    self.up = False
                    with self.lock:
                        self.lock.notify_all()
                    return
            except Exception:  # noqa: BLE001 - the server must outlive a bad moment
                traceback.print_exc()
            stop.wait(POLL_S)


# selectors ---------------------------------------------------------------------------
def field_value(o, path):
    v = o
    for part in path.split("."):
        if not isinstance(v, dict):
            return ""
        v = v.get(part)
    return "" if v is None else str(v)


def match_fields(o, sel):
    for term in filter(None, (sel or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if field_value(o, k) == v:
                return False
        else:
            k, v = term.replace("==", "=").split("=", 1)
            if field_value(o, k) != v:
                return False
    return True


def split_terms(sel):
    out, depth, cur = [], 0, ""
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [t.strip() for t in out if t.strip()]


def match_labels(o, sel):
    labels = o["metadata"].get("labels") or {}
    for term in split_terms(sel or ""):
        if " notin " in term or " in " in term:
            neg = " notin " in term
            k, vals = term.split(" notin " if neg else " in ", 1)
            vals = {v.strip() for v in vals.strip().strip("()").split(",")}
            has = labels.get(k.strip()) in vals
            if has == neg:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# discovery ---------------------------------------------------------------------------
def legacy_resources(group, version):
    out = []
    for g, v, res, kind, namespaced, short, cats, verbs, subs in RESOURCES:
        if g != group or v != version:
            continue
        r = {"name": res, "singularName": kind.lower(), "namespaced": namespaced,
             "kind": kind, "verbs": verbs}
        if short:
            r["shortNames"] = short
        if cats:
            r["categories"] = cats
        out.append(r)
        for sub, ((sg, sv, sk), sverbs) in sorted(subs.items()):
            s = {"name": "%s/%s" % (res, sub), "singularName": "", "namespaced": namespaced,
                 "kind": sk, "verbs": sverbs}
            if (sg, sv) != (g, v):
                s["group"], s["version"] = sg, sv
            out.append(s)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": api_version(group, version), "resources": out}


def aggregated(groups, which):
    items = []
    for group in groups:
        resources = []
        for g, v, res, kind, namespaced, short, cats, verbs, subs in RESOURCES:
            if g != group:
                continue
            r = {"resource": res, "responseKind": {"group": g, "version": v, "kind": kind},
                 "scope": "Namespaced" if namespaced else "Cluster",
                 "singularResource": kind.lower(), "verbs": verbs}
            if short:
                r["shortNames"] = short
            if cats:
                r["categories"] = cats
            if subs:
                r["subresources"] = [
                    {"subresource": sub, "responseKind": {"group": sg, "version": sv,
                                                          "kind": sk}, "verbs": sverbs}
                    for sub, ((sg, sv, sk), sverbs) in sorted(subs.items())]
            resources.append(r)
        items.append({"metadata": {"name": group, "creationTimestamp": None},
                      "versions": [{"version": "v1", "resources": resources,
                                    "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/" + which,
            "metadata": {}, "items": items}


def discovery_kind(accept):
    """v2 or v2beta1 when the client asks aggregated discovery first, else None."""
    for part in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "APIGroupDiscoveryList" and params.get("v") in DISCOVERY:
            return params["v"]
        if part.split(";")[0].strip() in ("application/json", "*/*") and not params:
            return None
    return None


def wants_table(accept):
    for part in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
        if part.split(";")[0].strip() == "application/json" and not params:
            return False
    return False


# the HTTP server ---------------------------------------------------------------------
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubia-sim-apiserver"
    api = None  # the ApiServer, set before serving

    def address_string(self):
        return self.headers.get("X-Real-IP", "local") if self.headers else "local"

    def log_message(self, fmt, *args):
        if os.environ.get("KUBIA_SIM_API_LOG"):
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            body = None
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                body = self.rfile.read(n)
            self.api.route(self, method, url.path, query, body)
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - every failure is answered as a Status
            traceback.print_exc()
            self.send_json(500, ApiError(500, "InternalError", "kubia-sim: %s: %s"
                                         % (type(e).__name__, e)).status())

    def send_json(self, code, obj, ctype="application/json"):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_raw(self, code, data, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class ApiServer:
    def __init__(self, c, version):
        self.c = c
        self.version = version
        self.store = Store(c, version)
        self.stop = threading.Event()
        self.controller = apiwrites.Controller(self)
        self.runs = apipods.RunPods(self)
        self.store.extra_pods = self.runs.rendered

    # routing -------------------------------------------------------------------------
    def route(self, h, method, path, query, body):
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if path == "/version":
            return h.send_json(200, self.version_info())
        if parts[:1] in (["healthz"], ["livez"], ["readyz"]):
            return h.send_raw(200, b"ok", "text/plain; charset=utf-8")
        if path == "/openapi/v2":
            # empty: kubectl then leaves validation to the server
            return h.send_raw(200, b"", OPENAPI_V2_TYPE)
        if parts[:1] == ["openapi"]:
            raise ApiError(404, "NotFound", "the server could not find the requested "
                           "resource")
        if parts == ["api"]:
            kind = discovery_kind(h.headers.get("Accept"))
            if kind:
                return h.send_json(200, aggregated([""], kind), DISCOVERY[kind])
            return h.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                     "serverAddressByClientCIDRs": [{
                                         "clientCIDR": "0.0.0.0/0",
                                         "serverAddress": "127.0.0.1:%d" % self.port()}]})
        if parts == ["apis"]:
            kind = discovery_kind(h.headers.get("Accept"))
            groups = [g for g in apiobjects.GROUPS if g]
            if kind:
                return h.send_json(200, aggregated(groups, kind), DISCOVERY[kind])
            return h.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": g + "/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": g + "/v1", "version": "v1"}}
                for g in groups]})
        if parts[:2] == ["api", "v1"]:
            return self.resource(h, method, "", parts[2:], query, body)
        if parts[:1] == ["apis"] and len(parts) >= 2:
            if parts[1] not in apiobjects.GROUPS:
                raise ApiError(404, "NotFound", "the server could not find the requested "
                               "resource")
            if len(parts) == 2:
                g = parts[1]
                return h.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g,
                                         "versions": [{"groupVersion": g + "/v1",
                                                       "version": "v1"}],
                                         "preferredVersion": {"groupVersion": g + "/v1",
                                                              "version": "v1"}})
            if parts[2] != "v1":
                raise ApiError(404, "NotFound", "the server could not find the requested "
                               "resource")
            return self.resource(h, method, parts[1], parts[3:], query, body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def port(self):
        st = self.store.st or {}
        return st.get("api_port", 0)

    def version_info(self):
        major, minor = self.version.split(".")
        return {"major": major, "minor": minor, "gitVersion": "v%s.0" % self.version,
                "gitCommit": "kubia-sim", "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64"}

    def resource(self, h, method, group, rest, query, body):
        if not rest:
            return h.send_json(200, legacy_resources(group, "v1"))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = rest[0]
        spec = apiobjects.BY_RESOURCE.get((group, res))
        if spec is None:
            raise ApiError(404, "NotFound", "the server could not find the requested "
                           "resource")
        namespaced = spec[4]
        if not namespaced and ns is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested "
                           "resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespaced and ns is None and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested "
                           "resource")
        req = apiwrites.Request(self, h, method, group, spec, ns, name, sub, rest[3:],
                                query, body)
        if sub is not None:
            return apiwrites.subresource(req)
        if method == "GET":
            if name is None:
                if query.get("watch") in ("true", "1"):
                    return self.watch(req)
                return self.list(req)
            return self.get(req)
        return apiwrites.write(req)

    # reads -----------------------------------------------------------------------
    def selected(self, req):
        g, res = req.group, req.resource
        items, rv = self.store.list(g, res)
        out = []
        for (ns, name), o in sorted(items, key=lambda kv: sort_key(kv[1])):
            if req.ns is not None and ns != req.ns:
                continue
            if not match_fields(o, req.query.get("fieldSelector")):
                continue
            if not match_labels(o, req.query.get("labelSelector")):
                continue
            out.append(o)
        return out, rv

    def list(self, req):
        objs, rv = self.selected(req)
        h = req.h
        if wants_table(h.headers.get("Accept")):
            return h.send_json(200, apitables.table(req.resource, objs, rv,
                                                    req.query.get("includeObject",
                                                                  "Metadata"),
                                                    self.store.minor))
        g, v, res, kind = req.spec[:4]
        return h.send_json(200, {"kind": kind + "List", "apiVersion": api_version(g, v),
                                 "metadata": {"resourceVersion": str(rv)},
                                 "items": [public(o) for o in objs]})

    def get(self, req):
        o = self.store.get(req.group, req.resource, req.ns or "", req.name)
        if o is None:
            raise not_found(req.resource, req.name, req.group)
        if wants_table(req.h.headers.get("Accept")):
            return req.h.send_json(200, apitables.table(
                req.resource, [o], o["metadata"]["resourceVersion"],
                req.query.get("includeObject", "Metadata"), self.store.minor))
        return req.h.send_json(200, public(o))

    def watch(self, req):
        h, store = req.h, self.store
        table = wants_table(h.headers.get("Accept"))
        include = req.query.get("includeObject", "Metadata")
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + min(timeout, 3600)
        bookmarks = req.query.get("allowWatchBookmarks") in ("true", "1")
        rv_text = req.query.get("resourceVersion") or "0"
        try:
            since = int(rv_text)
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid resourceVersion %r" % rv_text)

        def wanted(o):
            return (req.ns is None or o["metadata"].get("namespace", "") == req.ns) and \
                match_fields(o, req.query.get("fieldSelector")) and \
                match_labels(o, req.query.get("labelSelector"))

        def encode(kind, o):
            if table and kind != "BOOKMARK":
                o = apitables.table(req.resource, [o], o["metadata"]["resourceVersion"],
                                    include, store.minor)
            else:
                o = public(o)
            return (json.dumps({"type": kind, "object": o}) + "\n").encode()

        h.start_chunked("application/json")
        with store.lock:
            if since == 0:
                pending = [("ADDED", o) for _, o in sorted(
                    (store.objects.get((req.group, req.resource)) or {}).items())]
                since = store.rv
            elif since < store.first_rv - 1:
                status = ApiError(410, "Expired", "too old resource version: %d (%d)"
                                  % (since, store.first_rv)).status()
                h.chunk((json.dumps({"type": "ERROR", "object": status}) + "\n").encode())
                h.end_chunked()
                return
            else:
                pending = []
        last_bookmark = time.monotonic()
        g, v, res, kind = req.spec[:4]
        while True:
            for typ, o in pending:
                if wanted(o):
                    h.chunk(encode(typ, o))
            with store.lock:
                new = [(e[3], e[4]) for e in store.log if e[0] > since and
                       e[1] == req.group and e[2] == req.resource]
                top = store.rv
                if not new:
                    left = deadline - time.monotonic()
                    if left <= 0 or not store.up or self.stop.is_set():
                        break
                    store.lock.wait(min(left, 1.0))
                    new = [(e[3], e[4]) for e in store.log if e[0] > since and
                           e[1] == req.group and e[2] == req.resource]
                    top = store.rv
            since = top
            pending = new
            if bookmarks and time.monotonic() - last_bookmark > 30:
                last_bookmark = time.monotonic()
                h.chunk((json.dumps({"type": "BOOKMARK", "object": {
                    "kind": kind, "apiVersion": api_version(g, v),
                    "metadata": {"resourceVersion": str(top)}}}) + "\n").encode())
        h.end_chunked()
        h.close_connection = True

    def wait_rendered(self, pred, timeout=10.0):
        """Re-renders now and waits until pred(store) holds (a write's effect visible)."""
        deadline = time.monotonic() + timeout
        while True:
            self.store.refresh(force=True)
            with self.store.lock:
                if pred(self.store):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def sort_key(o):
    name = o["metadata"]["name"]
    if name.startswith("kubia-") and name[6:].isdigit():
        return (o["metadata"].get("namespace", ""), "kubia-", int(name[6:]))
    return (o["metadata"].get("namespace", ""), name, 0)


def apiserver_main(args):
    """`kubia-sim _apiserver CLUSTER RUN DATA LAUNCHER`: serves until SIGTERM or until the
    cluster is down."""
    name, run_root, data_root, launcher = args
    c = Cluster(name, run_root, data_root, launcher)
    st = read_json(c.statefile)
    if st is None:
        print("kubia-sim apiserver: cluster %s is not up" % name, file=sys.stderr)
        return 1
    version = (st.get("api") or {}).get("kubernetes_version") or DEFAULT_VERSION
    api = ApiServer(c, version)
    api.store.refresh(force=True)
    path = os.path.join(c.run, SOCKET)
    if os.path.exists(path):
        os.unlink(path)
    Handler.api = api
    srv = Server(path, Handler)
    os.chmod(path, 0o600)  # nginx's front runs its workers as root

    def on_term(*_):
        api.stop.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=api.store.run, args=(api.stop,), daemon=True).start()
    threading.Thread(target=api.controller.run, daemon=True).start()

    def watch_down():
        while not api.stop.is_set():
            if not api.store.up:
                on_term()
                return
            api.stop.wait(0.5)
    threading.Thread(target=watch_down, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        api.stop.set()
        api.runs.close()
        srv.server_close()
        if os.path.exists(path):
            os.unlink(path)
    return 0
