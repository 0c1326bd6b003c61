"""The commands on the whole cluster: up, down, probe and dns (kubectl says the rest,
through the API server)."""

import argparse
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import sys
import time

from . import apiseed, kubeconfig, prometheus
from .cluster_dns import dns_stop
from .containers import PODMAN_FLAGS
from .controller import converge
from .endpoints import pod_state, publish
from .network import net_up, port_free, subnet_free
from .nodes import check_count, make_nodes
from .processes import alive, signal_ref, spawn, stop_ref
from .state import MAX_ORDINALS, PUBLIC, STS, revision_of
from .templates import controller_of, read_manifest, template_of
from .util import SimError, say, sh, tool, wait_for


def try_next(c):
    st = c.st
    base = "localhost:%d/api/v1/namespaces/%s" % (st["api_port"], st["namespace"])
    me = os.path.relpath(c.launcher)
    if me.startswith(".."):
        me = c.launcher
    cl = "" if c.name == "kubia" else " --cluster " + c.name
    say("")
    say("Try the chapter's commands (the API server is on localhost:%d; kubectl proxy "
        "serves it on localhost:8001 as in the book):" % st["api_port"])
    say("  kubectl get pods; kubectl get pvc; kubectl get statefulset kubia")
    say("  curl %s/pods/kubia-0/proxy/" % base)
    say("  curl -X POST -d \"Hey there! This greeting was submitted to kubia-0.\" "
        "%s/pods/kubia-0/proxy/" % base)
    say("  curl %s/services/kubia-public/proxy/" % base)
    say("  kubectl run -it srvlookup --image=tutum/dnsutils --rm --restart=Never -- "
        "dig SRV %s" % srv_name_to_try(c))
    say("  kubectl delete po kubia-0                     # it comes back with its data")
    say("  kubectl scale statefulset kubia --replicas 4  # and: edit, rollout status, logs")
    say("  %s%s node-down kubia-sim-1     # section 10.5; back with node-up" % (me, cl))
    prometheus.say_try(c)
    say("Take it down: %s%s down   (the volumes stay; add --delete-volumes to drop them)"
        % (me, cl))


def srv_name_to_try(c):
    """The name to dig for the pods' SRV records: the book's bare name where cluster DNS
    serves it, else the first named port's (the specification's)."""
    if c.st.get("dns_mode", "coredns") == "coredns":
        return c.domain()
    template = c.st["templates"][c.st["update_revision"]]
    named = [p for p in template.get("srv_ports") or [] if p["name"]]
    if not named:
        return c.domain()
    return "_%s._%s.%s" % (named[0]["name"], named[0]["protocol"], c.domain())


