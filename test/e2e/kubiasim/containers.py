"""A pod's container as the kubelet starts it: the kubia binary in the pod's namespaces
(--runtime process), or a container of the image (--runtime podman)."""

import json
import os

from .util import sh, tool

# What a pod's /bin/sh does before it becomes kubia (see process_cmd), or an init
# container's command: the pod's host name, and a private /var (an overlay whose upper
# layer is on a tmpfs) with the volume at its mount path (none when the path is empty).
# Arguments: host name, scratch dir, volume, mount path, command.
POD_SCRIPT = r"""set -e
h=$0 s=$1 v=$2 m=$3
shift 3
hostname "$h"
mount -t tmpfs -o size=4m,mode=0700 kubia-sim "$s"
mkdir "$s/upper" "$s/work" "$s/vol"
mount --bind "$v" "$s/vol"
mount -t overlay kubia-sim-var -o "lowerdir=/var,upperdir=$s/upper,workdir=$s/work" /var
if [ -n "$m" ]; then
    mkdir -p "$m"
    mount --move "$s/vol" "$m"
else
    umount "$s/vol"
fi
exec "$@"
"""


def apply_fs_group(volume, gid, change="Always"):
    """fsGroup, as the kubelet applies it to a volume: the group owns every file, may
    read and write them, and new files inherit the group (set-group-ID directories).
    fsGroupChangePolicy OnRootMismatch: not when the volume's top directory has it."""
    st = os.stat(volume)
    if change == "OnRootMismatch" and st.st_gid == gid and st.st_mode & 0o2070 == 0o2070:
        return
    for d, _dirs, files in os.walk(volume):
        for path in [d] + [os.path.join(d, f) for f in files]:
            st = os.lstat(path)
            if not (os.path.isdir(path) or os.path.isfile(path)) or os.path.islink(path):
                continue
            os.chown(path, -1, gid, follow_symlinks=False)
            extra = 0o2070 if os.path.isdir(path) else 0o060
            os.chmod(path, (st.st_mode & 0o7777) | extra)


def container_cmd(c, netns, name, scratch, volume, template):
    if template.get("runtime") == "podman":
        return podman_cmd(c, netns, name, volume, template)
    return process_cmd(c, netns, name, scratch, volume, template)


PODMAN_FLAGS = [
    # crun fails on this kind of machine's cgroup layout, and podman's default ulimits
    # exceed the usual hard limit
    "--runtime", "runc",
]


PODMAN_RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def podman_cmd(c, netns, name, volume, template):
    """The pod's container, from the image, as the kubelet would start it: in the pod's
    network namespace, with the pod's host name, resolv.conf, volume, user and
    securityContext. `podman run` stays attached, so signals to it reach kubia (PID 1
    in the container) and its exit is the container's."""
    sec = template["security"]
    return podman_run(netns, netns, name, volume, template["mount_path"], {
        "read_only": sec["read_only_root_filesystem"], "caps_drop": sec["capabilities_drop"],
        "caps_add": sec["capabilities_add"], "seccomp": template.get("seccomp"),
        "no_new_privs": not sec["allow_privilege_escalation"], "user": template.get("user"),
        "fs_group": sec["fs_group"], "resources": template["resources"],
        "env": template["env"], "grace_s": template["grace_s"]}) + \
        [template["image"]] + list(template["args"])


def podman_run(container, netns, name, volume, mount_path, o):
    """podman run of a container of the pod (named container), up to its image: the
    pod's network namespace, host name and resolv.conf, the volume at mount_path (None:
    not mounted), and o's securityContext, resources and environment."""
    cmd = [tool("podman")] + PODMAN_FLAGS + [
        "run", "--rm", "--replace", "--name", container,
        "--network", "ns:/run/netns/" + netns,
        "--hostname", name, "--sig-proxy=true", "--log-driver", "none",
        "-v", "%s:/etc/resolv.conf:ro" % os.path.join("/etc/netns", netns, "resolv.conf"),
        "--stop-timeout", "%d" % max(1, int(o.get("grace_s", 30)))] + PODMAN_RUN_FLAGS
    if mount_path:
        cmd += ["-v", "%s:%s" % (volume, mount_path)]
    if o["read_only"]:
        cmd.append("--read-only")
    for cap in o["caps_drop"]:
        cmd += ["--cap-drop", cap]
    for cap in o["caps_add"]:
        cmd += ["--cap-add", cap]
    if o["no_new_privs"]:
        cmd += ["--security-opt", "no-new-privileges"]
    if o.get("seccomp") == "Unconfined":
        cmd += ["--security-opt", "seccomp=unconfined"]
    if o.get("user"):
        cmd += ["--user", o["user"]]
    if o["fs_group"] is not None:
        cmd += ["--group-add", str(o["fs_group"])]
    # resources, as the kubelet sets the container's cgroup: the memory limit without
    # swap, the CPU request as shares, the CPU limit as a quota
    limits, requests = o["resources"]["limits"], o["resources"]["requests"]
    if "memory" in limits:
        cmd += ["--memory", "%d" % limits["memory"], "--memory-swap", "%d" % limits["memory"]]
    if "cpu" in requests:
        cmd += ["--cpu-shares", "%d" % max(2, int(requests["cpu"] * 1024))]
    if "cpu" in limits:
        cmd += ["--cpus", "%g" % limits["cpu"]]
    for k, v in sorted(o["env"].items()):
        cmd += ["--env", "%s=%s" % (k, v)]
    return cmd


