"""The pod template's own fields (spec.template.spec and its containers) as kubia-sim
plays them: the node's labels, and nodeSelector matched against them (a pod that does
not match stays Pending, as on a cordoned node: controller.py); the init containers as
the kubelet runs them (pod_init.py): one after the other, each to completion, in the
pod's namespaces with the claim mounted, as their securityContext's user. The process
runtime runs their command from this machine's /usr/bin (it has no image); podman runs
their image."""

import platform

from .manifests import quantity
from .util import SimError

# The node's name, and the labels the kubelet gives it.
NODE = "kubia-sim"
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def node_labels():
    machine = platform.machine()
    return {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": GOARCH.get(machine, machine.lower())}


def unscheduled(selector):
    """Why a pod with this nodeSelector cannot go on the node (None when it can), as the
    scheduler says it, with the label that did not match."""
    labels = node_labels()
    for k, v in sorted((selector or {}).items()):
        if labels.get(k) != v:
            has = "%s=%s" % (k, labels[k]) if k in labels else "no label %s" % k
            return ("0/1 nodes are available: 1 node(s) didn't match Pod's node "
                    "affinity/selector (nodeSelector %s=%s; node %s has %s)"
                    % (k, v, NODE, has))
    return None


def _user(pod, c):
    ps, cs = pod.get("securityContext") or {}, c.get("securityContext") or {}
    return (cs.get("runAsUser", ps.get("runAsUser")), cs.get("runAsGroup",
                                                            ps.get("runAsGroup")),
            cs.get("runAsNonRoot", ps.get("runAsNonRoot", False)))


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
                    "caps_add": list(caps.get("add") or []),
                    "resources": {kind: {k: quantity(v) for k, v in (
                        (c.get("resources") or {}).get(kind) or {}).items()}
                        for kind in ("limits", "requests")}})
    return out
