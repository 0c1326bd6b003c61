"""What `up` gives the API server to start with: the objects of the manifest it deployed
(Services, StatefulSet, PodDisruptionBudget, ...) as the API server would store them,
and the version it reports (none of them with `up --empty`)."""

import contextlib
import copy
import os
import re
import socket
import time

from . import manifests
from .apiobjects import default_object, ts, uid_of
from .state import PUBLIC, STS
from .util import SimError

KINDS = {"Service": "services", "StatefulSet": "statefulsets",
         "PodDisruptionBudget": "poddisruptionbudgets", "NetworkPolicy": "networkpolicies",
         "PersistentVolume": "persistentvolumes", "StorageClass": "storageclasses"}
SOCKET = "apiserver.sock"  # in the run directory; nginx sends the API to it
LOOSE_FILE = "api-objects.json"  # in the run directory: apiwrites.LOOSE's objects
WATCH_HISTORY = 20000  # changes kept for watches that resume
NAMESPACED = {"services", "statefulsets", "poddisruptionbudgets", "networkpolicies"}


def check_version(text):
    if not re.fullmatch(r"1\.\d{1,2}", text or ""):
        raise SimError("--kubernetes-version %r: give 1.MINOR, e.g. 1.33" % text)
    return text


def check_history(a):
    history = getattr(a, "api_watch_history", WATCH_HISTORY)
    if history < 1:
        raise SimError("--api-watch-history %d: 1 or more" % history)
    return history


def seed(c, a, source, template, version):
    st = c.st
    now = time.time()
    api = st.setdefault("api", {})
    history = check_history(a)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(c.run, LOOSE_FILE))  # a cluster that ended without down
    api.update(kubernetes_version=version, created=now, objects={}, controller=a.empty,
               watch_history=history,
               overrides={"env": a.env, "arg": a.arg, "grace_period": a.grace_period,
                          "image": getattr(a, "image", None),
                          "user": getattr(a, "user", None)})
    if a.empty:
        return
    try:
        docs = manifests.load(source)
        names = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs}
        for extra, name in ((manifests.HEADLESS_SERVICE, STS),
                            (os.path.join(manifests.BASE_DIR,
                                                    "kubia-service-public.yaml"), PUBLIC)):
            if ("Service", name) not in names:
                docs += [d for d in manifests.load(extra) if d.get("kind") == "Service"]
    except (manifests.ManifestError, OSError) as e:
        raise SimError("-f %s: %s" % (source, e))
    for d in docs:
        resource = KINDS.get(d.get("kind"))
        if resource is None:
            continue
        obj = copy.deepcopy(d)
        m = obj.setdefault("metadata", {})
        ns = st["namespace"] if resource in NAMESPACED else ""
        if ns:
            m["namespace"] = ns
        m["uid"] = uid_of(c.name, resource, m["name"], now)
        m["creationTimestamp"] = ts(now)
        if resource in ("statefulsets", "poddisruptionbudgets", "networkpolicies"):
            m["generation"] = 1
        default_object(resource, obj, c)
        if resource == "statefulsets":
            obj["spec"]["replicas"] = st["replicas"]
            env_from_template(obj, template)
            api["revision_templates"] = {st["update_revision"]: copy.deepcopy(
                obj["spec"]["template"])}
            api["revision_numbers"] = {st["update_revision"]: 1}
            api["revision_created"] = {st["update_revision"]: now}
        api["objects"]["%s/%s/%s" % (resource, ns, m["name"])] = obj


def env_from_template(obj, template):
    """The container's env as the template runs it (up's --env and --mode change it)."""
    ct = obj["spec"]["template"]["spec"]["containers"][0]
    env = ct.setdefault("env", [])
    have = {e["name"]: e for e in env}
    for k, v in template["env"].items():
        if k in have:
            if "valueFrom" not in have[k]:
                have[k]["value"] = v
        else:
            env.append({"name": k, "value": v})


def wait_serving(c, timeout=10.0):
    """Waits until the API server answers on its socket (up starts it)."""
    path = os.path.join(c.run, SOCKET)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1.0)
            s.connect(path)
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            if s.recv(64).split(b" ")[1:2] == [b"200"]:
                s.close()
                return
            s.close()
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise SimError("the API server did not start: see %s"
                           % os.path.join(c.run, "apiserver.log"))
        time.sleep(0.05)