def init_cmds(netns, name, scratch, volume, template):
    """The pod's init containers, in order, as the kubelet runs them: [{"name", "cmd",
    "kill_cmd", "env"}]. The process runtime runs each one's command (found on this
    machine's PATH) as the pod's container is run, as its user with its capabilities
    (setpriv); podman runs its image."""
    out = []
    for ic in template.get("init_containers") or []:
        container = "%s-init-%s" % (netns, ic["name"])
        if template.get("runtime") == "podman":
            o = dict(ic, user=None if ic["user"] is None else "%d:%d" % (
                ic["user"], ic["group"] if ic["group"] is not None else 0))
            cmd = podman_run(container, netns, name, volume, ic["mount_path"], o)
            if ic["command"] is not None:
                cmd += ["--entrypoint", json.dumps(ic["command"])]
            cmd += [ic["image"]] + ic["args"]
            kill = [tool("podman")] + PODMAN_FLAGS + ["rm", "-f", "-t", "0", container]
        else:
            cmd = [tool("ip"), "netns", "exec", netns, tool("unshare"), "--uts", "--",
                   "/bin/sh", "-c", POD_SCRIPT, name, scratch, volume,
                   ic["mount_path"] or ""] + setpriv(ic) + ic["command"] + ic["args"]
            kill = None
        out.append({"name": ic["name"], "cmd": cmd, "kill_cmd": kill, "env": ic["env"]})
    return out


def setpriv(ic):
    """setpriv's options for an init container of the process runtime: its user and
    group (root's when unset), the pod's fsGroup as its only supplementary group, its
    capabilities as the bounding set, no-new-privileges."""
    cmd = [tool("setpriv")]
    if ic["user"] is not None:
        cmd += ["--reuid", str(ic["user"])]
    if ic["group"] is not None or ic["user"] is not None:
        cmd += ["--regid", str(ic["group"] if ic["group"] is not None else 0)]
    cmd += ["--groups", str(ic["fs_group"])] if ic["fs_group"] is not None else [
        "--clear-groups"]
    drop = [c.lower().replace("cap_", "", 1) for c in ic["caps_drop"]]
    add = [c.lower().replace("cap_", "", 1) for c in ic["caps_add"]]
    bset = (["-all"] if "all" in drop else ["-" + c for c in drop]) + ["+" + c for c in add]
    if bset:
        cmd += ["--bounding-set", ",".join(bset)]
    if ic["no_new_privs"]:
        cmd.append("--no-new-privs")
    return cmd + ["--"]


def container_pid(c, pod, state):
    """The PID of kubia itself: the kubelet's child in process mode, the container's
    init process in podman mode."""
    template = c.st["templates"][pod["revision"]]
    if template.get("runtime") != "podman":
        return state.get("pid")
    r = sh(tool("podman"), *PODMAN_FLAGS, "inspect", "--format", "{{.State.Pid}}",
           pod["netns"], check=False)
    pid = r.stdout.strip()
    return int(pid) if r.returncode == 0 and pid.isdigit() and pid != "0" else None


def process_cmd(c, netns, name, scratch, volume, template):
    """The pod's container: hostname, /var/data and resolv.conf as in a pod, then kubia.

    ip netns exec gives the command its own mount namespace (a slave of the host's, so
    nothing mounted here shows outside) and binds /etc/netns/<netns>/resolv.conf; the
    volume is bound at its mount path (under /var) over an overlay of /var, so the
    host's /var is untouched. kubia runs as root here; --runtime podman runs it as the
    manifest's user.
    """
    return [tool("ip"), "netns", "exec", netns, tool("unshare"), "--uts", "--",
            "/bin/sh", "-c", POD_SCRIPT, name, scratch, volume, template["mount_path"],
            template["binary"]] + list(template["args"])
