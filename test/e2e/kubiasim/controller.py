"""The StatefulSet controller: pods created one at a time in order, each ready before the
next (OrderedReady); a deleted pod replaced with the same name, address and volume;
scaling down highest ordinal first and never while a pod is unhealthy; rolling updates
highest ordinal first, above a partition."""

import contextlib
import json
import os
import random
import signal
import sys
import time

from .containers import PODMAN_FLAGS, container_cmd
from .endpoints import pod_state, publish
from .network import pod_net_create, pod_net_delete
from .pod_http import probe
from .processes import alive, signal_ref, spawn, stop_ref
from .state import STS
from .util import SimError, say, tool, wait_for, write_atomic


def template_for(c, ordinal):
    st = c.st
    rev = st["update_revision"] if ordinal >= st["partition"] else st["current_revision"]
    return rev, st["templates"][rev]


def apply_fs_group(volume, gid):
    """fsGroup, as the kubelet applies it to a volume: the group owns every file, may
    read and write them, and new files inherit the group (set-group-ID directories)."""
    for d, _dirs, files in os.walk(volume):
        for path in [d] + [os.path.join(d, f) for f in files]:
            st = os.lstat(path)
            if not (os.path.isdir(path) or os.path.isfile(path)) or os.path.islink(path):
                continue
            os.chown(path, -1, gid, follow_symlinks=False)
            extra = 0o2070 if os.path.isdir(path) else 0o060
            os.chmod(path, (st.st_mode & 0o7777) | extra)


def create_pod(c, ordinal):
    st = c.st
    name = "%s-%d" % (STS, ordinal)
    gen = st["generations"].get(name, 0) + 1
    st["generations"][name] = gen
    netns = "%s%s-%d" % (c.prefix, name, gen)
    veth = "v%dg%d" % (ordinal, gen)
    addr = c.addr(10 + ordinal)
    volume = c.volume(ordinal)
    if not os.path.isdir(volume):
        os.makedirs(volume, mode=0o755)
        say("persistentvolumeclaim/data-%s created" % name)
    rev, template = template_for(c, ordinal)
    fs_group = template["security"]["fs_group"]
    if template.get("runtime") == "podman" and fs_group is not None:
        apply_fs_group(volume, fs_group)
    poddir = os.path.join(c.run, "pods")
    scratch = os.path.join(poddir, netns + ".scratch")
    os.makedirs(scratch, exist_ok=True)
    pod = {"name": name, "ordinal": ordinal, "netns": netns, "veth": veth, "ip": addr,
           "revision": rev, "created": time.time(), "kubelet": None,
           "port": template["port"], "srv_port": template["srv_port"],
           "srv_ports": template["srv_ports"],
           "readiness": template["readiness"], "grace_s": template["grace_s"]}
    st["pods"][name] = pod
    c.save()  # recorded before anything exists, so `down` finds whatever gets made
    pod_net_create(c, netns, veth, addr)
    spec = {"name": name, "netns": netns, "ip": addr,
            "cmd": container_cmd(c, netns, name, scratch, volume, template),
            "env": template["env"], "grace_s": template["grace_s"],
            "pre_stop_s": template.get("pre_stop_s", 0),
            "liveness": template["liveness"],
            "kill_cmd": ([tool("podman")] + PODMAN_FLAGS + ["rm", "-f", "-t", "0", netns]
                         if template.get("runtime") == "podman" else None),
            "backoff_ms": st["backoff_ms"], "log": os.path.join(poddir, netns + ".log"),
            "status": os.path.join(poddir, netns + ".status.json")}
    specpath = os.path.join(poddir, netns + ".spec.json")
    write_atomic(specpath, json.dumps(spec, indent=1))
    pod["kubelet"], _ = spawn([sys.executable, c.launcher, "_kubelet", specpath],
                              os.path.join(poddir, netns + ".kubelet.log"))
    c.save()
    say("pod/%s created (%s, revision %s)" % (name, addr, rev))
    return pod


def describe_wait(c, pod):
    s = pod_state(c, pod)
    state = s.get("state", "ContainerCreating")
    if s.get("last_exit"):
        return "%s, restarts %d, last %s: %s" % (state, s.get("restarts", 0), s["last_exit"],
                                                s.get("reason", ""))
    return state


def wait_ready(c, pod, timeout=None, quiet=False):
    timeout = c.st["ready_timeout_s"] if timeout is None else timeout

    def ready():
        if not alive(pod["kubelet"]):
            raise SimError("the kubelet of pod %s is gone" % pod["name"])
        return pod_state(c, pod).get("state") == "Running" and probe(pod)
    try:
        wait_for(ready, timeout, "pod %s to become ready" % pod["name"], interval=0.02)
    except SimError as e:
        raise SimError("%s (%s; log: %s)" % (e, describe_wait(c, pod), pod_log(c, pod)))
    if not quiet:
        say("pod/%s is ready (1/1 Running)" % pod["name"])


