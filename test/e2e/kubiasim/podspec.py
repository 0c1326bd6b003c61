"""The pod template's own fields (spec.template.spec and its containers): the ones
kubia-sim honours, each as the lists below say, and a clear refusal of any other, so
that nothing a manifest asks of a pod is silently left out. Also a node's labels and
whether a nodeSelector matches them, and the init containers as the kubelet runs them."""

import platform

from .manifests import quantity
from .util import SimError

# The pod's fields kubia-sim honours, on its nodes (kubia-sim-1 .. kubia-sim-N, nodes.py):
# * containers: one, kubia (templates.py: its port, probes, environment, volume, ...).
# * initContainers: run to completion, one after the other, before kubia starts, in the
#   pod's namespaces with the claim mounted, as their securityContext's user; one that
#   fails is restarted with the kubelet's back-off (Init:Error, Init:CrashLoopBackOff)
#   and kubia does not start (pod_init.py). The process runtime runs their command from
#   this machine's /usr/bin (it has no image); podman runs their image.
# * nodeSelector: matched against each node's labels (node_labels); the scheduler
#   (nodes.py) places the pod on a node that matches, and a pod that no schedulable node
#   matches stays Pending, as when every node is cordoned.
# * securityContext: POD_SECURITY below.
# * terminationGracePeriodSeconds: the kubelet's grace period on a stop.
# * topologySpreadConstraints: accepted; the scheduler spreads the pods over the nodes
#   anyway (fewest pods first), which meets the shipped constraint (maxSkew 1 over
#   kubernetes.io/hostname, ScheduleAnyway), and other keys are not enforced.
# * automountServiceAccountToken and enableServiceLinks: false only, and required, as
#   Kubernetes' default is true. kubia-sim has no API server, so no token to mount, and
#   no Service with a cluster IP whose variables it could inject; kubia uses neither.
# * restartPolicy: Always only, the kubelet's restarts (a StatefulSet allows no other).
POD_FIELDS = ("automountServiceAccountToken", "containers", "enableServiceLinks",
              "initContainers", "nodeSelector", "restartPolicy", "securityContext",
              "terminationGracePeriodSeconds", "topologySpreadConstraints")
# The pod's securityContext: runAsUser, runAsGroup and fsGroup are podman's --user and
# --group-add, and the volume's group (fsGroupChangePolicy: OnRootMismatch leaves a
# volume alone whose top directory has the group already); runAsNonRoot refuses a user
# 0; seccompProfile RuntimeDefault is podman's default profile, Unconfined turns it off.
# The process runtime runs kubia itself as root, with no seccomp profile: only --runtime
# podman gives kubia the securityContext (init containers get their user in both).
POD_SECURITY = ("fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot",
                "runAsUser", "seccompProfile")
# A container's fields: name; image (podman's; the process runtime runs the kubia
# binary, and an init container's command from this machine); imagePullPolicy
# (IfNotPresent and Never as given: kubia-sim never pulls, and refuses an image that is
# not on the machine, ErrImagePull; Always would pull from a registry, which there is
# not); command (an init container's: kubia-sim runs kubia itself, templates.py) and
# args; env (values; valueFrom is refused in templates.py); ports (containerPort, name,
# TCP); readinessProbe and livenessProbe (PROBE_FIELDS); lifecycle (preStop sleep: the
# kubelet sleeps, then SIGTERM); resources (cpu and memory: podman's cgroup limits);
# securityContext (CONTAINER_SECURITY); volumeMounts (the claim data).
CONTAINER_FIELDS = ("args", "command", "env", "image", "imagePullPolicy", "lifecycle",
                    "livenessProbe", "name", "ports", "readinessProbe", "resources",
                    "securityContext", "volumeMounts")
# An init container has no probes and no lifecycle in Kubernetes either, and no ports.
INIT_FIELDS = ("args", "command", "env", "image", "imagePullPolicy", "name", "resources",
               "securityContext", "volumeMounts")
# A container's securityContext: podman's --cap-drop and --cap-add, --read-only,
# no-new-privileges, --user; privileged only as false. An init container of the process
# runtime gets its user, group, capabilities (its bounding set) and no-new-privileges
# with setpriv; its root file system is this machine's, read-only or not.
CONTAINER_SECURITY = ("allowPrivilegeEscalation", "capabilities", "privileged",
                      "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser",
                      "seccompProfile")
# A probe: an HTTP GET (manifests.py refuses the other kinds) and the timing fields.
PROBE_FIELDS = ("failureThreshold", "httpGet", "initialDelaySeconds", "periodSeconds",
                "successThreshold", "timeoutSeconds")
