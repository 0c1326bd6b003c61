"""The StatefulSet controller: pods created one at a time in order, each ready before the
next, and removed highest ordinal first, never while a pod is unhealthy (OrderedReady),
or all at once whatever their health (Parallel); a deleted pod replaced with the same
name, address and volume; ordinals from ordinals.start; claims kept or deleted on
scale-down as persistentVolumeClaimRetentionPolicy.whenScaled says; each pod placed on a
node by the scheduler (nodes.py), and a pod that no node can take (cordoned, cut off,
or its nodeSelector does not match their labels) made but left Pending; the revision
history, pruned to revisionHistoryLimit. The rolling update (highest ordinal first, at
and above a partition, or none with OnDelete) is rollout.py's."""

import contextlib
import json
import os
import random
import shutil
import signal
import sys
import time

from .containers import PODMAN_FLAGS, apply_fs_group, container_cmd, init_cmds
from .endpoints import kubelet_ready, pod_state, publish
from .network import pod_net_create, pod_net_delete
from .nodes import schedule
from .processes import alive, signal_ref, spawn, stop_ref
from .state import STS
from .util import SimError, say, tool, wait_for, write_atomic


def template_for(c, ordinal):
    """The revision a new pod of this ordinal gets, as the StatefulSet controller picks
    it: the current one below the partition (counted from ordinals.start) of a rolling
    update, else the update revision."""
    st = c.st
    ctl = st["controller"]
    rev = st["update_revision"]
    if ctl["update_strategy"] == "RollingUpdate" and \
            ordinal < ctl["ordinals_start"] + st["partition"]:
        rev = st["current_revision"]
    return rev, st["templates"][rev]


def wanted(st):
    """The ordinals spec.replicas and ordinals.start ask for."""
    start = st["controller"]["ordinals_start"]
    return list(range(start, start + st["replicas"]))


def pod_name(ordinal):
    return "%s-%d" % (STS, ordinal)


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
    node, why = schedule(c, template)
    if node is None:
        raise SimError("pod %s cannot be scheduled: %s" % (name, why))
    fs_group = template["security"]["fs_group"]
    if template.get("runtime") == "podman" and fs_group is not None:
        apply_fs_group(volume, fs_group, template.get("fs_group_change", "Always"))
    poddir = os.path.join(c.run, "pods")
    scratch = os.path.join(poddir, netns + ".scratch")
    os.makedirs(scratch, exist_ok=True)
    pod = {"name": name, "ordinal": ordinal, "netns": netns, "veth": veth, "ip": addr,
           "node": node, "revision": rev, "created": time.time(), "kubelet": None,
           "port": template["port"], "srv_port": template["srv_port"],
           "srv_ports": template["srv_ports"],
           "readiness": template["readiness"], "grace_s": template["grace_s"]}
    st["pods"][name] = pod
    c.save()  # recorded before anything exists, so `down` finds whatever gets made
    pod_net_create(c, netns, veth, addr)
    spec = {"name": name, "netns": netns, "ip": addr,
            "cmd": container_cmd(c, netns, name, scratch, volume, template),
            "init": init_cmds(netns, name, scratch, volume, template),
            "env": template["env"], "grace_s": template["grace_s"],
            "pre_stop_s": template.get("pre_stop_s", 0),
            "liveness": template["liveness"], "readiness": template["readiness"],
            "kill_cmd": ([tool("podman")] + PODMAN_FLAGS + ["rm", "-f", "-t", "0", netns]
                         if template.get("runtime") == "podman" else None),
            "backoff_ms": st["backoff_ms"], "log": os.path.join(poddir, netns + ".log"),
            "status": os.path.join(poddir, netns + ".status.json")}
    specpath = os.path.join(poddir, netns + ".spec.json")
    write_atomic(specpath, json.dumps(spec, indent=1))
    pod["kubelet"], _ = spawn([sys.executable, c.launcher, "_kubelet", specpath],
                              os.path.join(poddir, netns + ".kubelet.log"))
    c.save()
    say("pod/%s created (%s on node %s, revision %s)" % (name, addr, node, rev))
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
        publish(c)  # the endpoints follow readiness while this command waits
        return kubelet_ready(c, pod)
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

    def stop_kubelet():
        signal_ref(pod.get("kubelet"), signal.SIGTERM)
    if lag > 0:
        # up --endpoint-lag: as in a real cluster, the kubelet starts stopping the pod
        # (preStop hook, then SIGTERM) at once, while the endpoints, and the Service's
        # proxy that follows them as kube-proxy does, catch up a moment later.
        stop_kubelet()
        delay = random.uniform(0, lag)
        time.sleep(delay)
        say("endpoints: %s removed %.2f s after its deletion began" % (name, delay))
    # A terminating pod leaves the endpoints (at once without a lag): its kubelet is told
    # once the proxy routes nothing new to it, not after the proxy's old workers have
    # quit, which finish the requests in flight to this pod first.
    pod.update(terminating=True, deleted_at=pod.get("deleted_at") or time.time())
    publish(c, on_routed=stop_kubelet)
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
    return not pod.get("cut") and not pod.get("terminating") and kubelet_ready(c, pod)