def pod_log(c, pod):
    return os.path.join(c.run, "pods", pod["netns"] + ".log")


def retire(c, pod, timeout):
    """Stops a pod's kubelet (which stops its container) and removes its namespace."""
    stop_ref(pod.get("kubelet"), timeout)
    s = pod_state(c, pod)
    if s.get("pid"):
        stop_ref({"pid": s["pid"], "start": s.get("start")}, 5)
    pod_net_delete(c, pod["netns"], pod["veth"])
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(c.run, "pods", pod["netns"] + ".scratch"))


def delete_pod(c, name):
    st = c.st
    pod = st["pods"][name]
    t0 = time.monotonic()
    lag = st.get("endpoint_lag_s") or 0
    if lag > 0:
        # up --endpoint-lag: as in a real cluster, the kubelet starts stopping the pod
        # (preStop hook, then SIGTERM) at once, while the endpoints, and the Service's
        # proxy that follows them as kube-proxy does, catch up a moment later.
        signal_ref(pod.get("kubelet"), signal.SIGTERM)
        delay = random.uniform(0, lag)
        time.sleep(delay)
        say("endpoints: %s removed %.2f s after its deletion began" % (name, delay))
    # A terminating pod leaves the endpoints (at once without a lag).
    pod["terminating"] = True
    publish(c)
    retire(c, pod, pod["grace_s"] + 5)
    del st["pods"][name]
    c.save()
    say("pod \"%s\" deleted (stopped in %.2f s)" % (name, time.monotonic() - t0))


def reap_orphans(c):
    """Forgets force-deleted pods whose processes have ended by themselves."""
    st = c.st
    keep = []
    for o in st["orphans"]:
        s = pod_state(c, o)
        if alive(o.get("kubelet")) or (s.get("pid") and alive({"pid": s["pid"],
                                                                 "start": s.get("start")})):
            keep.append(o)
        else:
            pod_net_delete(c, o["netns"], o["veth"])
    st["orphans"] = keep
    c.save()


def healthy(c, pod):
    return not pod.get("cut") and pod_state(c, pod).get("state") == "Running" and probe(pod)


def converge(c):
    """Brings the pods to spec.replicas: OrderedReady creation, reverse-order removal."""
    st = c.st
    reap_orphans(c)
    for o in range(st["replicas"]):
        name = "%s-%d" % (STS, o)
        if name in st["pods"]:
            continue
        # OrderedReady: a pod is created only once every pod before it is ready.
        for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"]):
            if p["ordinal"] < o and not healthy(c, p):
                say("waiting for %s to be ready before creating %s" % (p["name"], name))
                wait_ready(c, p)
                publish(c)
        pod = create_pod(c, o)
        wait_ready(c, pod)
        publish(c)
    extra = sorted((p for p in st["pods"].values() if p["ordinal"] >= st["replicas"]),
                   key=lambda p: -p["ordinal"])
    for pod in extra:
        def all_healthy():
            bad = [p["name"] for p in st["pods"].values() if not healthy(c, p)]
            if bad:
                all_healthy.last = bad
            return not bad
        all_healthy.last = []
        try:
            wait_for(all_healthy, st["ready_timeout_s"], "every pod to be healthy", 0.1)
        except SimError:
            raise SimError("scale-down of %s is waiting: %s not ready, and a StatefulSet "
                           "does not scale down while any pod is unhealthy"
                           % (pod["name"], ", ".join(sorted(all_healthy.last))))
        delete_pod(c, pod["name"])
        say("persistentvolumeclaim/data-%s kept (it comes back with the pod)" % pod["name"])


def roll_out(c, rev, partition):
    """The rolling update to revision rev: every pod at or above the partition that runs
    another revision is replaced, highest ordinal first, each only once it is ready and
    the next only once its replacement is."""
    st = c.st
    for o in reversed(range(st["replicas"])):
        name = "%s-%d" % (STS, o)
        pod = st["pods"].get(name)
        if o < partition:
            say("%s stays at %s (below the partition)" % (name, pod["revision"] if pod else "-"))
            continue
        if pod is not None and pod["revision"] == rev:
            continue
        if pod is not None:
            wait_ready(c, pod, quiet=True)  # a pod is replaced only once it is ready
            say("rolling update: replacing %s (%s -> %s)" % (name, pod["revision"], rev))
            delete_pod(c, name)
        wait_ready(c, create_pod(c, o))
        publish(c)
    if partition == 0:
        # every ordinal now runs the update revision: it becomes the current one
        st["current_revision"] = rev
        c.save()
        say("statefulset rolling update complete: %d pods at revision %s"
            % (len(st["pods"]), rev))
