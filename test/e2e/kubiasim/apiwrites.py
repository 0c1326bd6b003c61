"""The API server's writes and subresources: create, replace, patch (strategic merge,
merge, JSON, server-side apply), delete (graceful and forced), the StatefulSet's scale,
a node's cordon, evictions under the PodDisruptionBudget, pods' logs; and the
StatefulSet controller's thread.

Each write takes the cluster's lock and goes through kubia-sim's own code (the same as
its commands'): a StatefulSet's manifest is read as `up` and `rollout -f` read one
(templates.py), a deleted pod is stopped by controller.py. Work that takes time (a
pod's graceful stop, creating pods) continues after the answer, in a thread that keeps
the lock, as the real API server answers before the kubelet and the controller act.
"""

import contextlib
import copy
import json
import os
import threading
import time

import argparse

from . import apifields, smp
from .apiseed import LOOSE_FILE
from .apiobjects import (STORED, api_state, default_object, pod_uid, public, statefulset,
                         ts, uid_of)
from .controller import converge, wanted
from .endpoints import publish
from .pod_commands import delete_claims, forget_pod
from .controller import delete_pod
from .rollout import record_revision, roll_out
from .state import STS, Cluster, revision_of
from .templates import controller_of, read_manifest, template_of
from .util import SimError, read_json, write_atomic

PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")
LOCK_WAIT_S = 300


def api_error(*a, **kw):
    from .apiserver import ApiError
    return ApiError(*a, **kw)


def invalid(kind, name, field, value, why, reason="FieldValueInvalid"):
    """422 Invalid as the API server words it (kubectl prints it from the details:
    'The StatefulSet "kubia" is invalid: spec.replicas: Invalid value: ...')."""
    what = "Invalid value: %s: %s" % (json.dumps(value), why) if reason == \
        "FieldValueInvalid" else why
    kind_name, _, group = kind.partition(".")
    return api_error(422, "Invalid", '%s "%s" is invalid: %s: %s' % (kind, name, field, what),
                     {"name": name, "group": group, "kind": kind_name,
                      "causes": [{"reason": reason, "message": what, "field": field}]})


class Request:
    def __init__(self, api, h, method, group, spec, ns, name, sub, rest, query, body):
        self.api, self.h, self.method, self.group, self.spec = api, h, method, group, spec
        self.resource, self.kind = spec[2], spec[3]
        self.ns, self.name, self.sub, self.rest = ns, name, sub, rest
        self.query, self.body = query, body

    @property
    def qualified(self):
        return self.resource + ("." + self.group if self.group else "")

    def cluster(self):
        c = self.api.c
        return Cluster(c.name, os.path.dirname(c.run),
                       os.path.dirname(os.path.dirname(c.volumes)), c.launcher)

    def payload(self):
        ctype = (self.h.headers.get("Content-Type") or "application/json").split(";")[0]
        if ctype not in PATCH_TYPES + ("application/json", "application/yaml"):
            # kubectl 1.32+ sends its typed clients' bodies (create namespace, ...) as
            # protobuf, which this server does not decode
            raise api_error(415, "UnsupportedMediaType", "the body of the request was in "
                            "an unknown format - accepted media types include: "
                            "application/json, application/yaml")
        text = (self.body or b"").decode("utf-8", "replace")
        try:
            if ctype == "application/apply-patch+yaml" or ctype.endswith("yaml"):
                import yaml
                return ctype, yaml.safe_load(text)
            return ctype, json.loads(text) if text.strip() else None
        except ValueError as e:
            raise api_error(400, "BadRequest", "the body of the request could not be "
                            "decoded: %s" % e)

    def not_found(self, name=None):
        from .apiserver import not_found
        return not_found(self.resource, name or self.name, self.group)

    def check_namespace(self, st):
        if self.ns is not None and self.ns != st["namespace"]:
            raise api_error(404, "NotFound", 'namespaces "%s" not found' % self.ns,
                            {"name": self.ns, "kind": "namespaces"})


@contextlib.contextmanager
def writing(req):
    """The cluster under its lock, for a write (a new Cluster: the store's is the
    readers'). From the first write through the API on, the API's controller keeps the
    StatefulSet converged; before it, kubia-sim's commands converge it themselves (and
    a scale-down that stopped on an unhealthy pod stays stopped until the next one)."""
    c = req.cluster()
    with c.locked():
        if c.st is not None:
            api_state(c.st)["controller"] = True
        yield c


def key_of(st, resource, ns, name):
    return "%s/%s/%s" % (resource, ns or "", name)