def cmd_up(c, a):
    if os.geteuid() != 0:
        raise SimError("kubia-sim needs root (network namespaces, mounts)")
    # The manifest first: a bad one leaves a running cluster alone, even with --recreate.
    source, replicas, template, ctl = up_template(a)
    if a.empty:
        replicas = 0  # the StatefulSet comes through the API (kubectl create -f)
    version = apiseed.check_version(a.kubernetes_version)
    apiseed.check_history(a)
    if a.node_lost_grace < 0:
        raise SimError("--node-lost-grace %g: 0 or more" % a.node_lost_grace)
    if a.pod_eviction_timeout < 0:
        raise SimError("--pod-eviction-timeout %g: 0 or more" % a.pod_eviction_timeout)
    check_count(a.nodes)
    rev = revision_of(template)
    if c.st is not None and a.recreate:
        cmd_down(c, argparse.Namespace(delete_volumes=False))
    if c.st is not None:
        raise SimError("cluster %r is already up (kubectl get po; kubia-sim%s down to end it)"
                       % (c.name, "" if c.name == "kubia" else " --cluster " + c.name))
    if not 0 <= a.endpoint_lag <= 60:
        raise SimError("--endpoint-lag %g: 0 to 60 seconds" % a.endpoint_lag)
    base = free_subnet(a)
    prom = prometheus.plan(a)
    os.makedirs(os.path.join(c.run, "pods"), exist_ok=True)
    os.makedirs(c.volumes, exist_ok=True)
    c.st = {"cluster": c.name, "namespace": a.namespace, "subnet": base,
            "api_port": a.api_port, "api_ipv6": port_free("::1", a.api_port, socket.AF_INET6),
            "replicas": replicas, "partition": ctl.pop("partition"), "controller": ctl,
            "templates": {rev: template}, "history": [rev],
            "current_revision": rev, "update_revision": rev, "source": source,
            "node_lost_grace_s": a.node_lost_grace,
            "pod_eviction_timeout_s": a.pod_eviction_timeout,
            "backoff_ms": a.restart_backoff_ms, "ready_timeout_s": a.ready_timeout,
            "pods": {}, "orphans": [], "generations": {}, "endpoints": [],
            "dns": None, "nginx": None, "dns_log_queries": a.log_dns_queries,
            "dns_mode": a.cluster_dns, "endpoint_lag_s": a.endpoint_lag}
    c.st["nodes"] = make_nodes(c, a.nodes)
    apiseed.seed(c, a, source, template, version)
    c.save()
    net_up(c)
    c.st["net_up"] = True
    c.save()
    prometheus.start(c, prom)
    publish(c, force=True)
    run_root, data_root = os.path.dirname(c.run), os.path.dirname(os.path.dirname(c.volumes))
    c.st["endpoints_controller"], _ = spawn(
        [sys.executable, c.launcher, "_endpoints", c.name, run_root, data_root, c.launcher],
        os.path.join(c.run, "endpoints.log"))
    c.save()
    c.st["apiserver"], _ = spawn(
        [sys.executable, c.launcher, "_apiserver", c.name, run_root, data_root, c.launcher],
        os.path.join(c.run, "apiserver.log"))
    c.save()
    apiseed.wait_serving(c)
    c.st["api"]["kubeconfig"] = kubeconfig.add(c.name, a.api_port, a.namespace)
    c.save()
    say("kubectl: context %s (server http://127.0.0.1:%d, Kubernetes %s) is current in %s"
        % (c.st["api"]["kubeconfig"]["context"], a.api_port, version,
           c.st["api"]["kubeconfig"]["path"]))
    if a.empty:
        say("no Services and no StatefulSet yet: kubectl create -f k8s/base/...")
        return
    say("service/%s created (headless; cluster DNS at %s answers for %s%s)"
        % (STS, c.dns_ip, c.domain(), "" if a.cluster_dns == "coredns" else
           " with the DNS specification's records only: SRV for named ports"))
    say("service/%s created" % PUBLIC)
    say("statefulset.apps/%s created from %s (replicas %d, %s mode)"
        % (STS, source, replicas, template["env"].get("KUBIA_MODE", "peers")))
    converge(c)
    try_next(c)


def up_template(a):
    """(source, replicas, template) of the StatefulSet that `up` creates: its manifest with
    the command line's changes, once the binary or image and the tools are there."""
    binary = os.path.abspath(a.binary)
    if a.runtime == "process" and not os.access(binary, os.X_OK):
        raise SimError("no kubia binary at %s (build it: meson setup build && ninja -C build)"
                       % binary)
    for t in ("ip", "unshare", "dnsmasq", "nginx"):
        tool(t)
    source, s = read_manifest(a.file)
    ctl = controller_of(source, s)
    replicas = s["replicas"] if a.replicas is None else a.replicas
    check_ordinals(replicas, ctl["ordinals_start"])
    base_t = {"runtime": a.runtime}
    if a.runtime == "podman":
        tool("podman")
    else:
        base_t["binary"] = binary
    return source, replicas, template_of(source, s, base_t, a), ctl


def check_ordinals(replicas, start):
    if replicas < 0 or start + replicas > MAX_ORDINALS:
        raise SimError("replicas %d from ordinal %d: kubia-sim has ordinals 0 to %d"
                       % (replicas, start, MAX_ORDINALS - 1))


def free_subnet(a):
    """The first three octets of --subnet, once it is a /24 that nothing on this machine
    uses, the API port is free and the namespace is a valid name."""
    try:
        net = ipaddress.ip_network(a.subnet)
    except ValueError as e:
        raise SimError("--subnet %s: %s" % (a.subnet, e))
    if net.prefixlen != 24 or net.version != 4:
        raise SimError("--subnet %s: give an IPv4 /24, e.g. 10.244.0.0/24" % a.subnet)
    base = str(net.network_address).rsplit(".", 1)[0]
    if not subnet_free(base):
        raise SimError("--subnet %s is already in use on this machine; pick another" % a.subnet)
    if not port_free("127.0.0.1", a.api_port):
        raise SimError("localhost:%d is in use (is kubectl proxy running?); "
                       "pick another with --api-port" % a.api_port)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", a.namespace):
        raise SimError("--namespace %r: a Kubernetes namespace is a DNS label (lower-case "
                       "letters, digits and '-', at most 63)" % a.namespace)
    return base


