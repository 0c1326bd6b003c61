"""The API server's tables (meta.k8s.io/v1 Table): the columns the real API server gives
each resource, which `kubectl get` prints (the priority-1 ones with -o wide)."""

import time

from .apiobjects import human_age, parse_ts, public


def _age(o, now):
    t = o["metadata"].get("creationTimestamp")
    return human_age(now - parse_ts(t)) if t else "<unknown>"


def _since(t, now):
    return human_age(now - parse_ts(t)) if t else "<unknown>"


def _pod(o, now):
    cs = o["status"].get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    total = len(o["spec"].get("containers") or [])
    restarts = sum(c.get("restartCount", 0) for c in cs)
    status = o.get("_status") or o["status"].get("phase", "Pending")
    return [o["metadata"]["name"], "%d/%d" % (ready, total), status, restarts,
            _age(o, now), o["status"].get("podIP") or "<none>",
            o["spec"].get("nodeName") or "<none>", "<none>", "<none>"]


def _sts(o, now):
    cts = o["spec"]["template"]["spec"].get("containers") or []
    return [o["metadata"]["name"], "%d/%d" % (o["status"].get("readyReplicas", 0),
                                             o["spec"].get("replicas", 0)), _age(o, now),
            ",".join(c["name"] for c in cts), ",".join(c.get("image", "") for c in cts)]


def _ports(svc):
    out = []
    for p in svc["spec"].get("ports") or []:
        s = "%d/%s" % (p["port"], p.get("protocol", "TCP"))
        if p.get("nodePort"):
            s = "%d:%d/%s" % (p["port"], p["nodePort"], p.get("protocol", "TCP"))
        out.append(s)
    return ",".join(out) or "<none>"


def _svc(o, now):
    sel = o["spec"].get("selector")
    return [o["metadata"]["name"], o["spec"].get("type", "ClusterIP"),
            o["spec"].get("clusterIP", "<none>"), "<none>", _ports(o), _age(o, now),
            ",".join("%s=%s" % kv for kv in sorted(sel.items())) if sel else "<none>"]


def _modes(modes):
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _pvc(o, now):
    st = o.get("status") or {}
    return [o["metadata"]["name"], st.get("phase", "Pending"),
            o["spec"].get("volumeName", ""), (st.get("capacity") or {}).get("storage", ""),
            _modes(st.get("accessModes")), o["spec"].get("storageClassName") or "<unset>",
            "<unset>", _age(o, now), o["spec"].get("volumeMode", "Filesystem")]


def _pv(o, now):
    spec = o["spec"]
    ref = spec.get("claimRef")
    return [o["metadata"]["name"], (spec.get("capacity") or {}).get("storage", ""),
            _modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            (o.get("status") or {}).get("phase", "Available"),
            "%s/%s" % (ref["namespace"], ref["name"]) if ref else "",
            spec.get("storageClassName", ""), "<unset>",
            (o.get("status") or {}).get("reason", ""), _age(o, now),
            spec.get("volumeMode", "Filesystem")]


def _node(o, now):
    ready = [c for c in o["status"]["conditions"] if c["type"] == "Ready"]
    status = "Ready" if ready and ready[0]["status"] == "True" else "NotReady"
    if o["spec"].get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in o["metadata"].get("labels") or {}
                   if k.startswith("node-role.kubernetes.io/"))
    info = o["status"]["nodeInfo"]
    addrs = {a["type"]: a["address"] for a in o["status"]["addresses"]}
    return [o["metadata"]["name"], status, ",".join(roles) or "<none>", _age(o, now),
            info["kubeletVersion"], addrs.get("InternalIP", "<none>"),
            addrs.get("ExternalIP", "<none>"), info["osImage"], info["kernelVersion"],
            info["containerRuntimeVersion"]]


def _event(o, now):
    ref = o["involvedObject"]
    src = o.get("source") or {}
    return [_since(o.get("lastTimestamp"), now), o.get("type", ""), o.get("reason", ""),
            "%s/%s" % (ref["kind"].lower(), ref["name"]), o.get("message", ""),
            ref.get("fieldPath", ""), ", ".join(v for v in (src.get("component"),
                                                            src.get("host")) if v),
            _since(o.get("firstTimestamp"), now), o.get("count", 1),
            o["metadata"]["name"]]


def _ep(o, now):
    eps = []
    for s in o.get("subsets") or []:
        for a in s.get("addresses") or []:
            for p in s.get("ports") or []:
                eps.append("%s:%d" % (a["ip"], p["port"]))
    text = ",".join(eps[:3]) + (" + %d more..." % (len(eps) - 3) if len(eps) > 3 else "")
    return [o["metadata"]["name"], text or "<none>", _age(o, now)]


def _ns(o, now):
    return [o["metadata"]["name"], o["status"]["phase"], _age(o, now)]