def answer(req, code, key, timeout=10.0, deleted=False):
    """Answers with the object as the store renders it once the write is visible."""
    api = req.api
    ns = req.ns or ""
    name = key

    def visible(store):
        o = (store.objects.get((req.group, req.resource)) or {}).get((ns, name))
        return o is None if deleted else o is not None
    api.wait_rendered(visible, timeout)
    o = api.store.get(req.group, req.resource, ns, name)
    if o is None:
        return req.h.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success", "details": {
                                         "name": name, "group": req.group,
                                         "kind": req.resource}})
    return req.h.send_json(code, public(o))


def write(req):
    if req.method == "POST" and req.name is None:
        return create(req)
    if req.name is None:
        raise api_error(405, "MethodNotAllowed", "kubia-sim does not implement %s of a "
                        "collection of %s" % (req.method, req.qualified))
    if req.method == "DELETE":
        return delete(req)
    if req.method in ("PATCH", "PUT"):
        return update(req)
    raise api_error(405, "MethodNotAllowed", "the server does not allow this method on "
                    "the requested resource")


# create ------------------------------------------------------------------------------
def create(req, obj=None):
    if obj is None:
        _, obj = req.payload()
    if not isinstance(obj, dict):
        raise api_error(400, "BadRequest", "the body is not an object")
    if req.resource == "pods":
        if "dryRun" in req.query:
            return req.h.send_json(201, public(req.api.runs.create(req, obj, dry=True)))
        rp = req.api.runs.create(req, obj)
        return req.h.send_json(201, public(rp.render()))
    if req.resource not in STORED:
        raise api_error(405, "MethodNotAllowed", "kubia-sim does not create %s: its "
                        "StatefulSet's controller makes them" % req.qualified
                        if req.resource in ("pods", "persistentvolumeclaims") else
                        "kubia-sim does not create %s" % req.qualified)
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise api_error(422, "Invalid", "%s.%s \"\" is invalid: metadata.name: Required "
                        "value: name or generateName is required" % (
                            req.kind, req.group or "core"))
    dry = "dryRun" in req.query
    if req.resource in LOOSE:
        return create_loose(req, obj, name, dry)
    with writing(req) as c:
        st = c.require_up()
        req.check_namespace(st)
        objects = api_state(st).setdefault("objects", {})
        key = key_of(st, req.resource, req.ns, name)
        if key in objects:
            raise already_exists(req, name)
        obj = fresh_object(req, c, obj, name)
        if req.resource == "statefulsets":
            check_sts(obj)
            if dry:
                return req.h.send_json(201, obj)
            set_statefulset(c, obj, None)
        else:
            if dry:
                return req.h.send_json(201, obj)
        objects[key] = obj
        c.save()
    req.api.controller.wake.set()
    return answer(req, 201, name)


def already_exists(req, name):
    return api_error(409, "AlreadyExists", '%s "%s" already exists' % (req.qualified, name),
                     {"name": name, "group": req.group, "kind": req.resource})


def fresh_object(req, c, given, name):
    """obj as the API server stores it when created: its metadata set, defaults filled,
    its creator the manager of its fields."""
    obj = copy.deepcopy(given)
    obj["apiVersion"], obj["kind"] = req.spec[1] if not req.group else \
        "%s/%s" % (req.group, req.spec[1]), req.kind
    m = obj.setdefault("metadata", {})
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation",
              "managedFields", "selfLink"):
        m.pop(k, None)
    if req.ns is not None:
        m["namespace"] = req.ns
    now = time.time()
    m["uid"] = uid_of(c.name, req.resource, name, now)
    m["creationTimestamp"] = ts(now)
    if req.resource in ("statefulsets", "poddisruptionbudgets", "networkpolicies"):
        m["generation"] = 1
    obj = default_object(req.resource, obj, c)
    if applying(req):
        m["managedFields"] = apifields.created(obj, apifields.manager_of(req), "Apply", given)
    else:
        m["managedFields"] = apifields.created(obj, apifields.manager_of(req), "Update")
    return obj


def applying(req):
    """True for a server-side apply."""
    return (req.h.headers.get("Content-Type") or "").split(";")[0] == \
        "application/apply-patch+yaml"


def managed(req, current, new):
    """new's managed fields after this write of current (409 on an apply's conflict)."""
    manager = apifields.manager_of(req)
    try:
        if applying(req):
            config = req.payload()[1] or {}
            return apifields.applied(current, new, config, manager,
                                     req.query.get("force") in ("true", "1"))
        return apifields.updated(current, new, manager)
    except apifields.Conflict as e:
        raise api_error(409, "Conflict", e.message(), {"causes": e.causes()})


