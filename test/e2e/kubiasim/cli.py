"""kubia-sim's command line: the commands and their options, and the dispatch to them
under the cluster's lock. It has only what kubectl cannot say: the cluster up and down,
a node's network, cluster DNS stopped and started, and the endpoints published now;
everything else goes through the API server (kubectl)."""

import argparse
import os
import sys

from .cluster_dns import DNS_MODES
from .apiserver import DEFAULT_VERSION, apiserver_main
from .commands import cmd_dns, cmd_down, cmd_probe, cmd_up
from .endpoints import endpoints_main
from .kubelet import kubelet_main
from .pod_commands import cmd_cut, cmd_heal, cmd_node
from .prometheus import add_options as add_prometheus_options
from .state import Cluster
from .util import SimError

# the repository (this file is test/e2e/kubiasim/cli.py): `up` runs its build/kubia
TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", ".."))


def main(argv, launcher):
    """Runs the command in argv and returns its exit status. launcher is the kubia-sim
    command being run; the kubelets are started with it."""
    if argv[:1] == ["_kubelet"]:
        return kubelet_main(argv[1])
    if argv[:1] == ["_endpoints"]:
        return endpoints_main(argv[1:])
    if argv[:1] == ["_apiserver"]:
        return apiserver_main(argv[1:])
    a = parser().parse_args(argv)
    try:
        c = Cluster(a.cluster, a.run_dir, a.data_dir, launcher)
        if os.geteuid() != 0:
            raise SimError("kubia-sim needs root (network namespaces, mounts)")
        with c.locked():
            rc = a.fn(c, a)
        return rc or 0
    except SimError as e:
        print("kubia-sim: error: %s" % e, file=sys.stderr, flush=True)
        return 1


def parser():
    """kubia-sim's options and commands; `up` has many, below."""
    ap = argparse.ArgumentParser(
        prog="kubia-sim",
        description="Chapter 10's StatefulSet on one machine: kubia pods in namespaces, "
        "real cluster DNS (dnsmasq) and a Kubernetes API server for kubectl on localhost:6443.")
    ap.add_argument("--cluster", default=os.environ.get("KUBIA_SIM_CLUSTER", "kubia"),
                    help="name of the simulated cluster (several can run side by side)")
    ap.add_argument("--run-dir", default=os.environ.get("KUBIA_SIM_RUN", "/run/kubia-sim"),
                    help="runtime state: processes, logs, configuration")
    ap.add_argument("--data-dir", default=os.environ.get("KUBIA_SIM_DATA",
                                                          "/var/lib/kubia-sim"),
                    help="the volumes (persistent volume claims), kept across down/up")
    sub = ap.add_subparsers(dest="cmd", required=True)
    # in the order --help lists them
    add_up(sub)

    p = sub.add_parser("down", help="delete everything of the cluster but its volumes")
    p.add_argument("--delete-volumes", action="store_true")
    p.set_defaults(fn=cmd_down)

    for cmd, what in (("node-down", "a node's network goes down (section 10.5): its pods "
                       "are cut off, NotReady after --node-lost-grace, evicted after "
                       "--pod-eviction-timeout more"),
                      ("node-up", "the node's network is back: its kubelet stops its "
                       "deleted pods, the others are reachable again")):
        p = sub.add_parser(cmd, help=what)
        p.add_argument("node", help="kubia-sim-1, kubia-sim-2, ...")
        p.set_defaults(fn=cmd_node)

    p = sub.add_parser("cut", help="node-down of a pod's node")
    p.add_argument("pod")
    p.set_defaults(fn=cmd_cut)

    p = sub.add_parser("heal", help="node-up of the node of a pod (or of a force-deleted "
                       "pod) that is cut off")
    p.add_argument("pod")
    p.set_defaults(fn=cmd_heal)

    p = sub.add_parser("probe", help="re-probe readiness and publish the endpoints now")
    p.set_defaults(fn=cmd_probe)

    p = sub.add_parser("dns", help="stop or start the cluster DNS")
    p.add_argument("action", choices=("stop", "start"))
    p.set_defaults(fn=cmd_dns)
    return ap