def _sc(o, now):
    name = o["metadata"]["name"]
    if (o["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy", "Delete"),
            o.get("volumeBindingMode", "Immediate"),
            str(o.get("allowVolumeExpansion", False)).lower(), _age(o, now)]


def _pdb(o, now):
    spec = o["spec"]
    return [o["metadata"]["name"], str(spec.get("minAvailable", "N/A")),
            str(spec.get("maxUnavailable", "N/A")),
            (o.get("status") or {}).get("disruptionsAllowed", 0), _age(o, now)]


def _netpol(o, now):
    sel = (o.get("spec") or {}).get("podSelector") or {}
    ml = sel.get("matchLabels") or {}
    return [o["metadata"]["name"], ",".join("%s=%s" % kv for kv in sorted(ml.items()))
            or "<none>", _age(o, now)]


def _rev(o, now):
    owner = (o["metadata"].get("ownerReferences") or [{}])[0]
    return [o["metadata"]["name"], "%s.%s/%s" % (owner.get("kind", "").lower(), "apps",
                                                 owner.get("name", "")),
            o["revision"], _age(o, now)]


def col(name, type_="string", priority=0, fmt=""):
    return {"name": name, "type": type_, "format": fmt, "description": name,
            "priority": priority}


NAME = col("Name", fmt="name")
AGE = col("Age")
COLUMNS = {
    "pods": ([NAME, col("Ready"), col("Status"), col("Restarts", "integer"), AGE,
              col("IP", priority=1), col("Node", priority=1),
              col("Nominated Node", priority=1), col("Readiness Gates", priority=1)], _pod),
    "statefulsets": ([NAME, col("Ready"), AGE, col("Containers", priority=1),
                      col("Images", priority=1)], _sts),
    "services": ([NAME, col("Type"), col("Cluster-IP"), col("External-IP"),
                  col("Port(s)"), AGE, col("Selector", priority=1)], _svc),
    "persistentvolumeclaims": ([NAME, col("Status"), col("Volume"), col("Capacity"),
                                col("Access Modes"), col("StorageClass"),
                                col("VolumeAttributesClass"), AGE,
                                col("VolumeMode", priority=1)], _pvc),
    "persistentvolumes": ([NAME, col("Capacity"), col("Access Modes"),
                           col("Reclaim Policy"), col("Status"), col("Claim"),
                           col("StorageClass"), col("VolumeAttributesClass"), col("Reason"),
                           AGE, col("VolumeMode", priority=1)], _pv),
    "nodes": ([NAME, col("Status"), col("Roles"), AGE, col("Version"),
               col("Internal-IP", priority=1), col("External-IP", priority=1),
               col("OS-Image", priority=1), col("Kernel-Version", priority=1),
               col("Container-Runtime", priority=1)], _node),
    "events": ([col("Last Seen"), col("Type"), col("Reason"), col("Object"),
                col("Message"), col("Subobject", priority=1), col("Source", priority=1),
                col("First Seen", priority=1), col("Count", "integer", 1),
                col("Name", priority=1)], _event),
    "endpoints": ([NAME, col("Endpoints"), AGE], _ep),
    "namespaces": ([NAME, col("Status"), AGE], _ns),
    "storageclasses": ([NAME, col("Provisioner"), col("ReclaimPolicy"),
                        col("VolumeBindingMode"), col("AllowVolumeExpansion"), AGE], _sc),
    "poddisruptionbudgets": ([NAME, col("Min Available"), col("Max Unavailable"),
                              col("Allowed Disruptions", "integer"), AGE], _pdb),
    "networkpolicies": ([NAME, col("Pod-Selector"), AGE], _netpol),
    "controllerrevisions": ([NAME, col("Controller"), col("Revision", "integer"), AGE],
                            _rev),
}
# the minor version from which the API server's claim and volume tables have the
# VolumeAttributesClass column
VAC_FROM = 29


def partial(o):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": o["metadata"]}


def table(resource, objs, rv, include="Metadata", minor=33, now=None):
    now = time.time() if now is None else now
    cols, fn = COLUMNS.get(resource, ([NAME, AGE], lambda o, n: [o["metadata"]["name"],
                                                                    _age(o, n)]))
    drop = set()
    if minor < VAC_FROM and resource in ("persistentvolumeclaims", "persistentvolumes"):
        drop = {i for i, cd in enumerate(cols) if cd["name"] == "VolumeAttributesClass"}
    rows = []
    for o in objs:
        cells = [v for i, v in enumerate(fn(o, now)) if i not in drop]
        row = {"cells": cells}
        if include == "Object":
            row["object"] = public(o)
        elif include != "None":
            row["object"] = partial(o)
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": [cd for i, cd in enumerate(cols) if i not in drop],
            "rows": rows}