# objects no controller reads ---------------------------------------------------------
# PodDisruptionBudgets (read only by the API's evictions), NetworkPolicies (nothing
# enforces them here), StorageClasses and hand-made PersistentVolumes (the claims'
# volumes are provisioned): kept in a file of the API server's own, so that writing
# them never waits for the cluster's lock, which the StatefulSet controller holds while
# it brings pods up one by one (`kubectl apply -k` creates the budget after the
# StatefulSet). The objects `up -f` seeded stay in the state and are written there.
LOOSE = {"poddisruptionbudgets", "networkpolicies", "storageclasses", "persistentvolumes"}
LOOSE_LOCK = threading.Lock()


def loose_path(c):
    return os.path.join(c.run, LOOSE_FILE)


def loose_objects(c):
    return read_json(loose_path(c)) or {}


def seeded(req, key):
    """True when key is an object of the state (seeded by up -f)."""
    st = read_json(req.api.c.statefile) or {}
    return key in ((st.get("api") or {}).get("objects") or {})


def loose_write(req, change):
    """Runs change(objects, st) on the API server's own objects under their lock and
    stores the result."""
    c = req.api.c
    st = read_json(c.statefile)
    if st is None:
        raise api_error(503, "ServiceUnavailable", "the cluster is not up")
    req.check_namespace(st)
    with LOOSE_LOCK:
        objects = loose_objects(c)
        out = change(objects, st)
        write_atomic(loose_path(c), json.dumps(objects, sort_keys=True))
    return out


def create_loose(req, obj, name, dry):
    c = req.api.c

    def add(objects, st):
        key = key_of(st, req.resource, req.ns, name)
        if key in objects or key in (api_state(st).get("objects") or {}):
            raise already_exists(req, name)
        fresh = fresh_object(req, c, obj, name)
        if not dry:
            objects[key] = fresh
        return fresh
    fresh = loose_write(req, add)
    if dry:
        return req.h.send_json(201, fresh)
    return answer(req, 201, name)


# the StatefulSet ---------------------------------------------------------------------
IMMUTABLE = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")


def check_sts(obj):
    name = obj["metadata"]["name"]
    if name != STS:
        raise invalid("StatefulSet.apps", name, "metadata.name", name,
                      "kubia-sim plays the chapter's StatefulSet, %s" % STS)
    r = obj["spec"].get("replicas")
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise invalid("StatefulSet.apps", name, "spec.replicas", r,
                      "must be greater than or equal to 0")


def undefaulted(obj):
    """The StatefulSet without the API server's defaults of the pod template that
    kubia-sim's reader of manifests takes as fields it does not honour."""
    obj = copy.deepcopy(obj)
    spec = obj["spec"]["template"].setdefault("spec", {})
    for k, v in (("dnsPolicy", "ClusterFirst"), ("schedulerName", "default-scheduler"),
                 ("securityContext", {}), ("restartPolicy", "Always")):
        if spec.get(k) == v:
            del spec[k]
    for ct in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for k, v in (("terminationMessagePath", "/dev/termination-log"),
                     ("terminationMessagePolicy", "File"), ("resources", {})):
            if ct.get(k) == v:
                del ct[k]
    obj.pop("status", None)
    return obj


def settings_of(c, obj):
    """(source, settings) of a StatefulSet object, read as `up -f` reads a manifest, with
    the Services created so far."""
    st = c.st
    docs = [o for k, o in sorted((api_state(st).get("objects") or {}).items())
            if k.startswith("services/")] + [undefaulted(obj)]
    path = os.path.join(c.run, "api-statefulset.yaml")
    write_atomic(path, "\n---\n".join(json.dumps(d) for d in docs) + "\n")
    return read_manifest(path)


def overrides(st):
    """What `up` was told to give every pod (--env, --arg, --grace-period), for a
    template that comes through the API."""
    o = api_state(st).get("overrides") or {}
    return argparse.Namespace(mode=None, env=o.get("env"), arg=o.get("arg"),
                              grace_period=o.get("grace_period"), image=o.get("image"),
                              user=o.get("user"))