def add_up(sub):
    p = sub.add_parser("up", help="create the Services and the StatefulSet (OrderedReady)")
    p.add_argument("-f", "--filename", dest="file", metavar="SOURCE",
                   help="the StatefulSet: a manifest, or a directory with a "
                   "kustomization.yaml (default: k8s/, the peers StatefulSet; also "
                   "k8s/overlays/<target>, or k8s/base/kubia-statefulset.yaml); replicas, "
                   "port, probes, env, mount path, grace period, image and securityContext "
                   "come from it; the options below override it")
    p.add_argument("--replicas", type=int)
    p.add_argument("--mode", choices=("peers", "pet"), help="sets KUBIA_MODE")
    p.add_argument("--binary", default=os.path.join(TOP, "build", "kubia"))
    p.add_argument("--namespace", default="default")
    p.add_argument("--subnet", default="10.244.0.0/24")
    p.add_argument("--api-port", type=int, default=6443,
                   help="the API server's port on localhost (http; kubectl proxy takes 8001)")
    p.add_argument("--kubernetes-version", default=DEFAULT_VERSION, metavar="1.MINOR",
                   help="the version the API server reports (kubectl's dispatcher runs "
                   "the kubectl of that minor)")
    p.add_argument("--empty", action="store_true",
                   help="no Services and no StatefulSet: the nodes, DNS and the API server "
                   "only, for the chapter's kubectl create -f commands")
    p.add_argument("--grace-period", type=float, help="terminationGracePeriodSeconds")
    p.add_argument("--api-watch-history", type=int, default=20000, metavar="EVENTS",
                   help="the changes the API server keeps for watches that resume from a "
                   "resourceVersion (its watch cache); one from before them gets 410 Gone")
    p.add_argument("--restart-backoff-ms", type=int, default=10000,
                   help="the kubelet's first restart back-off (it doubles)")
    p.add_argument("--ready-timeout", type=float, default=30.0,
                   help="seconds a pod may take to become ready")
    p.add_argument("--env", action="append", help="NAME=VALUE for every pod")
    p.add_argument("--arg", action="append", help="an argument for kubia in every pod")
    p.add_argument("--log-dns-queries", action="store_true")
    p.add_argument("--endpoint-lag", type=float, default=0.0, metavar="SECONDS",
                   help="kube-proxy's lag: a deleted pod leaves the endpoints (cluster DNS "
                   "and kubia-public) a random time of 0 to SECONDS after its kubelet "
                   "begins to stop it (preStop hook, then SIGTERM); default 0: before")
    p.add_argument("--cluster-dns", choices=DNS_MODES, default="coredns",
                   help="the records cluster DNS serves: coredns (the default) as CoreDNS "
                   "and kube-dns do, SRV for the Service's bare name included; spec: only "
                   "the Kubernetes DNS specification's, SRV for named ports only "
                   "(_http._tcp.kubia.<namespace>.svc.cluster.local)")
    p.add_argument("--runtime", choices=("process", "podman"), default="process",
                   help="run each pod as the kubia binary in namespaces, or as a container "
                   "of the image (podman run --network ns:...)")
    add_prometheus_options(p)
    p.add_argument("--image", help="the image for --runtime podman")
    p.add_argument("--user", help="uid:gid of a container (runAsUser:runAsGroup)")
    p.add_argument("--nodes", type=int, default=3,
                   help="the cluster's nodes, kubia-sim-1 .. kubia-sim-N (1 to 8)")
    p.add_argument("--node-lost-grace", type=float, default=10.0, metavar="SECONDS",
                   help="how long a node cut off the network stays Ready, and its pods in "
                   "the endpoints, before it is NotReady and they are Unknown and leave "
                   "them (the node controller's grace period; 40 s in a cluster)")
    p.add_argument("--pod-eviction-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long after a node is NotReady its pods are evicted: "
                   "Terminating, reason NodeLost, never removed until a forced deletion "
                   "or the node's return (5 min in a cluster)")
    p.add_argument("--recreate", action="store_true",
                   help="take the cluster down first if it is up (its volumes stay)")
    p.set_defaults(fn=cmd_up)