HTTP_GET_FIELDS = ("path", "port", "scheme")
PORT_FIELDS = ("containerPort", "name", "protocol")
MOUNT_FIELDS = ("mountPath", "name")
ENV_FIELDS = ("name", "value", "valueFrom")
RESOURCES = ("cpu", "memory")

# The labels the kubelet gives its node.
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def node_labels(name):
    machine = platform.machine()
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": GOARCH.get(machine, machine.lower())}


def selector_mismatch(selector, node):
    """Which label of the nodeSelector the node lacks (None when it matches), as
    "nodeSelector K=V; node N has ..."."""
    labels = node["labels"]
    for k, v in sorted((selector or {}).items()):
        if labels.get(k) != v:
            has = "%s=%s" % (k, labels[k]) if k in labels else "no label %s" % k
            return "nodeSelector %s=%s; node %s has %s" % (k, v, node["name"], has)
    return None


def _only(where, what, obj, allowed):
    if not isinstance(obj, dict):
        raise SimError("%s: %s is not a mapping" % (where, what))
    unknown = sorted(f for f in obj if f not in allowed)
    if unknown:
        raise SimError("%s: %s sets %s, which kubia-sim does not implement (it honours %s)"
                       % (where, what, ", ".join(unknown), ", ".join(allowed)))


def _value(where, what, value, allowed, why=""):
    if value not in allowed:
        raise SimError("%s: %s %s: %skubia-sim implements %s" % (
            where, what, _show(value), why + "; " if why else "",
            " and ".join(_show(a) for a in allowed)))


def _show(v):
    return {True: "true", False: "false", None: "unset"}.get(v, v) \
        if isinstance(v, (bool, type(None))) else str(v)


def pull_policy(c):
    """imagePullPolicy, Kubernetes' default filled in: Always for an image tagged latest
    or not tagged (and not named by digest), else IfNotPresent."""
    if "imagePullPolicy" in c:
        return c["imagePullPolicy"]
    image = c.get("image") or ""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return "Always" if "@" not in image and tag in ("", "latest") else "IfNotPresent"


def _security(where, what, sc, allowed):
    if sc is None:
        return
    _only(where, what, sc, allowed)
    if "seccompProfile" in sc:
        _only(where, what + ".seccompProfile", sc["seccompProfile"], ("type",))
        _value(where, what + ".seccompProfile.type", sc["seccompProfile"].get("type"),
               ("RuntimeDefault", "Unconfined"))
    if "capabilities" in sc:
        _only(where, what + ".capabilities", sc["capabilities"], ("add", "drop"))
    if "privileged" in sc:
        _value(where, what + ".privileged", sc["privileged"], (False,))
    if "fsGroupChangePolicy" in sc:
        _value(where, what + ".fsGroupChangePolicy", sc["fsGroupChangePolicy"],
               ("Always", "OnRootMismatch"))


def _container(where, what, c, allowed):
    _only(where, what, c, allowed)
    _value(where, "%s.imagePullPolicy" % what, pull_policy(c), ("IfNotPresent", "Never"),
           "kubia-sim has no registry and never pulls%s" % (
               "" if "imagePullPolicy" in c else " (Always is Kubernetes' default for an "
               "image tagged latest or not tagged)"))
    for i, e in enumerate(c.get("env") or []):
        _only(where, "%s.env[%d]" % (what, i), e, ENV_FIELDS)
    for i, p in enumerate(c.get("ports") or []):
        _only(where, "%s.ports[%d]" % (what, i), p, PORT_FIELDS)
        _value(where, "%s.ports[%d].protocol" % (what, i), p.get("protocol", "TCP"),
               ("TCP",))
    for i, m in enumerate(c.get("volumeMounts") or []):
        _only(where, "%s.volumeMounts[%d]" % (what, i), m, MOUNT_FIELDS)
        if m.get("name") != "data":
            raise SimError("%s: %s.volumeMounts[%d] mounts %s; kubia-sim has one volume, "
                           "the claim template's data (it does not implement "
                           "spec.template.spec.volumes)" % (where, what, i, m.get("name")))
    res = c.get("resources") or {}
    _only(where, what + ".resources", res, ("limits", "requests"))
    for kind in ("limits", "requests"):
        _only(where, "%s.resources.%s" % (what, kind), res.get(kind) or {}, RESOURCES)
    _security(where, what + ".securityContext", c.get("securityContext"),
              CONTAINER_SECURITY)
    for probe in ("readinessProbe", "livenessProbe"):
        if c.get(probe):
            _only(where, "%s.%s" % (what, probe), c[probe], PROBE_FIELDS)
            _only(where, "%s.%s.httpGet" % (what, probe), c[probe].get("httpGet") or {},
                  HTTP_GET_FIELDS)
    if c.get("livenessProbe"):
        _value(where, what + ".livenessProbe.successThreshold",
               c["livenessProbe"].get("successThreshold", 1), (1,))
    hooks = c.get("lifecycle") or {}
    _only(where, what + ".lifecycle", hooks, ("preStop",))


