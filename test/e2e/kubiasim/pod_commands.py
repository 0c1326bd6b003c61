"""The commands on one pod, claim or node: delete (also --force, section 10.5's forced
deletion), cut and heal (a node off the network and back), cordon and uncordon (no pod
starts meanwhile), exec, logs, and run (a throwaway pod)."""

import os
import shutil
import signal
import subprocess
import sys
import time

from .commands import print_pods
from .containers import container_pid
from .controller import (converge, create_pod, delete_pod, describe_wait, hold_pending,
                         pod_log, retire, wait_ready)
from .endpoints import kubelet_ready, pod_state, publish
from .network import pod_net_create, pod_net_delete, set_link
from .pod_init import init_log
from .processes import alive, signal_ref
from .state import STS, ordinal_of
from .util import SimError, say, tool, wait_for


def cmd_delete(c, a):
    if a.kind in ("pvc", "persistentvolumeclaim"):
        return delete_claims(c, a)
    if a.kind not in ("pod", "po", "pods"):
        raise SimError("delete what? kubia-sim delete pod kubia-0 | delete pvc data-kubia-0")
    st = c.require_up()
    for name in a.names:
        ordinal_of(name)
        if name not in st["pods"]:
            raise SimError("pods \"%s\" not found" % name)
    for name in a.names:
        if a.force:
            force_delete(c, name)
        else:
            delete_pod(c, name)
            converge(c)
    publish(c)
    print_pods(c)


def forget_pod(c, name):
    """The API server forgets the pod at once. Its node cannot be told, so the process
    keeps running where it is (a healthy node would stop it); its old address is cut
    off so the replacement can take it."""
    st = c.st
    pod = st["pods"].pop(name)
    set_link(c, pod["veth"], False)
    if not pod.get("cut"):
        signal_ref(pod["kubelet"], signal.SIGTERM)
    pod["forced"] = time.time()
    st["orphans"].append(pod)
    c.save()
    return pod


def force_delete(c, name):
    st = c.st
    pod = forget_pod(c, name)
    say("warning: Immediate deletion does not wait for confirmation that the running "
        "resource has been terminated. The resource may continue to run on the cluster "
        "indefinitely.")
    say("pod \"%s\" force deleted" % name)
    publish(c)
    if not hold_pending(c, [pod["ordinal"]], False, more=True):
        c.save()
        print_pods(c)  # its replacement cannot be scheduled: Pending, and why
        return
    new = create_pod(c, pod["ordinal"])

    def settled():
        s = pod_state(c, new)
        return s.get("restarts", 0) > 0 or kubelet_ready(c, new, s)
    wait_for(settled, st["ready_timeout_s"], "pod %s to start or fail" % name)
    s = pod_state(c, new)
    if s.get("restarts", 0) > 0:
        say("pod/%s keeps failing to start (CrashLoopBackOff), last %s: %s"
            % (name, s.get("last_exit"), s.get("reason", "")))
        say("(the old %s still holds its volume; it is refused until that process is gone: "
            "kubia-sim heal %s)" % (name, name))
    else:
        say("pod/%s is ready (1/1 Running)" % name)


def cmd_cut(c, a):
    st = c.require_up()
    pod = st["pods"].get(a.pod)
    if pod is None:
        raise SimError("pods \"%s\" not found" % a.pod)
    set_link(c, pod["veth"], False)
    pod["cut"], pod["cut_at"] = True, time.time()
    c.save()
    say("%s's node is cut off the network: its process keeps running, nothing reaches it "
        "(kubectl shows it Unknown; it leaves the endpoints once the node-lost grace of "
        "%g s has passed)" % (a.pod, st.get("node_lost_grace_s", 0)))


def cmd_cordon(c, a):
    """kubectl cordon / uncordon of the cluster's only node: while it is cordoned, no
    pod is started (a pod to create stays Pending); uncordoned, the controller goes on."""
    st = c.require_up()
    st["cordoned"] = a.cmd == "cordon"
    c.save()
    say("node/kubia-sim %s" % ("cordoned" if st["cordoned"] else "uncordoned"))
    if not st["cordoned"]:
        converge(c)
        publish(c)
    print_pods(c)


def cmd_heal(c, a):
    st = c.require_up()
    done = False
    for o in [o for o in st["orphans"] if o["name"] == a.pod]:
        # The node is back and learns its pod was deleted: the kubelet stops it.
        retire(c, o, o["grace_s"] + 5)
        st["orphans"].remove(o)
        c.save()
        say("%s's node is back: the force-deleted %s is stopped there" % (a.pod, a.pod))
        done = True
    pod = st["pods"].get(a.pod)
    if pod is not None and pod.get("cut"):
        set_link(c, pod["veth"], True)
        pod["cut"] = False
        c.save()
        say("%s's node is back on the network" % a.pod)
        done = True
    if not done:
        raise SimError("%s is not cut off" % a.pod)
    if pod is not None:
        # a replacement in back-off starts at its next try
        wait_ready(c, pod, st["ready_timeout_s"] + st["backoff_ms"] / 1000.0 * 2)
    publish(c)
    print_pods(c)


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


def cmd_exec(c, a):
    pid = pod_pid(c, a.pod)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        raise SimError("exec: give a command after --")
    return subprocess.call([tool("nsenter"), "-t", str(pid), "-n", "-u", "-m",
                            "--wd=" + os.getcwd(), "--"] + cmd)


def cmd_logs(c, a):
    st = c.require_up()
    pod = st["pods"].get(a.pod)
    if pod is None:
        raise SimError("pods \"%s\" not found" % a.pod)
    log = pod_log(c, pod)
    inits = [i["name"] for i in st["templates"][pod["revision"]].get("init_containers") or []]
    if a.container in inits:
        log = init_log({"log": log}, a.container)
    elif a.container is not None and a.container != STS:
        raise SimError('container %s is not valid for pod %s' % (a.container, a.pod))
    try:
        with open(log, "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        raise SimError('container "%s" in pod "%s" is waiting to start: PodInitializing'
                       % (a.container or STS, a.pod))


def cmd_run(c, a):
    """A throwaway pod (kubectl run --rm): own namespaces and resolv.conf, then gone."""
    c.require_up()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        raise SimError("run: give a command after --, e.g. run -- dig SRV %s" % c.domain())
    netns = "%srun-%d" % (c.prefix, os.getpid())
    veth = "r%d" % (os.getpid() % 100000)
    addr = c.addr(210 + os.getpid() % 40)
    try:
        pod_net_create(c, netns, veth, addr)
        return subprocess.call([tool("ip"), "netns", "exec", netns, tool("unshare"), "--uts",
                                "--", "/bin/sh", "-c", 'hostname "$0"; exec "$@"', a.name]
                               + cmd)
    finally:
        pod_net_delete(c, netns, veth)


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
