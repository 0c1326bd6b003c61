"""The Kubernetes API's objects, rendered from the cluster's state: what the API server
would store and show for the pods, claims, volumes, Services, the StatefulSet and its
revisions, the node, events, and the objects stored as given (apiserver.py serves
them; apiwrites.py changes the state they come from).

The objects a user creates are kept in the state as given, with the API server's
defaults filled in (st["api"]["objects"], keyed "resource/namespace/name"); the pods,
claims, volumes of claims, endpoints, node and events are derived from the state and
the kubelets' status files each time, with uids that follow each object's incarnation
(a pod recreated under its name gets a new one).
"""

import copy
import json
import os
import time
import uuid

from .endpoints import kubelet_ready, node_lost, pod_state
from .nodes import lost
from .state import STS

# group, version, resource, kind, namespaced, short names, subresources (name: kind as
# (group, version, kind), verbs)
CRUD = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RO = ["get", "list", "watch"]
RESOURCES = [
    ("", "v1", "pods", "Pod", True, ["po"], ["all"], CRUD, {
        "attach": (("", "v1", "PodAttachOptions"), ["create", "get"]),
        "binding": (("", "v1", "Binding"), ["create"]),
        "eviction": (("policy", "v1", "Eviction"), ["create"]),
        "exec": (("", "v1", "PodExecOptions"), ["create", "get"]),
        "log": (("", "v1", "Pod"), ["get"]),
        "portforward": (("", "v1", "PodPortForwardOptions"), ["create", "get"]),
        "proxy": (("", "v1", "PodProxyOptions"), ["create", "delete", "get", "patch",
                                                  "update"]),
        "status": (("", "v1", "Pod"), ["get", "patch", "update"])}),
    ("", "v1", "services", "Service", True, ["svc"], ["all"], CRUD, {
        "proxy": (("", "v1", "ServiceProxyOptions"), ["create", "delete", "get", "patch",
                                                      "update"]),
        "status": (("", "v1", "Service"), ["get", "patch", "update"])}),
    ("", "v1", "endpoints", "Endpoints", True, ["ep"], [], CRUD, {}),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], [], CRUD, {
        "status": (("", "v1", "PersistentVolumeClaim"), ["get", "patch", "update"])}),
    ("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"], [], CRUD, {
        "status": (("", "v1", "PersistentVolume"), ["get", "patch", "update"])}),
    ("", "v1", "nodes", "Node", False, ["no"], [], CRUD, {
        "proxy": (("", "v1", "NodeProxyOptions"), ["create", "delete", "get", "patch",
                                                   "update"]),
        "status": (("", "v1", "Node"), ["get", "patch", "update"])}),
    ("", "v1", "events", "Event", True, ["ev"], [], CRUD, {}),
    ("", "v1", "namespaces", "Namespace", False, ["ns"], [],
     ["create", "delete", "get", "list", "patch", "update", "watch"], {
        "status": (("", "v1", "Namespace"), ["get", "patch", "update"])}),
    ("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["all"], CRUD, {
        "scale": (("autoscaling", "v1", "Scale"), ["get", "patch", "update"]),
        "status": (("apps", "v1", "StatefulSet"), ["get", "patch", "update"])}),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", True, [], [], CRUD, {}),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], [], CRUD, {
        "status": (("policy", "v1", "PodDisruptionBudget"), ["get", "patch", "update"])}),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"], [],
     CRUD, {}),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"], [], CRUD, {}),
]
BY_RESOURCE = {(r[0], r[2]): r for r in RESOURCES}
GROUPS = ["", "apps", "policy", "networking.k8s.io", "storage.k8s.io"]
# the objects stored as given (the others are derived from the state)
STORED = {"services", "statefulsets", "poddisruptionbudgets", "networkpolicies",
          "persistentvolumes", "storageclasses"}
STORAGE_CLASS = "standard"


def api_version(group, version):
    return "%s/%s" % (group, version) if group else version


