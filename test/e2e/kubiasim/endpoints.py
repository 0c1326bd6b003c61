"""The endpoints: which pods are ready, published to cluster DNS and to the Service proxy
as the endpoints controller publishes them."""

import os

from .api_proxy import nginx_apply
from .cluster_dns import dns_apply
from .pod_http import probe
from .prometheus import sync as prometheus_sync
from .util import read_json


def pod_state(c, p):
    return read_json(os.path.join(c.run, "pods", p["netns"] + ".status.json"), {})


def publish(c):
    """The endpoints controller: probes every pod and publishes the ready ones."""
    st = c.st
    ready = []
    for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"]):
        if p.get("terminating") or p.get("cut"):
            continue
        if probe(p):
            ready.append(p)
    st["endpoints"] = [p["name"] for p in ready]
    c.save()
    dns_apply(c, ready)
    nginx_apply(c, ready)
    prometheus_sync(c)
    return ready
