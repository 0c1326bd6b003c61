"""The endpoints: which pods are ready, published to cluster DNS and to the Service proxy
as the endpoints controller publishes them.

A pod is an endpoint while its kubelet finds it ready (the readiness probe, every
periodSeconds with the manifest's thresholds: kubelet.py), it is not being deleted, and
its node has not been lost: a pod whose node is cut off the network stays until
--node-lost-grace has passed (the node controller marks the node NotReady after its
grace period, and the pod Unknown, then the endpoints controller drops it). Each
publication also runs the node controller (nodes.py).

Every command publishes what it changes, and so does a daemon of its own
(`kubia-sim _endpoints`, started by `up`), so that the endpoints follow readiness while
no command runs: it takes the cluster's lock whenever no command holds it, every
POLL_S, and publishes when the set of ready pods has changed.

The StatefulSet's status (sts_status) counts the same ready pods.
"""

import os
import signal
import sys
import time

from .api_proxy import nginx_apply
from .cluster_dns import dns_apply
from .nodes import lost, node_lifecycle
from .processes import alive
from .prometheus import sync as prometheus_sync
from .state import Cluster
from .util import SimError, read_json

POLL_S = 0.1


def pod_state(c, p):
    return read_json(os.path.join(c.run, "pods", p["netns"] + ".status.json"), {})


def node_lost(c, p, now=None):
    """The pod's node has been cut off for longer than the node-lost grace."""
    return lost(c, c.st["nodes"][p["node"]], now)


def kubelet_ready(c, p, s=None):
    """The kubelet's view: the container runs and its readiness probe passes."""
    s = pod_state(c, p) if s is None else s
    return s.get("state") == "Running" and bool(s.get("ready"))


def is_endpoint(c, p, now=None):
    return not p.get("terminating") and not node_lost(c, p, now) and kubelet_ready(c, p)


def publish(c, force=False, on_routed=None):
    """The endpoints controller: publishes the ready pods to DNS and the proxy (at once
    when force, else only when they changed or a server is gone). on_routed() runs once
    DNS and the proxy route by the new endpoints, before the proxy's old workers (which
    finish the requests in flight) have quit."""
    st = c.st
    now = time.time()
    node_lifecycle(c, now)
    ready = [p for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"])
             if is_endpoint(c, p, now)]
    names = [p["name"] for p in ready]
    # the proxy also serves every pod by name, ready or not
    pods = ["%s %s:%d" % (p["name"], p["ip"], p["port"])
            for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"])]
    servers_up = alive(st.get("nginx")) and alive(st.get("nginx_front")) and (
        st.get("dns_stopped") or alive(st.get("dns")))
    prometheus_sync(c)  # its targets file, rewritten when the pods changed
    if not force and servers_up and names == st.get("endpoints") and \
            pods == st.get("proxied_pods"):
        if on_routed is not None:
            on_routed()
        return ready
    st["endpoints"], st["proxied_pods"] = names, pods
    c.save()
    dns_apply(c, ready)
    nginx_apply(c, ready, on_routed)
    return ready


def endpoints_main(args):
    """`kubia-sim _endpoints CLUSTER RUN DATA LAUNCHER`: publishes the endpoints while no
    command holds the lock, until SIGTERM or until the cluster is down."""
    name, run_root, data_root, launcher = args
    c = Cluster(name, run_root, data_root, launcher)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        with c.try_locked() as got:
            if got is None:
                return 0
            if got:
                if c.st is None:
                    return 0
                try:
                    publish(c)
                except (SimError, OSError, ValueError, KeyError) as e:
                    # a moment's trouble (a server restarting): the next round retries
                    print("kubia-sim endpoints: %s" % e, file=sys.stderr, flush=True)
        time.sleep(POLL_S)
    return 0


def sts_status(c):
    """The StatefulSet's status as the API server shows it: replicas (pods that exist),
    readyReplicas, availableReplicas (ready for minReadySeconds), updatedReplicas (at
    the update revision), currentReplicas (at the current revision), the revisions."""
    st = c.st
    now = time.time()
    min_ready = st["controller"]["min_ready_s"]
    pods = [p for p in st["pods"].values() if not p.get("terminating")]
    ready = available = 0
    for p in pods:
        s = pod_state(c, p)
        if not p.get("cut") and kubelet_ready(c, p, s):
            ready += 1
            if now - (s.get("ready_since") or now) >= min_ready:
                available += 1
    return {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": available,
            "updatedReplicas": sum(p["revision"] == st["update_revision"] for p in pods),
            "currentReplicas": sum(p["revision"] == st["current_revision"] for p in pods),
            "currentRevision": st["current_revision"],
            "updateRevision": st["update_revision"]}
