"""The commands on one node: node-down and node-up (a node's network down and back; cut
and heal do it to a pod's node); and what the API server does to one pod or claim: the
forced deletion's forgetting of a pod (section 10.5), exec in a pod (pod_exec), the
deletion of claims."""

import copy
import os
import shutil
import signal
import time

from .containers import PODMAN_FLAGS, container_pid
from .controller import converge, describe_wait, retire, wait_ready
from .endpoints import pod_state, publish
from .network import set_link
from .nodes import node_of, pods_on
from .processes import alive, signal_ref
from .remotecommand import RemoteCommandError, run_command
from .state import STS
from .util import SimError, say, tool


def forget_pod(c, name):
    """The API server forgets the pod at once. Its node cannot be told, so the process
    keeps running where it is (a healthy node would stop it); its old address is cut
    off so the replacement can take it."""
    st = c.st
    pod = st["pods"].pop(name)
    set_link(c, pod["veth"], False)
    if not st["nodes"][pod["node"]]["cut"]:
        signal_ref(pod["kubelet"], signal.SIGTERM)
    pod["forced"] = time.time()
    st["orphans"].append(pod)
    c.save()
    return pod


def cmd_cut(c, a):
    """kubia-sim cut POD: the pod's node goes off the network (node-down)."""
    st = c.require_up()
    pod = st["pods"].get(a.pod)
    if pod is None:
        raise SimError("pods \"%s\" not found" % a.pod)
    node_down(c, node_of(c, pod["node"]))


def cmd_node(c, a):
    """kubia-sim node-down NODE / node-up NODE."""
    c.require_up()
    node = node_of(c, a.node)
    if a.cmd == "node-down":
        node_down(c, node)
    else:
        if not node["cut"]:
            raise SimError("node %s is not down" % node["name"])
        node_up(c, node)


def node_down(c, node):
    """The node's network goes down (section 10.5's ifconfig eth0 down): every pod on it
    is cut off; its processes and its kubelets run on, unheard."""
    st = c.st
    if node["cut"]:
        raise SimError("node %s's network is already down" % node["name"])
    now = time.time()
    node["cut"] = True
    st.setdefault("node_cut_at", {})[node["name"]] = now
    pods = sorted(pods_on(st, node["name"]), key=lambda p: p["ordinal"])
    for p in pods:
        set_link(c, p["veth"], False)
        # what the API server last heard from the pod's kubelet: all it shows from now on
        p.update(cut=True, cut_at=now, last_reported=pod_state(c, p))
    c.save()
    say("node %s is cut off the network, with %s: their processes keep running, nothing "
        "reaches them (NotReady, its pods Unknown and out of the endpoints once the "
        "node-lost grace of %g s has passed; evicted, NodeLost, %g s later)"
        % (node["name"], ", ".join(p["name"] for p in pods) or "no pod",
           st["node_lost_grace_s"], st["pod_eviction_timeout_s"]))


def node_up(c, node):
    """The node is back: its kubelet hears that its force-deleted and evicted pods are
    deleted and stops them (the evicted ones leave the API then, and the controller
    replaces them); its other pods are reachable again. Returns once they, and the
    replacements of its pods elsewhere (which may be in back-off), are ready."""
    st = c.st
    name = node["name"]
    names = set()
    for o in [o for o in st["orphans"] if o["node"] == name]:
        retire(c, o, o["grace_s"] + 5)
        st["orphans"].remove(o)
        names.add(o["name"])
        c.save()
        say("node %s is back: the force-deleted %s is stopped there" % (name, o["name"]))
    for p in sorted(pods_on(st, name), key=lambda p: p["ordinal"]):
        if p.get("terminating"):
            retire(c, p, p["grace_s"] + 5)
            del st["pods"][p["name"]]
            names.add(p["name"])
            say('pod "%s" deleted (node %s is back and stopped it)' % (p["name"], name))
        else:
            set_link(c, p["veth"], True)
            p["cut"] = False
            p.pop("last_reported", None)
            names.add(p["name"])
    node.update(cut=False, ready=True)
    c.save()
    say("node %s is back on the network" % name)
    t0 = time.time()
    converge(c)  # the evicted pods' replacements, and Pending pods the node can take
    for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"]):
        if p["name"] in names:
            # a replacement in back-off starts at its next try
            nxt = pod_state(c, p).get("next_start") or 0
            wait_ready(c, p, st["ready_timeout_s"] + max(0.0, nxt - time.time()),
                       quiet=p["created"] >= t0)  # converge said it
    publish(c)