def cmd_down(c, a):
    st = c.st or {}
    ip = tool("ip")
    stop_ref(st.get("apiserver"), 5)
    stop_ref(st.get("endpoints_controller"), 5)  # it would publish what goes away
    kubeconfig.remove((st.get("api") or {}).get("kubeconfig"))
    pods = list(st.get("pods", {}).values()) + list(st.get("orphans", []))
    for p in pods:  # all kubelets at once: they stop their containers in parallel,
        # without preStop hooks (SIGINT): no Service routes to the pods any more
        signal_ref(p.get("kubelet"), signal.SIGINT)
    for p in pods:
        with contextlib.suppress(SimError):
            stop_ref(p.get("kubelet"), p.get("grace_s", 30) + 5)
        s = pod_state(c, p) if "netns" in p else {}
        if s.get("pid"):
            stop_ref({"pid": s["pid"], "start": s.get("start")}, 5)
    for key in ("dns", "nginx", "nginx_front"):
        stop_ref(st.get(key), 5)
    prometheus.stop(c)
    if any(t.get("runtime") == "podman" for t in st.get("templates", {}).values()):
        # a container whose `podman run` was killed keeps running under conmon
        r = sh(tool("podman"), *PODMAN_FLAGS, "ps", "-a", "--format", "{{.Names}}",
               check=False)
        ours = [n for n in r.stdout.split() if n.startswith(c.prefix)]
        if ours:
            sh(tool("podman"), *PODMAN_FLAGS, "rm", "-f", "-t", "0", *ours, check=False)
    # Anything left in namespaces of ours (a pod started just before a crash of this
    # command) was started by us too.
    for line in sh(ip, "netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(c.prefix):
            for pid in sh(ip, "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh(ip, "netns", "del", ns, check=False)
            shutil.rmtree(os.path.join("/etc/netns", ns), ignore_errors=True)
    if os.path.exists("/sys/class/net/" + c.host_if):
        sh(ip, "link", "del", c.host_if, check=False)
    shutil.rmtree(c.run, ignore_errors=True)
    if st and st["controller"]["when_deleted"] == "Delete" and not a.delete_volumes:
        for claim in sorted(os.listdir(c.volumes)) if os.path.isdir(c.volumes) else []:
            shutil.rmtree(os.path.join(c.volumes, claim), ignore_errors=True)
            say("persistentvolumeclaim \"%s\" deleted (whenDeleted: Delete)" % claim)
    if a.delete_volumes:
        shutil.rmtree(os.path.dirname(c.volumes), ignore_errors=True)
        say("persistentvolumeclaims of cluster %s deleted" % c.name)
    if st:
        say("statefulset.apps/%s deleted; services %s and %s deleted" % (STS, STS, PUBLIC))
    else:
        say("cluster %s was not up; nothing of it is left" % c.name)
    c.st = None


def cmd_probe(c, a):
    """Every kubelet probes readiness now, and its result counts at once; then the
    endpoints are published."""
    st = c.require_up()
    t0 = time.time()
    pods = [p for p in st["pods"].values() if alive(p.get("kubelet"))]
    for p in pods:
        signal_ref(p["kubelet"], signal.SIGUSR1)

    def probed():
        return all((pod_state(c, p).get("probed_at") or 0) >= t0 or
                   pod_state(c, p).get("state") != "Running" for p in pods)
    wait_for(probed, 10, "the kubelets to probe readiness")
    ready = publish(c, force=True)
    say("endpoints %s: %s" % (STS, ", ".join(p["name"] for p in ready) or "<none>"))


def cmd_dns(c, a):
    st = c.require_up()
    if a.action == "stop":
        dns_stop(c)
        say("cluster DNS stopped")
    else:
        st["dns_stopped"] = False
        c.save()
        publish(c)
        say("cluster DNS started at %s" % c.dns_ip)
