"""The nodes, the scheduler that places pods on them, and the node controller.

The cluster has nodes kubia-sim-1 .. kubia-sim-N (`up --nodes N`). A node is a record
of the state, st["nodes"][name]: its name, an address (.2 to .9 of the cluster's /24,
which no pod takes; nothing listens on it), the labels its kubelet gives it
(podspec.node_labels), ready (the node controller's view), cut (its network is down:
`kubia-sim node-down`), unschedulable (cordoned) and when it was created. Every pod
record names its node (p["node"]); a pod of a node that is cut off also keeps, in
p["last_reported"], the status its kubelet last reported (the API server hears nothing
newer until the node is back, while the kubelet goes on writing its status file). All nodes share the one bridge (network.py): a
node's network going down is the veth of each of its pods going down.

The scheduler puts a pod on a node that is schedulable, reachable and matches the
pod's nodeSelector, the one with the fewest pods first (the default spreading), and
says why, as the scheduler does, when no node fits (the pod then stays Pending). It
never picks a node whose network is down, also before the node controller has
noticed: a replacement for a pod of a lost node goes to another node.

The node controller (node_lifecycle, run by every publication of the endpoints, so
also by the endpoints daemon while no command runs): a node cut off for
--node-lost-grace seconds is NotReady (its pods Unknown, out of the endpoints); once
--pod-eviction-timeout seconds more have passed, its pods are evicted: marked
terminating with reason NodeLost, but never removed, since their kubelet cannot confirm
that they stopped. Only a forced deletion removes them, or the node coming back.
"""

import time

from .podspec import node_labels, selector_mismatch
from .util import SimError

PREFIX = "kubia-sim-"
MAX_NODES = 8
FIRST_ADDR = 2  # .2 .. .9: below the pods' .10 and above cluster DNS's .1
UNREACHABLE = "had untolerated taint {node.kubernetes.io/unreachable: }"
UNSCHEDULABLE = "were unschedulable"
NO_MATCH = "didn't match Pod's node affinity/selector"


def check_count(n):
    if not 1 <= n <= MAX_NODES:
        raise SimError("--nodes %d: 1 to %d" % (n, MAX_NODES))


def make_nodes(c, n, now=None):
    """The records of n nodes, all ready and schedulable."""
    check_count(n)
    now = time.time() if now is None else now
    nodes = {}
    for i in range(1, n + 1):
        name = "%s%d" % (PREFIX, i)
        nodes[name] = {"name": name, "addr": c.addr(FIRST_ADDR + i - 1),
                       "labels": node_labels(name), "ready": True, "cut": False,
                       "unschedulable": False, "created": now}
    return nodes


def ordered(st):
    """The nodes in the order of their numbers."""
    return sorted(st["nodes"].values(), key=lambda n: int(n["name"][len(PREFIX):]))


def node_of(c, name):
    node = c.st["nodes"].get(name)
    if node is None:
        raise SimError('nodes "%s" not found (the nodes: %s)'
                       % (name, ", ".join(n["name"] for n in ordered(c.st))))
    return node


def pods_on(st, name):
    return [p for p in st["pods"].values() if p.get("node") == name]


def schedule(c, template):
    """(the node for a pod of this template, None), or (None, why it fits no node)."""
    st = c.st
    selector = template.get("node_selector")
    load = {n: 0 for n in st["nodes"]}
    for p in st["pods"].values():
        if p.get("node") in load:
            load[p["node"]] += 1
    fit, why, detail = [], {}, None
    for node in ordered(st):
        if node["cut"] or not node["ready"]:
            reason = UNREACHABLE
        elif node["unschedulable"]:
            reason = UNSCHEDULABLE
        else:
            reason = None
            miss = selector_mismatch(selector, node)
            if miss is not None:
                reason, detail = NO_MATCH, detail or miss
        if reason is None:
            fit.append(node)
        else:
            why[reason] = why.get(reason, 0) + 1
    if fit:
        return min(fit, key=lambda n: load[n["name"]])["name"], None
    parts = ["%d node(s) %s" % (why[r], r) for r in (UNREACHABLE, UNSCHEDULABLE, NO_MATCH)
             if r in why]
    text = "0/%d nodes are available: %s" % (len(st["nodes"]), ", ".join(parts))
    if detail:
        text += " (%s)" % detail
    return None, text


def lost(c, node, now=None):
    """The node has been cut off for longer than the node-lost grace."""
    if not node["cut"]:
        return False
    now = time.time() if now is None else now
    return now - cut_at(c, node) >= c.st["node_lost_grace_s"]


def evict_at(c, node):
    return cut_at(c, node) + c.st["node_lost_grace_s"] + c.st["pod_eviction_timeout_s"]


def cut_at(c, node):
    """When the node's network went down. It is kept beside the node records, which hold
    just the fields the API renderer shows."""
    return c.st["node_cut_at"][node["name"]]


def node_lifecycle(c, now=None):
    """The node controller: a node cut off past the grace is NotReady, and its pods are
    evicted (NodeLost) once the eviction timeout has passed too. Saves what changed."""
    st = c.st
    now = time.time() if now is None else now
    changed = False
    for node in st["nodes"].values():
        ready = not lost(c, node, now)
        if node["ready"] != ready:
            node["ready"] = ready
            changed = True
        if ready or now < evict_at(c, node):
            continue
        for p in pods_on(st, node["name"]):
            if p.get("terminating"):
                continue
            # the API server keeps the pod, terminating, until its kubelet confirms
            p.update(terminating=True, deleted_at=evict_at(c, node), reason="NodeLost",
                     message="Node %s which was running pod %s is unresponsive"
                     % (node["name"], p["name"]))
            changed = True
    if changed:
        c.save()
    return changed