def cmd_heal(c, a):
    """kubia-sim heal POD: the node of the pod, or of the force-deleted pod of that
    name, comes back (node-up)."""
    st = c.require_up()
    nodes = [o["node"] for o in st["orphans"] if o["name"] == a.pod]
    if a.pod in st["pods"]:
        nodes.append(st["pods"][a.pod]["node"])
    down = [n for n in nodes if st["nodes"][n]["cut"]]
    if not down:
        raise SimError("%s is not cut off" % a.pod)
    node_up(c, st["nodes"][down[0]])


def pod_pid(c, name):
    st = c.require_up()
    pod = st["pods"].get(name)
    if pod is None:
        raise SimError("pods \"%s\" not found" % name)
    s = pod_state(c, pod)
    pid = None
    if s.get("state") in ("Running", "Terminating") and alive(
            {"pid": s["pid"], "start": s.get("start")}):
        pid = container_pid(c, pod, s)
    if pid is None:
        raise SimError("pod %s has no running container (%s)" % (name, describe_wait(c, pod)))
    return pid


def exec_argv(c, name, container, command, stdin=False, tty=False):
    """The command line that runs command in pod name's container as kubectl exec does:
    nsenter into kubia's network, UTS and mount namespaces, at / (process runtime), or
    podman exec (podman runtime: the container's user, capabilities and working
    directory). c.st must be read (c.locked()) for the call."""
    if container not in (None, STS):
        raise SimError("container %s is not valid for pod %s" % (container, name))
    if not command:
        raise SimError("exec: give a command")
    pid = pod_pid(c, name)
    pod = c.st["pods"][name]
    if c.st["templates"][pod["revision"]].get("runtime") == "podman":
        return [tool("podman")] + PODMAN_FLAGS + ["exec"] + (["-i"] if stdin else []) + (
            ["-t"] if tty else []) + [pod["netns"]] + list(command)
    return [tool("nsenter"), "-t", str(pid), "-n", "-u", "-m", "--wd=/", "--"] + list(command)


def pod_exec(c, name, session):
    """remotecommand's run() for an exec in pod name (see remotecommand.serve): the
    command line is found under the cluster's lock, which the caller must not hold (the
    command runs without it, as long as it likes). c itself is left as it is (its copy
    reads the state), so threads of an API server can share it."""
    own = copy.copy(c)
    with own.locked():
        try:
            argv = exec_argv(own, name, session.container, session.command,
                             session.stdin is not None, session.tty)
        except SimError as e:
            raise RemoteCommandError(str(e))
    return run_command(argv, session)


def delete_claims(c, a):
    names = a.names
    if a.all:
        names = sorted(os.listdir(c.volumes)) if os.path.isdir(c.volumes) else []
    st = c.st or {"pods": {}, "orphans": []}
    for n in names:
        if not n.startswith("data-%s-" % STS):
            raise SimError("no claim %r: claims are named data-%s-N" % (n, STS))
        user = n[len("data-"):]
        if user in st["pods"] or any(o["name"] == user for o in st["orphans"]):
            raise SimError("persistentvolumeclaim %s is in use by pod %s" % (n, user))
        path = os.path.join(c.volumes, n)
        if not os.path.isdir(path):
            raise SimError("persistentvolumeclaims \"%s\" not found" % n)
    for n in names:
        shutil.rmtree(os.path.join(c.volumes, n))
        say("persistentvolumeclaim \"%s\" deleted" % n)