def set_statefulset(c, obj, old):
    """Makes obj the StatefulSet (old: the one it replaces, None for a new one): its
    template becomes the update revision, its spec the controller's settings."""
    st = c.st
    name = obj["metadata"]["name"]
    if old is not None:
        for f in IMMUTABLE:
            if json.dumps(old["spec"].get(f), sort_keys=True) != json.dumps(
                    obj["spec"].get(f), sort_keys=True):
                raise invalid("StatefulSet.apps", name, "spec", None,
                              "Forbidden: updates to statefulset spec for fields other than "
                              "'replicas', 'ordinals', 'template', 'updateStrategy', "
                              "'persistentVolumeClaimRetentionPolicy' and "
                              "'minReadySeconds' are forbidden", "FieldValueForbidden")
    try:
        source, s = settings_of(c, obj)
        ctl = controller_of(source, s)
        cur = st["templates"][st["update_revision"]]
        base = {k: cur[k] for k in ("runtime", "binary") if k in cur}
        template = template_of(source, s, base, overrides(st))
        from .commands import check_ordinals
        check_ordinals(s["replicas"], ctl["ordinals_start"])
    except SimError as e:
        why = str(e).replace("-f %s: " % os.path.join(c.run, "api-statefulset.yaml"), "")
        raise invalid("StatefulSet.apps", name, "spec", None,
                      "Unsupported: kubia-sim: %s" % why, "FieldValueNotSupported")
    rev = revision_of(template)
    api = api_state(st)
    partition = ctl.pop("partition")
    st["controller"] = ctl
    st["partition"] = partition
    st["replicas"] = s["replicas"]
    api.setdefault("revision_templates", {})[rev] = copy.deepcopy(obj["spec"]["template"])
    numbers = api.setdefault("revision_numbers", {})
    created = api.setdefault("revision_created", {})
    if rev != st["update_revision"] or old is None or rev not in numbers:
        numbers[rev] = max(numbers.values() or [0]) + 1
        created[rev] = time.time()
    if old is None and not st["pods"]:
        # a new StatefulSet: its first revision is current and update revision at once
        st["templates"] = {rev: template}
        st["history"] = [rev]
        st["current_revision"] = st["update_revision"] = rev
        for r in list(api["revision_templates"]):
            if r != rev:
                del api["revision_templates"][r]
        api["revision_numbers"] = {rev: 1}
    elif rev != st["update_revision"]:
        record_revision(c, rev, template)
    st["source"] = "the API (kubectl)"
    if old is not None and json.dumps(old["spec"], sort_keys=True) != json.dumps(
            obj["spec"], sort_keys=True):
        obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
    c.save()


def update_statefulset(req, c, new):
    st = c.st
    objects = api_state(st).setdefault("objects", {})
    key = key_of(st, "statefulsets", st["namespace"], STS)
    old = objects.get(key)
    if old is None:
        raise req.not_found()
    new = copy.deepcopy(new)
    new["status"] = old.get("status", {})
    for k in ("uid", "creationTimestamp", "generation", "namespace", "name"):
        if k in old["metadata"]:
            new.setdefault("metadata", {})[k] = old["metadata"][k]
    new["metadata"].pop("resourceVersion", None)
    default_object("statefulsets", new, c)
    check_sts(new)
    old_live = copy.deepcopy(old)
    old_live["spec"]["replicas"] = st["replicas"]
    set_statefulset(c, new, old_live)
    objects[key] = new
    c.save()


# updates -----------------------------------------------------------------------------
def patched(req, current):
    """current with the request's patch (or replacement) applied."""
    ctype, body = req.payload()
    base = public(copy.deepcopy(current))
    try:
        if req.method == "PUT":
            return ctype, body
        if ctype == "application/strategic-merge-patch+json":
            return ctype, smp.strategic(base, body or {})
        if ctype == "application/merge-patch+json":
            return ctype, smp.merge(base, body or {})
        if ctype == "application/json-patch+json":
            return ctype, smp.json_patch(base, body or [])
        if ctype == "application/apply-patch+yaml":
            return ctype, smp.strategic(base, body or {})
    except smp.PatchError as e:
        raise api_error(422, "Invalid", "%s \"%s\" is invalid: %s" % (
            req.qualified, req.name, e))
    raise api_error(415, "UnsupportedMediaType", "the body of the request was in an "
                    "unknown format - accepted media types include: %s" % ", ".join(
                        PATCH_TYPES))