def ts(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_ts(text):
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def uid_of(*parts):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "kubia-sim/" + "/".join(map(str, parts))))


def pod_uid(c, st, netns):
    """A pod's uid: one per incarnation (its network namespace has the generation), and
    per cluster incarnation (a cluster brought up again reuses the names)."""
    return uid_of(c.name, api_state(st).get("created", 0), netns)


def human_age(seconds):
    """An age as the API server's tables print it (apimachinery's HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    s = max(s, 0)
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    if h < 192:
        return "%dd%dh" % (h // 24, h % 24) if h % 24 else "%dd" % (h // 24)
    if h < 24 * 365 * 2:
        return "%dd" % (h // 24)
    return "%dy" % (h // (24 * 365))


# defaults --------------------------------------------------------------------------
def default_container(ct):
    ct.setdefault("imagePullPolicy", "Always" if (ct.get("image") or "").endswith(
        ":latest") or ":" not in (ct.get("image") or "").rsplit("/", 1)[-1] else
        "IfNotPresent")
    ct.setdefault("resources", {})
    ct.setdefault("terminationMessagePath", "/dev/termination-log")
    ct.setdefault("terminationMessagePolicy", "File")
    for p in ct.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for k in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = ct.get(k)
        if pr:
            for f, v in (("timeoutSeconds", 1), ("periodSeconds", 10),
                         ("successThreshold", 1), ("failureThreshold", 3)):
                pr.setdefault(f, v)
            if "httpGet" in pr:
                pr["httpGet"].setdefault("scheme", "HTTP")
    for e in ct.get("env") or []:
        vf = (e.get("valueFrom") or {}).get("fieldRef")
        if vf:
            vf.setdefault("apiVersion", "v1")


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for ct in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        default_container(ct)


def default_statefulset(obj):
    """The API server's defaults for a StatefulSet (updateStrategy's partition only when
    the manifest omits updateStrategy altogether)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    if "updateStrategy" not in spec:
        spec["updateStrategy"] = {"type": "RollingUpdate",
                                  "rollingUpdate": {"partition": 0}}
    else:
        spec["updateStrategy"].setdefault("type", "RollingUpdate")
    ret = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    ret.setdefault("whenDeleted", "Retain")
    ret.setdefault("whenScaled", "Retain")
    tmpl = spec.setdefault("template", {})
    tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(tmpl.setdefault("spec", {}))
    for vct in spec.get("volumeClaimTemplates") or []:
        vct.setdefault("apiVersion", "v1")
        vct.setdefault("kind", "PersistentVolumeClaim")
        vct.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        vct.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        vct.setdefault("status", {"phase": "Pending"})
    obj.setdefault("status", {"replicas": 0, "availableReplicas": 0})
    return obj


def default_service(obj, c):
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        # a fixed address of the service range per name (nothing routes it here: the
        # simulated cluster reaches Services through the API server's proxy)
        h = int(uid_of(c.name, "svc", obj["metadata"]["name"])[:4], 16)
        spec["clusterIP"] = "10.96.%d.%d" % (h >> 8 & 255, max(h & 255, 2))
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    if spec["clusterIP"] != "None":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})
    return obj


def default_object(resource, obj, c):
    if resource == "statefulsets":
        return default_statefulset(obj)
    if resource == "services":
        return default_service(obj, c)
    if resource == "persistentvolumes":
        spec = obj.setdefault("spec", {})
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {"phase": "Available"})
    if resource == "poddisruptionbudgets":
        obj.setdefault("status", {})
    return obj


# the objects ----------------------------------------------------------------------
def meta(name, namespace, uid, created, labels=None, **more):
    m = {"name": name, "uid": uid, "creationTimestamp": ts(created)}
    if namespace:
        m["namespace"] = namespace
    if labels:
        m["labels"] = labels
    m.update({k: v for k, v in more.items() if v is not None})
    return m


def api_state(st):
    return st.setdefault("api", {}) if st is not None else {}