def check_pod(where, pod):
    """Refuses a pod template (spec.template.spec) that sets a field kubia-sim does not
    honour, naming the field."""
    what = "spec.template.spec"
    _only(where, "the pod template (%s)" % what, pod, POD_FIELDS)
    for f, why in (("automountServiceAccountToken", "kubia-sim has no API server and no "
                    "token to mount"), ("enableServiceLinks", "kubia-sim's Services have "
                                       "no cluster IP, so no variables to set")):
        _value(where, "%s.%s" % (what, f), pod.get(f), (False,),
               why + (" (true is Kubernetes' default)" if f not in pod else ""))
    _value(where, what + ".restartPolicy", pod.get("restartPolicy", "Always"), ("Always",))
    _security(where, what + ".securityContext", pod.get("securityContext"), POD_SECURITY)
    sel = pod.get("nodeSelector") or {}
    if not isinstance(sel, dict) or not all(isinstance(v, str) for v in sel.values()):
        raise SimError("%s: %s.nodeSelector: give label: value pairs" % (where, what))
    for i, c in enumerate(pod.get("containers") or []):
        _container(where, "%s.containers[%d] (%s)" % (what, i, c.get("name")), c,
                   CONTAINER_FIELDS)
    for i, c in enumerate(pod.get("initContainers") or []):
        _container(where, "%s.initContainers[%d] (%s)" % (what, i, c.get("name")), c,
                   INIT_FIELDS)
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        uid, _gid, non_root = _user(pod, c)
        if non_root and uid == 0:
            raise SimError("%s: container %s has runAsNonRoot and runAsUser 0; the kubelet "
                           "would not start it" % (where, c.get("name")))


def _user(pod, c):
    ps, cs = pod.get("securityContext") or {}, c.get("securityContext") or {}
    return (cs.get("runAsUser", ps.get("runAsUser")), cs.get("runAsGroup",
                                                            ps.get("runAsGroup")),
            cs.get("runAsNonRoot", ps.get("runAsNonRoot", False)))


def seccomp(pod, c):
    """The container's seccompProfile type (its own, else the pod's), None when unset."""
    for sc in (c.get("securityContext") or {}, pod.get("securityContext") or {}):
        if "seccompProfile" in sc:
            return sc["seccompProfile"].get("type")
    return None


def init_containers(where, pod, runtime):
    """The init containers as the kubelet runs them: name, image, command (None: the
    image's entrypoint), args, env, mount_path of the claim (None: not mounted), user and
    group (None: the image's), fs_group, and the securityContext's read_only,
    no_new_privs, caps_drop and caps_add; resources as manifests.py reads them."""
    out = []
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    for c in pod.get("initContainers") or []:
        name = c.get("name")
        uid, gid, _non_root = _user(pod, c)
        if runtime != "podman" and not c.get("command"):
            raise SimError("%s: init container %s has no command; the process runtime "
                           "runs an init container's command from this machine, not its "
                           "image (use --runtime podman)" % (where, name))
        env = {}
        for e in c.get("env") or []:
            if "valueFrom" in e:
                raise SimError("%s: env %s of init container %s uses valueFrom, which "
                               "kubia-sim does not resolve" % (where, e["name"], name))
            env[e["name"]] = e.get("value", "")
        mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
        if mounts and runtime != "podman" and not mounts[0].startswith("/var/"):
            raise SimError("%s: init container %s mounts the volume at %s, outside /var; "
                           "a pod of the process runtime has a private /var only (use "
                           "--runtime podman)" % (where, name, mounts[0]))
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        out.append({"name": name, "image": c.get("image"), "command": c.get("command"),
                    "args": list(c.get("args") or []), "env": env,
                    "mount_path": mounts[0] if mounts else None, "user": uid, "group": gid,
                    "fs_group": fs_group,
                    "read_only": sc.get("readOnlyRootFilesystem", False),
                    "no_new_privs": not sc.get("allowPrivilegeEscalation", True),
                    "caps_drop": list(caps.get("drop") or []),
                    "caps_add": list(caps.get("add") or []), "seccomp": seccomp(pod, c),
                    "resources": {kind: {k: quantity(v) for k, v in (
                        (c.get("resources") or {}).get(kind) or {}).items()}
                        for kind in ("limits", "requests")}})
    return out