def update(req):
    ns = req.ns or ""
    current = req.api.store.get(req.group, req.resource, ns, req.name)
    ctype = (req.h.headers.get("Content-Type") or "").split(";")[0]
    if current is None:
        if ctype == "application/apply-patch+yaml" or req.method == "PUT" and \
                req.resource in STORED:
            _, obj = req.payload()
            return create(req, obj)
        raise req.not_found()
    _, new = patched(req, current)
    if not isinstance(new, dict):
        raise api_error(400, "BadRequest", "the patched object is not an object")
    if req.resource == "nodes":
        return cordon(req, new)
    if req.resource not in STORED:
        raise api_error(405, "MethodNotAllowed", "kubia-sim does not change %s (its "
                        "controller and kubelets do)" % req.qualified)
    new.setdefault("metadata", {})["managedFields"] = managed(req, current, new)
    if req.resource in LOOSE and not seeded(req, key_of(None, req.resource, req.ns,
                                                        req.name)):
        loose_write(req, lambda objects, st: replace_object(req, objects, new))
        req.api.wait_rendered(lambda store: True)
        return req.h.send_json(200, public(req.api.store.get(req.group, req.resource, ns,
                                                             req.name)))
    with writing(req) as c:
        st = c.require_up()
        req.check_namespace(st)
        if req.resource == "statefulsets":
            update_statefulset(req, c, new)
        else:
            replace_object(req, api_state(st).setdefault("objects", {}), new)
            c.save()
    req.api.controller.wake.set()
    req.api.wait_rendered(lambda store: True)
    return req.h.send_json(200, public(req.api.store.get(req.group, req.resource, ns,
                                                         req.name)))


def replace_object(req, objects, new):
    """new in place of the stored object, with what the API server keeps of the old."""
    key = key_of(None, req.resource, req.ns, req.name)
    old = objects.get(key)
    if old is None:
        raise req.not_found()
    for k in ("uid", "creationTimestamp", "generation", "namespace", "name"):
        if k in old["metadata"]:
            new.setdefault("metadata", {})[k] = old["metadata"][k]
    new["metadata"].pop("resourceVersion", None)
    if "spec" in old and old.get("spec") != new.get("spec") and \
            "generation" in old["metadata"]:
        new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    objects[key] = default_object(req.resource, new, req.api.c)


def cordon(req, new):
    unschedulable = bool((new.get("spec") or {}).get("unschedulable"))
    with writing(req) as c:
        st = c.require_up()
        if req.name not in st["nodes"]:
            raise req.not_found()
        st["nodes"][req.name]["unschedulable"] = unschedulable
        c.save()
    req.api.controller.wake.set()
    req.api.wait_rendered(lambda store: bool(
        (store.get_unlocked("", "nodes", "", req.name) or {}).get("spec", {}).get(
            "unschedulable")) == unschedulable)
    return req.h.send_json(200, public(req.api.store.get("", "nodes", "", req.name)))


# delete ------------------------------------------------------------------------------
def in_background(req, first, then=None):
    """Runs first(c) and then then(c, result) under the cluster's lock in a thread of
    its own; returns first's result as soon as it has run (then goes on)."""
    done, out = threading.Event(), {}

    def work():
        try:
            with writing(req) as c:
                c.require_up()
                out["r"] = first(c)
                done.set()
                if then is not None:
                    then(c, out["r"])
        except Exception as e:  # noqa: BLE001 - handed to the request, or logged
            if not done.is_set():
                out["e"] = e
                done.set()
            else:
                print("kubia-sim apiserver: %s" % e, flush=True)
        finally:
            done.set()
            req.api.controller.wake.set()
    threading.Thread(target=work, daemon=True).start()
    if not done.wait(LOCK_WAIT_S):
        raise api_error(504, "Timeout", "the cluster's lock was held too long")
    if "e" in out:
        raise out["e"]
    return out.get("r")


def grace_of(req):
    grace = req.query.get("gracePeriodSeconds")
    try:
        _, body = req.payload()
    except Exception:  # noqa: BLE001 - a DeleteOptions body that is not JSON is ignored
        body = None
    if isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
        grace = body["gracePeriodSeconds"]
    return None if grace is None else int(grace)