def stored(st, resource):
    """The stored objects of a resource, by (namespace, name)."""
    out = {}
    for key, obj in (api_state(st).get("objects") or {}).items():
        r, ns, name = key.split("/", 2)
        if r == resource:
            out[(ns, name)] = obj
    return out


def statefulset(st):
    return (api_state(st).get("objects") or {}).get("statefulsets/%s/%s" % (
        st["namespace"], STS))


def nodes(st):
    return st.get("nodes") or {}


class Renderer:
    """Renders every object of the cluster from one reading of its state."""

    def __init__(self, c, st, version, seen=None):
        self.c, self.st, self.version = c, st, version
        # when each claim's directory was first seen: its ctime moves with every write
        self.seen = {} if seen is None else seen
        self.ns = st["namespace"]
        self.now = time.time()
        self.sts = statefulset(st)
        self.status_cache = {}

    def pod_status_file(self, p):
        if p["name"] not in self.status_cache:
            self.status_cache[p["name"]] = pod_state(self.c, p)
        return self.status_cache[p["name"]]

    def all(self):
        """{(group, resource): {(namespace, name): object}}"""
        out = {}
        for r in RESOURCES:
            out[(r[0], r[2])] = {}
        for (g, res), objs in out.items():
            if res in STORED:
                for k, o in stored(self.st, res).items():
                    objs[k] = o
        out[("", "pods")] = {(self.ns, o["metadata"]["name"]): o for o in self.pods()}
        if self.sts is not None:
            sts = copy.deepcopy(self.sts)
            self.sts_live(sts)
            out[("apps", "statefulsets")][(self.ns, STS)] = sts
            out[("apps", "controllerrevisions")] = {
                (self.ns, o["metadata"]["name"]): o for o in self.revisions()}
        for (ns, name), pdb in list(out[("policy", "poddisruptionbudgets")].items()):
            out[("policy", "poddisruptionbudgets")][(ns, name)] = self.pdb_live(
                pdb, out[("", "pods")])
        claims, vols = self.claims()
        vols = self.bind_static(claims, vols, out[("", "persistentvolumes")],
                                out[("storage.k8s.io", "storageclasses")])
        out[("", "persistentvolumeclaims")] = {(self.ns, o["metadata"]["name"]): o
                                               for o in claims}
        out[("", "persistentvolumes")].update({("", o["metadata"]["name"]): o for o in vols})
        out[("", "nodes")] = {("", o["metadata"]["name"]): o for o in self.nodes()}
        out[("", "namespaces")] = {("", n): self.namespace(n)
                                   for n in sorted({"default", "kube-system", self.ns})}
        out[("", "endpoints")] = {(self.ns, o["metadata"]["name"]): o
                                  for o in self.endpoints(out[("", "services")], out)}
        out[("", "events")] = {(self.ns, o["metadata"]["name"]): o for o in self.events(
            out[("", "pods")])}
        if not out[("storage.k8s.io", "storageclasses")]:
            out[("storage.k8s.io", "storageclasses")][("", STORAGE_CLASS)] = \
                self.storage_class()
        return out

    def namespace(self, name):
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": meta(name, None, uid_of(self.c.name, "ns", name),
                                 api_state(self.st).get("created", 0),
                                 {"kubernetes.io/metadata.name": name}),
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def storage_class(self):
        return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": meta(STORAGE_CLASS, None, uid_of(self.c.name, "sc"),
                                 api_state(self.st).get("created", 0), annotations={
                                     "storageclass.kubernetes.io/is-default-class": "true"}),
                "provisioner": "kubia-sim/hostpath", "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer"}

    # pods ---------------------------------------------------------------------------
    def template_obj(self, rev):
        tmpls = api_state(self.st).get("revision_templates") or {}
        t = tmpls.get(rev)
        if t is None and self.sts is not None:
            t = self.sts["spec"]["template"]
        return copy.deepcopy(t or {"metadata": {}, "spec": {"containers": [
            {"name": STS, "image": "kubia"}]}})

    def node_of(self, p):
        return p.get("node")

    def node_addr(self, name):
        n = nodes(self.st).get(name) or {}
        return n.get("addr") or self.c.host_ip

    def pods(self):
        st = self.st
        out = []
        for p in sorted(st["pods"].values(), key=lambda p: p["ordinal"]):
            out.append(self.pod(p))
        for name in st.get("pending") or []:
            if name not in st["pods"]:
                out.append(self.pending_pod(name))
        return out

    def pod_meta(self, name, ordinal, rev, uid, created, t):
        labels = dict((t.get("metadata") or {}).get("labels") or {})
        labels.update({"controller-revision-hash": rev,
                       "statefulset.kubernetes.io/pod-name": name,
                       "apps.kubernetes.io/pod-index": str(ordinal)})
        m = meta(name, self.ns, uid, created, labels, generateName=STS + "-")
        ann = (t.get("metadata") or {}).get("annotations")
        if ann:
            m["annotations"] = dict(ann)
        if self.sts is not None:
            m["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": STS, "uid": self.sts["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]
        return m

    def pod_spec(self, t, name, ordinal, node):
        spec = t.get("spec") or {}
        default_pod_spec(spec)
        spec["hostname"] = name
        spec["subdomain"] = (self.sts or {}).get("spec", {}).get("serviceName", STS)
        vols = [v for v in spec.get("volumes") or [] if v.get("name") != "data"]
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {
            "claimName": "data-%s" % name}}] + vols
        if node:
            spec["nodeName"] = node
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", "default")
        spec.setdefault("tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}])
        return spec

    def pending_pod(self, name):
        st = self.st
        ordinal = int(name.rsplit("-", 1)[1])
        gen = st["generations"].get(name, 0) + 1
        uid = pod_uid(self.c, st, "%s%s-%d" % (self.c.prefix, name, gen))
        rev = st["update_revision"]
        t = self.template_obj(rev)
        created = (api_state(st).get("pending_since") or {}).get(name, self.now)
        why = (st.get("pending_why") or {}).get(name, "")
        cond = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                "lastTransitionTime": ts(created)}
        if not why.startswith("OrderedReady"):
            cond.update(reason="Unschedulable", message=why)
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": self.pod_meta(name, ordinal, rev, uid, created, t),
                "spec": self.pod_spec(t, name, ordinal, None),
                "status": {"phase": "Pending", "conditions": [cond], "qosClass": "Burstable"}}

    def pod(self, p):
        st = self.st
        name, ordinal = p["name"], p["ordinal"]
        uid = pod_uid(self.c, st, p["netns"])
        t = self.template_obj(p["revision"])
        node = self.node_of(p)
        m = self.pod_meta(name, ordinal, p["revision"], uid, p["created"], t)
        deleting = (api_state(st).get("deleting") or {}).get(name)
        if deleting and deleting.get("uid") == uid:
            m["deletionTimestamp"] = ts(deleting["at"] + p.get("grace_s", 30))
            m["deletionGracePeriodSeconds"] = int(p.get("grace_s", 30))
        elif p.get("terminating"):  # evicted (NodeLost), or deleted while its node is cut
            m["deletionTimestamp"] = ts(p["deleted_at"] + p.get("grace_s", 30))
            m["deletionGracePeriodSeconds"] = int(p.get("grace_s", 30))
        spec = self.pod_spec(t, name, ordinal, node)
        # a cut-off node's kubelet is not heard: what it last reported stands
        s = (p.get("cut") and p.get("last_reported")) or self.pod_status_file(p)
        state = s.get("state", "ContainerCreating")
        unknown = not (self.st["nodes"].get(node) or {}).get("ready", True) or \
            node_lost(self.c, p, self.now)
        ready = kubelet_ready(self.c, p, s) and not unknown
        ct = (spec.get("containers") or [{}])[0]
        cs = {"name": ct.get("name", STS), "image": ct.get("image", ""),
              "imageID": "", "ready": ready, "restartCount": s.get("restarts", 0),
              "started": state in ("Running", "Terminating")}
        if state in ("Running", "Terminating"):
            cs["state"] = {"running": {"startedAt": ts(p["created"])}}
            cs["containerID"] = "kubia-sim://%s" % s.get("pid")
        elif state == "Terminated":
            code = 0 if (s.get("last_exit") or "exit 0") == "exit 0" else 1
            cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                          else "Error", "finishedAt": ts(s.get("since")
                                                                         or self.now)}}
        else:
            cs["state"] = {"waiting": {"reason": "PodInitializing" if state.startswith(
                "Init:") else state}}
        if s.get("last_exit") and s.get("restarts"):
            cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                              "message": s.get("reason", "")}}
        else:
            cs["lastState"] = {}
        inits = state not in ("ContainerCreating",) and not state.startswith("Init:")
        t0 = ts(p["created"])
        conds = [
            {"type": "PodReadyToStartContainers", "status": "True" if s else "False"},
            {"type": "Initialized", "status": "True" if inits else "False"},
            {"type": "Ready", "status": "True" if ready else "False"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
            {"type": "PodScheduled", "status": "True"}]
        for cd in conds:
            cd.update(lastProbeTime=None, lastTransitionTime=t0)
            if cd["status"] == "False" and cd["type"] in ("Ready", "ContainersReady"):
                cd.update(reason="ContainersNotReady",
                          message="containers with unready status: [%s]" % cs["name"])
        phase = "Running" if state in ("Running", "Terminating", "CrashLoopBackOff") else (
            "Succeeded" if state == "Terminated" and cs["state"]["terminated"]["exitCode"]
            == 0 else "Failed" if state == "Terminated" else "Pending")
        status = {"phase": phase, "conditions": conds, "hostIP": self.node_addr(node),
                  "hostIPs": [{"ip": self.node_addr(node)}], "podIP": p["ip"],
                  "podIPs": [{"ip": p["ip"]}], "startTime": t0, "qosClass": "Burstable",
                  "containerStatuses": [cs]}
        if p.get("reason"):
            status.update(reason=p["reason"], message=p["message"])
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec,
               "status": status}
        # what the table prints for STATUS, kept beside the object (not served): as
        # kubectl's printer, Unknown for a pod its node controller cannot hear from
        obj["_status"] = "Unknown" if unknown else (
            "Terminating" if "deletionTimestamp" in m else state)
        return obj

    # the StatefulSet ------------------------------------------------------------------
    def sts_live(self, sts):
        from .endpoints import sts_status
        st = self.st
        spec = sts["spec"]
        spec["replicas"] = st["replicas"]
        strat = spec.get("updateStrategy") or {}
        if (strat.get("rollingUpdate") or {}).get("partition") is not None:
            strat["rollingUpdate"]["partition"] = st["partition"]
        try:
            s = sts_status(self.c)
        except (KeyError, TypeError):
            s = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                 "updatedReplicas": 0, "currentReplicas": 0}
        gen = sts["metadata"].get("generation", 1)
        status = {"observedGeneration": gen, "replicas": s["replicas"],
                  "readyReplicas": s["readyReplicas"],
                  "currentReplicas": s["currentReplicas"],
                  "updatedReplicas": s["updatedReplicas"],
                  "availableReplicas": s["availableReplicas"],
                  "currentRevision": st["current_revision"],
                  "updateRevision": st["update_revision"], "collisionCount": 0}
        for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not status[k]:
                del status[k]  # omitempty, as the API server shows them
        sts["status"] = status

    def revisions(self):
        st = self.st
        tmpls = api_state(st).get("revision_templates") or {}
        out = []
        for i, rev in enumerate(st.get("history") or []):
            t = tmpls.get(rev) or self.template_obj(rev)
            t = copy.deepcopy(t)
            labels = dict((t.get("metadata") or {}).get("labels") or {})
            labels["controller-revision-hash"] = rev
            out.append({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": meta(rev, self.ns, uid_of(self.c.name, "rev", rev),
                                 (api_state(st).get("revision_created") or {}).get(
                                     rev, self.sts["metadata"].get("_created", 0)), labels,
                                 ownerReferences=[{
                                     "apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": STS, "uid": self.sts["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]),
                "data": {"spec": {"template": dict(t, **{"$patch": "replace"})}},
                "revision": (api_state(st).get("revision_numbers") or {}).get(rev, i + 1)})
        return out

    def pdb_live(self, pdb, pods):
        """The budget's status as the disruption controller counts it."""
        pdb = copy.deepcopy(pdb)
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        mine = [o for o in pods.values() if all(
            (o["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        healthy = sum(1 for o in mine if "deletionTimestamp" not in o["metadata"] and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in o["status"].get("conditions") or []))
        spec = pdb.get("spec") or {}
        expected = self.st["replicas"] if self.sts is not None else len(mine)
        if "maxUnavailable" in spec:
            desired = max(0, expected - int(spec["maxUnavailable"]))
        else:
            desired = int(spec.get("minAvailable", 0))
        pdb["status"] = {"observedGeneration": pdb["metadata"].get("generation", 1),
                         "currentHealthy": healthy, "desiredHealthy": desired,
                         "expectedPods": expected,
                         "disruptionsAllowed": max(0, healthy - desired)}
        return pdb

    # claims and volumes --------------------------------------------------------------
    def claims(self):
        claims, vols = [], []
        vdir = self.c.volumes
        names = sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []
        size, cls = "1Mi", STORAGE_CLASS
        if self.sts is not None:
            for vct in self.sts["spec"].get("volumeClaimTemplates") or []:
                size = ((vct.get("spec") or {}).get("resources") or {}).get(
                    "requests", {}).get("storage", size)
                cls = (vct.get("spec") or {}).get("storageClassName") or cls
        for n in names:
            path = os.path.join(vdir, n)
            try:
                s = os.stat(path)
            except OSError:
                continue
            created = self.seen.setdefault((n, s.st_ino), s.st_ctime)
            cuid = uid_of(self.c.name, "pvc", n, int(created))
            pv = "pvc-%s" % cuid
            labels = {"app": STS}
            claims.append({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta(n, self.ns, cuid, created, labels, annotations={
                    "pv.kubernetes.io/bind-completed": "yes",
                    "volume.kubernetes.io/storage-provisioner": "kubia-sim/hostpath"},
                    finalizers=["kubernetes.io/pvc-protection"]),
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {
                    "requests": {"storage": size}}, "storageClassName": cls,
                    "volumeMode": "Filesystem", "volumeName": pv},
                "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                           "capacity": {"storage": size}}})
            vols.append({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": meta(pv, None, uid_of(self.c.name, "pv", pv), created,
                                 annotations={"pv.kubernetes.io/provisioned-by":
                                              "kubia-sim/hostpath"},
                                 finalizers=["kubernetes.io/pv-protection"]),
                "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                      "name": n, "namespace": self.ns, "uid": cuid},
                         "hostPath": {"path": path, "type": ""},
                         "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": cls, "volumeMode": "Filesystem"},
                "status": {"phase": "Bound"}})
        return claims, vols

    def bind_static(self, claims, vols, stored_pvs, classes):
        """Claims of a class that provisions nothing (kubernetes.io/no-provisioner, the
        hostpath overlay's) bound, as the volume controller binds them, to the hand-made
        volumes of their class, in order of name: those volumes show Bound and the
        claims name them; the volumes kubia-sim's directories would otherwise show as
        provisioned are left out. Returns the provisioned volumes still shown."""
        static = {name for (_, name), sc in classes.items()
                  if sc.get("provisioner") == "kubernetes.io/no-provisioner"}
        keep = {}
        for claim in claims:
            cls = claim["spec"]["storageClassName"]
            if cls not in static:
                keep[claim["spec"]["volumeName"]] = True
                continue
            free = [pv for (_, name), pv in sorted(stored_pvs.items())
                    if (pv.get("spec") or {}).get("storageClassName") == cls and
                    "claimRef" not in pv["spec"]]
            if not free:
                claim["status"] = {"phase": "Pending"}
                del claim["spec"]["volumeName"]
                continue
            pv = copy.deepcopy(free[0])
            pv["spec"]["claimRef"] = {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": self.ns,
                "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"]}
            pv["status"] = {"phase": "Bound"}
            stored_pvs[("", pv["metadata"]["name"])] = pv
            claim["spec"]["volumeName"] = pv["metadata"]["name"]
            claim["status"]["capacity"] = pv["spec"].get("capacity", {})
        return [v for v in vols if v["metadata"]["name"] in keep]

    # nodes, endpoints, events --------------------------------------------------------
    def nodes(self):
        out = []
        for name, n in sorted(nodes(self.st).items()):
            labels = dict(n.get("labels") or {})
            ready = n.get("ready", True) and not (n.get("cut") and lost(self.c, n, self.now))
            spec = {}
            if n.get("unschedulable"):
                spec["unschedulable"] = True
                spec["taints"] = [{"key": "node.kubernetes.io/unschedulable",
                                   "effect": "NoSchedule", "timeAdded": ts(self.now)}]
            addr = n.get("addr") or self.c.host_ip
            created = n.get("created") or api_state(self.st).get("created", 0)
            out.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": meta(name, None, uid_of(self.c.name, "node", name), created,
                                 labels),
                "spec": spec,
                "status": {
                    "addresses": [{"type": "InternalIP", "address": addr},
                                  {"type": "Hostname", "address": name}],
                    "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                    "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True" if ready else
                                    "Unknown", "reason": "KubeletReady" if ready else
                                    "NodeStatusUnknown", "message": "kubelet is posting "
                                    "ready status" if ready else "Kubelet stopped posting "
                                    "node status.", "lastHeartbeatTime": ts(created),
                                    "lastTransitionTime": ts(created)}],
                    "nodeInfo": {"kubeletVersion": "v%s.0" % self.version,
                                 "kubeProxyVersion": "v%s.0" % self.version,
                                 "containerRuntimeVersion": "kubia-sim://1.0",
                                 "osImage": "kubia-sim", "kernelVersion": os.uname().release,
                                 "operatingSystem": "linux",
                                 "architecture": labels.get("kubernetes.io/arch", ""),
                                 "machineID": "", "systemUUID": "", "bootID": ""}}})
        return out

    def endpoints(self, services, everything):
        out = []
        pods = everything[("", "pods")]
        for (ns, name), svc in sorted(services.items()):
            sel = (svc.get("spec") or {}).get("selector")
            if not sel:
                continue
            ready, unready = [], []
            for o in pods.values():
                if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in
                       sel.items()) and o["status"].get("podIP"):
                    addr = {"ip": o["status"]["podIP"], "nodeName": o["spec"].get("nodeName"),
                            "targetRef": {"kind": "Pod", "name": o["metadata"]["name"],
                                          "namespace": ns, "uid": o["metadata"]["uid"]}}
                    if svc["spec"].get("clusterIP") == "None":
                        addr["hostname"] = o["metadata"]["name"]
                    (ready if o["metadata"]["name"] in self.st.get("endpoints", [])
                     else unready).append(addr)
            ports = [{"name": p.get("name"), "port": resolve_target(p, pods),
                      "protocol": p.get("protocol", "TCP")}
                     for p in svc["spec"].get("ports") or []]
            subsets = []
            if ready or unready:
                sub = {"ports": [{k: v for k, v in p.items() if v is not None}
                                 for p in ports]}
                if ready:
                    sub["addresses"] = ready
                if unready:
                    sub["notReadyAddresses"] = unready
                subsets.append(sub)
            o = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": meta(name, ns, uid_of(self.c.name, "ep", svc["metadata"]["uid"]),
                                  parse_ts(svc["metadata"]["creationTimestamp"]),
                                  svc["metadata"].get("labels"))}
            if subsets:
                o["subsets"] = subsets
            out.append(o)
        return out

    def events(self, pods):
        out = []
        for (ns, name), p in sorted(pods.items()):
            uid = p["metadata"]["uid"]
            created = parse_ts(p["metadata"]["creationTimestamp"])
            ref = {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                   "uid": uid}
            sts_ref = None
            if self.sts is not None:
                sts_ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": STS,
                           "namespace": ns, "uid": self.sts["metadata"]["uid"]}
                out.append(self.event(sts_ref, "SuccessfulCreate",
                                      "create Pod %s in StatefulSet %s successful"
                                      % (name, STS), "statefulset-controller", created,
                                      uid))
            node = p["spec"].get("nodeName")
            if node is None:
                why = [c for c in p["status"].get("conditions") or []
                       if c.get("reason") == "Unschedulable"]
                if why:
                    out.append(self.event(ref, "FailedScheduling", why[0]["message"],
                                          "default-scheduler", created, uid, "Warning"))
                continue
            out.append(self.event(ref, "Scheduled", "Successfully assigned %s/%s to %s"
                                  % (ns, name, node), "default-scheduler", created, uid))
            cs = (p["status"].get("containerStatuses") or [{}])[0]
            if "running" in cs.get("state", {}) or cs.get("restartCount"):
                ctr = dict(ref, fieldPath="spec.containers{%s}" % cs["name"])
                image = cs.get("image", "")
                for reason, msg in (("Pulled", 'Container image "%s" already present on '
                                     'machine' % image),
                                    ("Created", "Created container %s" % cs["name"]),
                                    ("Started", "Started container %s" % cs["name"])):
                    out.append(self.event(ctr, reason, msg, "kubelet", created, uid,
                                          host=node))
            if "deletionTimestamp" in p["metadata"]:
                ctr = dict(ref, fieldPath="spec.containers{%s}" % cs.get("name", STS))
                at = parse_ts(p["metadata"]["deletionTimestamp"]) - \
                    p["metadata"].get("deletionGracePeriodSeconds", 0)
                out.append(self.event(ctr, "Killing", "Stopping container %s" % cs.get(
                    "name", STS), "kubelet", at, uid, host=node))
        return out

    def event(self, ref, reason, message, component, at, salt, kind="Normal", host=None):
        # named as the API server names them, <object>.<time in ns as hex>: in the order
        # they happened when sorted by name (the kubelet's follow the scheduler's)
        order = ("SuccessfulCreate", "FailedScheduling", "Scheduled", "Pulled", "Created",
                 "Started", "Killing", "SuccessfulDelete")
        name = "%s.%x" % (ref["name"], int(at * 1e9) + order.index(reason) * 1000 +
                          int(uid_of(salt)[:2], 16))
        src = {"component": component}
        if host:
            src["host"] = host
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": meta(name, ref["namespace"], uid_of(self.c.name, "ev", name), at),
                "involvedObject": ref, "reason": reason, "message": message,
                "source": src, "firstTimestamp": ts(at), "lastTimestamp": ts(at),
                "count": 1, "type": kind, "eventTime": None,
                "reportingComponent": component, "reportingInstance": host or ""}


def resolve_target(port, pods):
    tp = port.get("targetPort", port.get("port"))
    if isinstance(tp, int):
        return tp
    for o in pods.values():
        for ct in o["spec"].get("containers") or []:
            for p in ct.get("ports") or []:
                if p.get("name") == tp:
                    return p["containerPort"]
    return port.get("port")


def public(obj):
    """The object as served (without what the tables keep beside it)."""
    if "_status" in obj or "_created" in obj.get("metadata", {}):
        obj = dict(obj)
        obj.pop("_status", None)
        if "_created" in obj.get("metadata", {}):
            obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "_created"}
    return obj


def canonical(obj):
    return json.dumps(public(obj), sort_keys=True)