def delete_pods(c, names):
    """Deletes pods all at once (Parallel): every kubelet is told first."""
    st = c.st
    for name in names:
        st["pods"][name].update(terminating=True, deleted_at=time.time())
    publish(c)
    for name in names:
        signal_ref(st["pods"][name].get("kubelet"), signal.SIGTERM)
    for name in names:
        delete_pod(c, name)


def converge(c):
    """Brings the pods to spec.replicas from ordinals.start: creation (OrderedReady: in
    order, each once every pod before it is ready; Parallel: all at once), then the
    removal of the pods outside (OrderedReady: highest ordinal first, each once every
    pod is healthy; Parallel: all at once)."""
    st = c.st
    reap_orphans(c)
    want = wanted(st)
    parallel = st["controller"]["pod_management_policy"] == "Parallel"
    missing = hold_pending(c, [o for o in want if pod_name(o) not in st["pods"]], parallel)
    if parallel:
        made = [create_pod(c, o) for o in missing]
        publish(c)
    else:
        made = []
        for o in missing:
            # OrderedReady: a pod is created only once every pod before it is ready.
            for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"]):
                if p["ordinal"] < o and not healthy(c, p):
                    say("waiting for %s to be ready before creating %s"
                        % (p["name"], pod_name(o)))
                    wait_healthy(c, p, "scale-up to %s" % pod_name(o))
            pod = create_pod(c, o)
            wait_ready(c, pod)
            publish(c)
    extra = sorted((p for p in st["pods"].values() if p["ordinal"] not in want),
                   key=lambda p: -p["ordinal"])
    if parallel:
        delete_pods(c, [p["name"] for p in extra])
    for pod in extra:
        if not parallel:
            wait_all_healthy(c, pod)
            delete_pod(c, pod["name"])
        scaled_claim(c, pod)
    for pod in made:
        wait_ready(c, pod)
    sync_revisions(c)


def hold_pending(c, missing, parallel, more=False):
    """The ordinals of missing that the scheduler can place on a node; the others are
    made but stay Pending (st["pending"], and why in st["pending_why"]): those that no
    node takes (every node cordoned or cut off, or the template's nodeSelector matches
    none of the others), OrderedReady: with every later one, which waits for them. more:
    these are added to the Pending pods already held, rather than taking their place."""
    st = c.st
    why, held = dict(st.get("pending_why") or {}) if more else {}, None
    for o in missing:
        w = schedule(c, template_for(c, o)[1])[1]
        if w is None and held is not None and not parallel:
            w = "OrderedReady: it is created once %s is ready" % held
        if w is not None:
            why[pod_name(o)] = w
            held = held or pod_name(o)
    st["pending"] = (st.get("pending", []) if more else []) + [
        pod_name(o) for o in missing if pod_name(o) in why]
    st["pending_why"] = why
    return [o for o in missing if pod_name(o) not in why]


def wait_healthy(c, pod, what):
    try:
        wait_ready(c, pod, quiet=True)
    except SimError as e:
        raise SimError("%s is waiting: %s, and OrderedReady goes on only once it is ready "
                       "(%s)" % (what, "%s is not ready" % pod["name"], e))


def wait_all_healthy(c, pod):
    st = c.st

    def all_healthy():
        publish(c)
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


def scaled_claim(c, pod):
    """persistentVolumeClaimRetentionPolicy.whenScaled, for a pod removed by a scale-down."""
    claim = "data-%s" % pod["name"]
    if c.st["controller"]["when_scaled"] == "Delete":
        shutil.rmtree(c.volume(pod["ordinal"]), ignore_errors=True)
        say("persistentvolumeclaim/%s deleted (whenScaled: Delete)" % claim)
    else:
        say("persistentvolumeclaim/%s kept (it comes back with the pod)" % claim)


def sync_revisions(c):
    """status.currentRevision becomes the update revision once every pod runs it, and the
    revision history keeps revisionHistoryLimit revisions besides those in use."""
    st = c.st
    want = wanted(st)
    pods = [st["pods"].get(pod_name(o)) for o in want]
    if all(p is not None and p["revision"] == st["update_revision"] for p in pods) and \
            st["current_revision"] != st["update_revision"]:
        st["current_revision"] = st["update_revision"]
        say("statefulset rolling update complete %d pods at revision %s"
            % (len(pods), st["update_revision"]))
    history = st.setdefault("history", [st["current_revision"]])
    used = {st["current_revision"], st["update_revision"]} | {
        p["revision"] for p in list(st["pods"].values()) + st["orphans"]}
    spare = [r for r in history if r not in used]
    drop = spare[:max(0, len(spare) - st["controller"]["history_limit"])]
    for r in drop:
        history.remove(r)
        st["templates"].pop(r, None)
    c.save()
