"""The pod template's own fields (spec.template.spec and its containers) as kubia-sim
plays them: the node's labels, and nodeSelector matched against them (a pod that does
not match stays Pending, as on a cordoned node: controller.py)."""

import platform

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