def delete(req):
    if req.resource == "pods":
        rp = req.api.runs.delete(req.ns, req.name)
        if rp is not None:
            return req.h.send_json(200, public(rp.render()))
        return delete_pod_api(req, req.name, grace_of(req) == 0)
    if req.resource == "persistentvolumeclaims":
        def claims(c):
            try:
                delete_claims(c, argparse.Namespace(names=[req.name], all=False))
            except SimError as e:
                if "not found" in str(e):
                    raise req.not_found()
                raise api_error(409, "Conflict", str(e))
        current = req.api.store.get("", "persistentvolumeclaims", req.ns, req.name)
        in_background(req, claims)
        req.api.wait_rendered(lambda s: s.get_unlocked(
            "", "persistentvolumeclaims", req.ns, req.name) is None)
        return req.h.send_json(200, public(current) if current else {})
    if req.resource not in STORED:
        raise api_error(405, "MethodNotAllowed", "kubia-sim does not delete %s"
                        % req.qualified)
    current = req.api.store.get(req.group, req.resource, req.ns or "", req.name)
    key = key_of(None, req.resource, req.ns, req.name)
    if req.resource in LOOSE and not seeded(req, key):
        def drop(objects, st):
            if objects.pop(key, None) is None:
                raise req.not_found()
        loose_write(req, drop)
    else:
        in_background(req, lambda c: remove(req, c))
    req.api.wait_rendered(lambda s: s.get_unlocked(
        req.group, req.resource, req.ns or "", req.name) is None)
    return req.h.send_json(200, public(current) if current else {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


def remove(req, c):
    """Deletes a stored object of the state."""
    st = c.st
    req.check_namespace(st)
    objects = api_state(st).setdefault("objects", {})
    key = key_of(st, req.resource, req.ns, req.name)
    if key not in objects:
        raise req.not_found()
    del objects[key]
    if req.resource == "statefulsets":
        st["replicas"] = 0  # the garbage collector deletes its pods
    c.save()


def delete_pod_api(req, name, force):
    """A graceful deletion marks the pod (deletionTimestamp: Terminating) and answers;
    its kubelet then stops it and it goes (DELETED), and the controller recreates it.
    A forced one forgets it at once; its process may run on where its node is cut off."""
    store = req.api.store

    def mark(c):
        st = c.st
        req.check_namespace(st)
        p = st["pods"].get(name)
        if p is None:
            raise req.not_found()
        uid = pod_uid(c, st, p["netns"])
        if force:
            forget_pod(c, name)
            return uid
        if st["nodes"][p["node"]]["cut"]:
            # only its kubelet, which does not hear of it, could confirm that it stopped:
            # it stays Terminating until its node is back or it is deleted with --force
            if not p.get("terminating"):
                p.update(terminating=True, deleted_at=time.time())
                c.save()
            return None
        deleting = api_state(st).setdefault("deleting", {})
        if deleting.get(name, {}).get("uid") != uid:
            deleting[name] = {"uid": uid, "at": time.time()}
        c.save()
        return uid

    def stop(c, uid):
        if uid is None:
            return
        if not force:
            try:
                delete_pod(c, name)
            finally:
                api_state(c.st).get("deleting", {}).pop(name, None)
                c.save()
        publish(c)

    uid = in_background(req, mark, stop)
    if force:
        current = None
        req.api.wait_rendered(lambda s: (s.get_unlocked("", "pods", req.ns, name) or {
            "metadata": {}})["metadata"].get("uid") != uid)
        current = {"kind": "Pod", "apiVersion": "v1", "metadata": {
            "name": name, "namespace": req.ns, "uid": uid}}
        return req.h.send_json(200, current)
    req.api.wait_rendered(lambda s: "deletionTimestamp" in (
        s.get_unlocked("", "pods", req.ns, name) or {"metadata": {}})["metadata"])
    o = store.get("", "pods", req.ns, name)
    return req.h.send_json(200, public(o) if o else {"kind": "Pod", "apiVersion": "v1",
                                                     "metadata": {"name": name,
                                                                  "uid": uid}})


# subresources ------------------------------------------------------------------------
def subresource(req):
    if req.resource == "statefulsets" and req.sub == "scale":
        return scale(req)
    if req.resource == "statefulsets" and req.sub == "status":
        if req.method == "GET":
            return req.api.get(req)
        raise api_error(405, "MethodNotAllowed", "the status of the StatefulSet is its "
                        "controller's")
    if req.resource == "pods" and req.sub == "log":
        return logs(req)
    if req.resource == "pods" and req.sub in ("exec", "attach"):
        return remote_command(req)
    if req.resource == "pods" and req.sub == "eviction":
        return evict(req)
    if req.resource == "pods" and req.sub == "status" and req.method == "GET":
        return req.api.get(req)
    if req.sub == "proxy":
        return proxy_fallback(req)
    raise api_error(405, "MethodNotAllowed", "kubia-sim does not implement %s/%s"
                    % (req.qualified, req.sub))


def remote_command(req):
    """pods/<name>/exec and /attach: apipods.py."""
    from . import apipods
    return apipods.remote_command(req)


def scale_obj(req, sts):
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: sts["metadata"][k] for k in (
                "name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in sts["metadata"]},
            "spec": {"replicas": sts["spec"]["replicas"]},
            "status": {"replicas": sts["status"].get("replicas", 0),
                       "selector": ",".join("%s=%s" % kv for kv in sorted(
                           sts["spec"]["selector"].get("matchLabels", {}).items()))}}


def scale(req):
    sts = req.api.store.get("apps", "statefulsets", req.ns, req.name)
    if sts is None:
        raise req.not_found()
    if req.method == "GET":
        return req.h.send_json(200, scale_obj(req, sts))
    if req.method not in ("PATCH", "PUT"):
        raise api_error(405, "MethodNotAllowed", "the server does not allow this method")
    _, new = patched(req, scale_obj(req, sts))
    n = ((new or {}).get("spec") or {}).get("replicas")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise invalid("StatefulSet.apps", req.name, "spec.replicas", n,
                      "must be greater than or equal to 0")
    with writing(req) as c:
        st = c.require_up()
        from .commands import check_ordinals
        try:
            check_ordinals(n, st["controller"]["ordinals_start"])
        except SimError as e:
            raise invalid("StatefulSet.apps", req.name, "spec.replicas", n, str(e))
        obj = statefulset(st)
        if st["replicas"] != n and obj is not None:
            old = copy.deepcopy(obj)
            old["spec"]["replicas"] = st["replicas"]
            obj["spec"]["replicas"] = n
            obj["metadata"]["managedFields"] = apifields.updated(
                old, obj, apifields.manager_of(req), "scale")
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        st["replicas"] = n
        c.save()
    req.api.controller.wake.set()
    req.api.wait_rendered(lambda s: s.get_unlocked("apps", "statefulsets", req.ns,
                                                   req.name)["spec"]["replicas"] == n)
    return req.h.send_json(200, scale_obj(req, req.api.store.get(
        "apps", "statefulsets", req.ns, req.name)))


EVICTIONS = threading.Lock()  # one at a time: each counts the disruptions before it


def evict(req):
    """An eviction (kubectl drain, which sends them in parallel): refused with 429 while
    the PodDisruptionBudget allows no disruption, else a graceful deletion."""
    with EVICTIONS:
        return _evict(req)


def _evict(req):
    store = req.api.store
    store.refresh(force=True)
    pod = store.get("", "pods", req.ns, req.name)
    if pod is None:
        raise req.not_found()
    labels = pod["metadata"].get("labels") or {}
    pods, _ = store.list("", "pods")
    for (ns, _n), pdb in store.list("policy", "poddisruptionbudgets")[0]:
        sel = (pdb.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if ns != req.ns or not all(labels.get(k) == v for k, v in sel.items()):
            continue
        mine = [o for (ons, _), o in pods if ons == ns and all(
            (o["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        healthy = [o for o in mine if is_ready(o) and "deletionTimestamp" not in
                   o["metadata"]]
        st = store.st
        expected = st["replicas"] if st else len(mine)
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            desired = expected - int(spec["maxUnavailable"])
        else:
            desired = int(spec.get("minAvailable", 0))
        allowed = len(healthy) - desired
        if is_ready(pod) or spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            if allowed <= 0:
                raise api_error(429, "TooManyRequests", "Cannot evict pod as it would "
                                "violate the pod's disruption budget.", {"causes": [{
                                    "reason": "DisruptionBudget", "message":
                                    "The disruption budget %s needs %d healthy pods and "
                                    "has %d currently" % (pdb["metadata"]["name"], desired,
                                                          len(healthy))}]})
    ok = []

    class Quiet:
        headers = req.h.headers

        def send_json(self, code, obj):
            ok.append(obj)
    sub = Request(req.api, Quiet(), "DELETE", "", req.spec, req.ns, req.name, None, [],
                  {}, None)
    delete_pod_api(sub, req.name, False)
    return req.h.send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                 "status": "Success", "code": 201})


def is_ready(o):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in o["status"].get("conditions") or [])


def proxy_fallback(req):
    """Proxy paths nginx does not serve itself (other namespaces, other Services)."""
    if req.resource == "services":
        if req.api.store.get("", "services", req.ns, req.name.split(":")[0]) is None:
            raise req.not_found(req.name.split(":")[0])
        raise api_error(503, "ServiceUnavailable", 'no endpoints available for service '
                        '"%s"' % req.name.split(":")[0])
    if req.api.store.get(req.group, req.resource, req.ns or "",
                         req.name.split(":")[0]) is None:
        raise req.not_found(req.name.split(":")[0])
    raise api_error(503, "ServiceUnavailable", "kubia-sim proxies only its pods")


def logs(req):
    """GET pods/<name>/log: the log the pod's kubelet writes; follow=true streams it."""
    rp = req.api.runs.get(req.ns, req.name)
    if rp is not None:
        return req.h.send_raw(200, bytes(rp.log), "text/plain")
    st = req.api.store.st or {}
    p = (st.get("pods") or {}).get(req.name)
    if p is None or req.ns != st.get("namespace"):
        raise req.not_found()
    c = req.api.c
    path = os.path.join(c.run, "pods", p["netns"] + ".log")
    container = req.query.get("container")
    if container and container != STS:
        from .pod_init import init_log
        inits = [i["name"] for i in st["templates"].get(p["revision"], {}).get(
            "init_containers") or []]
        if container not in inits:
            raise api_error(400, "BadRequest", "container %s is not valid for pod %s"
                            % (container, req.name))
        path = init_log({"log": path}, container)
    if not os.path.exists(path):
        raise api_error(400, "BadRequest", 'container "%s" in pod "%s" is waiting to '
                        'start: ContainerCreating' % (container or STS, req.name))
    with open(path, "rb") as f:
        data = f.read()
    tail = req.query.get("tailLines")
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-int(tail):]) if int(tail) > 0 else b""
    if req.query.get("follow") not in ("true", "1"):
        return req.h.send_raw(200, data, "text/plain")
    h = req.h
    h.start_chunked("text/plain")
    h.chunk(data)
    pos = os.path.getsize(path)
    netns = p["netns"]
    while not req.api.stop.is_set():
        time.sleep(0.1)
        now = read_json(c.statefile) or {}
        cur = (now.get("pods") or {}).get(req.name)
        try:
            size = os.path.getsize(path)
        except OSError:
            break
        if size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                more = f.read(size - pos)
            pos = size
            h.chunk(more)
        if cur is None or cur["netns"] != netns:
            break
    h.end_chunked()
    h.close_connection = True


# the controller ----------------------------------------------------------------------
class Controller:
    """The StatefulSet controller of the API: converges in the background whenever the
    state asks for work (a pod missing or too many, a rolling update to make)."""

    def __init__(self, api):
        self.api = api
        self.wake = threading.Event()
        self.done_fp = None

    def work(self, st):
        """A fingerprint of the state when it asks for work, else None."""
        if not st or not st.get("controller") or not api_state(st).get("controller"):
            return None
        names = set(st["pods"])
        want = {"%s-%d" % (STS, o) for o in wanted(st)}
        pending = set(st.get("pending") or [])
        missing, extra = want - names, names - want
        start = st["controller"]["ordinals_start"]
        roll = st["controller"]["update_strategy"] == "RollingUpdate" and any(
            p["revision"] != st["update_revision"] and
            p["ordinal"] >= start + st["partition"] for p in st["pods"].values()
            if p["name"] in want)
        if not (missing or extra or roll):
            return None
        fp = json.dumps([st["replicas"], st["nodes"],
                         st["update_revision"], st["partition"], sorted(
                             (p["name"], p["revision"], p["netns"])
                             for p in st["pods"].values()), sorted(pending)],
                        sort_keys=True)
        if missing - pending or extra:
            return fp
        return fp if fp != self.done_fp else None

    def run(self):
        api = self.api
        while not api.stop.is_set():
            self.wake.wait(0.25)
            self.wake.clear()
            st = read_json(api.c.statefile)
            if st is None:
                return
            if self.work(st) is None:
                continue
            c = Cluster(api.c.name, os.path.dirname(api.c.run),
                        os.path.dirname(os.path.dirname(api.c.volumes)), api.c.launcher)
            try:
                with c.locked():
                    if c.st is None:
                        return
                    if self.work(c.st) is None:
                        continue
                    converge(c)
                    st = c.st
                    if any(p["revision"] != st["update_revision"]
                           for p in st["pods"].values()):
                        roll_out(c, st["update_revision"], st["partition"])
                    publish(c)
                    self.done_fp = self.work(c.st)
            except (SimError, OSError, KeyError) as e:
                print("kubia-sim apiserver: controller: %s" % e, flush=True)
                self.done_fp = None
                api.stop.wait(1.0)
