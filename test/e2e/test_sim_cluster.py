"""The simulated cluster's own parts (kubia-sim), not kubia: cluster DNS as CoreDNS
answers, the API server's proxy and its errors, and the command refusing bad input. A
failure here means kubia-sim broke, not kubia.
"""

import os
import re
import socket
import subprocess

import pytest

from conftest import BASE, KUBIA, SIM, lines_of


def dig(sim, *args):
    return sim.dig("+time=2", "+tries=1", *args)


def test_dig_inside_the_cluster_shows_what_coredns_would(sim):
    sim.up(2, "peers")
    # the chapter's command, from a throwaway pod
    out = dig(sim, "SRV", "kubia.default.svc.cluster.local")
    assert "status: NOERROR" in out
    srv = sorted(m.groups() for m in lines_of(
        out, r"^kubia\.default\.svc\.cluster\.local\.\s+\d+\s+IN\s+SRV\s+0\s+\d+\s+(\d+)\s+(\S+)$"))
    assert srv == [("8080", "kubia-0.kubia.default.svc.cluster.local."),
                   ("8080", "kubia-1.kubia.default.svc.cluster.local.")]
    # the pods' addresses come in the additional section, as CoreDNS sends them
    st = sim.status()
    for pod in ("kubia-0", "kubia-1"):
        assert re.search(r"^%s\.\s+\d+\s+IN\s+A\s+%s$" % (re.escape(sim.fqdn(pod)),
                                                      re.escape(st["pods"][pod]["ip"])),
                         out, re.M), out
    # the named port, the pod names, and the headless Service's own A records
    out = dig(sim, "+short", "SRV", "_http._tcp.kubia.default.svc.cluster.local")
    assert len(out.split("\n")) - 1 == 2 and " 8080 kubia-0.kubia." in out
    out = dig(sim, "+short", "A", "kubia-1.kubia.default.svc.cluster.local")
    assert out == st["pods"]["kubia-1"]["ip"] + "\n"
    out = dig(sim, "+short", "A", "kubia.default.svc.cluster.local")
    assert sorted(out.split()) == sorted(p["ip"] for p in st["pods"].values())
    # names it does not know: NXDOMAIN, inside the cluster's zone and outside it (a
    # resolver asks _http._tcp.kubia as given after its search list), as a cluster
    # answers them, never an error
    for name in ("nothing.default.svc.cluster.local", "_http._tcp.kubia", "kubia",
                 "example.com"):
        assert "status: NXDOMAIN" in dig(sim, "SRV", name), name
    # a pod's resolv.conf is a pod's: the short name resolves through the search list
    out = sim.exec("kubia-0", "cat", "/etc/resolv.conf").stdout
    assert out == ("nameserver %s.1\nsearch default.svc.cluster.local svc.cluster.local "
                   "cluster.local\noptions ndots:5\n" % sim.base)
    out = sim.exec("kubia-0", "hostname").stdout
    assert out == "kubia-0\n"
    out = dig(sim, "+search", "+short", "SRV", "kubia")
    assert "kubia-1.kubia.default.svc.cluster.local." in out
    # the throwaway pod is gone afterwards
    assert not [n for n in os.listdir("/run/netns") if n.startswith("ksim-%s-apirun-"
                                                                    % sim.name)]
    assert "srvlookup" not in sim.kubectl("get", "po").stdout


def test_commands_refuse_bad_input_and_change_nothing(sim):
    r = sim.cli("probe", check=False)
    assert r.returncode == 1 and "is not up" in r.stderr
    # what kubectl says is not kubia-sim's to say
    for cmd in ("status", "scale", "delete", "nodes", "cordon", "uncordon", "rollout",
                "exec", "logs", "run"):
        r = sim.cli(cmd, check=False)
        assert r.returncode == 2 and "invalid choice: '%s'" % cmd in r.stderr, r.stderr
    r = sim.cli("up", "--binary", "/nonexistent/kubia", check=False)
    assert r.returncode == 1 and "no kubia binary at /nonexistent/kubia" in r.stderr
    r = sim.cli("up", "--namespace", "Bad Name", "--binary", KUBIA,
                "--subnet", sim.base + ".0/24", "--api-port", sim.api_port, check=False)
    assert r.returncode == 1 and "a Kubernetes namespace is a DNS label" in r.stderr
    r = sim.cli("up", "--subnet", "10.1.0.0/16", "--binary", KUBIA, check=False)
    assert r.returncode == 1 and "give an IPv4 /24" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = sim.cli("up", "--api-port", busy.getsockname()[1], "--binary", KUBIA,
                    "--subnet", sim.base + ".0/24", check=False)
    assert r.returncode == 1 and "is in use" in r.stderr
    for args, msg in ((("--nodes", 0), "--nodes 0: 1 to 8"), (("--nodes", 9), "--nodes 9"),
                      (("--pod-eviction-timeout", -1), "--pod-eviction-timeout -1")):
        r = sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24",
                    "--api-port", sim.api_port, *args, check=False)
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
    assert sim.leftovers() == []
    sim.up(1, "pet")
    r = sim.up(1, "pet", check=False)
    assert r.returncode == 1 and "is already up" in r.stderr
    for args, msg in ((("cut", "kubia-3"), 'pods "kubia-3" not found'),
                      (("heal", "kubia-0"), "kubia-0 is not cut off"),
                      (("node-down", "kubia-sim-4"), 'nodes "kubia-sim-4" not found'),
                      (("node-up", "kubia-sim-1"), "node kubia-sim-1 is not down")):
        r = sim.cli(*args, check=False)
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
    # and the API server refuses as its own
    for args, msg in ((("delete", "po", "kubia-5"), 'pods "kubia-5" not found'),
                      (("scale", "statefulset", "kubia", "--replicas", 250),
                       "kubia-sim has ordinals 0 to"),
                      (("cordon", "node-1"), 'nodes "node-1" not found')):
        r = sim.kubectl(*args, check=False)
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0"] and st["replicas"] == 1
    r = subprocess.run([SIM, "--cluster", "Bad_Name", "probe"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "cluster name 'Bad_Name'" in r.stderr


def test_proxy_answers_like_the_api_server(sim):
    sim.up(1, "pet")
    r = sim.get_pod("kubia-7")
    assert r.status == 404
    assert r.body == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                      '"message":"pods \\"kubia-7\\" not found","reason":"NotFound",'
                      '"details":{"name":"kubia-7","kind":"pods"},"code":404}\n')
    # no trailing slash, and a query string, reach the pod as the API server sends them
    assert sim.get_pod("kubia-0", "").body.startswith("You've hit kubia-0\n")
    sim.post_pod("kubia-0", "x y")
    assert sim.request("GET", sim.pod_path("kubia-0", "/data?a=1&b=%20")).body == "x y"
    # a body of exactly the default limit passes the proxy; one byte more gets kubia's 413
    big = b"a" * 1048576
    assert sim.request("POST", sim.pod_path("kubia-0"), big).status == 200
    r = sim.request("POST", sim.pod_path("kubia-0"), big + b"b")
    assert r.status == 413 and r.body.startswith("Request body too large")
    assert sim.request("GET", "/api/v1/namespaces/other/pods/kubia-0/proxy/").status == 404


MULTI_PORT_SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: kubia
spec:
  clusterIP: None
  selector:
    app: kubia
  ports:
  - name: http
    port: 8080
    targetPort: http
  - name: admin
    port: 9443
    targetPort: 9443
  - name: gossip
    port: 7946
    protocol: UDP
"""


def srv_answer(sim, name):
    """(status, sorted [(port, target)]) of an SRV query from inside the cluster."""
    out = dig(sim, "+noall", "+comments", "+answer", "SRV", name)
    status = re.search(r"status: (\w+)", out).group(1)
    records = sorted((int(m.group(1)), m.group(2)) for m in re.finditer(
        r"^%s\.\s+\d+\s+IN\s+SRV\s+0\s+\d+\s+(\d+)\s+(\S+)$" % re.escape(name), out, re.M))
    return status, records


@pytest.mark.parametrize("mode", ["coredns", "spec"])
def test_dns_publishes_every_named_port_of_the_headless_service(sim, tmp_path, mode):
    # A headless Service with three named ports: cluster DNS publishes an SRV name per
    # named port, _<name>._<protocol>.kubia.<ns>.svc.cluster.local, each record with the
    # endpoint's port; CoreDNS also answers the bare name, with every port of every
    # pod, and a DNS of the specification only does not.
    path = tmp_path / "multi-port.yaml"
    with open(os.path.join(BASE, "kubia-statefulset-peers.yaml")) as f:
        path.write_text(MULTI_PORT_SERVICE + "---\n" + f.read())
    sim.up(2, None, "--cluster-dns", mode, manifest=str(path))
    domain = "kubia.default.svc.cluster.local"
    pods = ["kubia-0.%s." % domain, "kubia-1.%s." % domain]
    for name, port in (("http", 8080), ("admin", 9443)):
        assert srv_answer(sim, "_%s._tcp.%s" % (name, domain)) == (
            "NOERROR", [(port, t) for t in pods])
    assert srv_answer(sim, "_gossip._udp.%s" % domain) == (
        "NOERROR", [(7946, t) for t in pods])
    # a port name or protocol the Service does not have: no such name
    assert srv_answer(sim, "_gossip._tcp.%s" % domain) == ("NXDOMAIN", [])
    assert srv_answer(sim, "_web._tcp.%s" % domain) == ("NXDOMAIN", [])
    bare = srv_answer(sim, domain)
    if mode == "coredns":
        assert bare == ("NOERROR", sorted((p, t) for p in (7946, 8080, 9443) for t in pods))
    else:
        assert bare == ("NOERROR", [])  # the name exists (A records), without SRV
    # the shipped name (_http._tcp.kubia) finds the pods on their http port either way
    sim.post_pod("kubia-1", "on every port")
    sim.wait_view("kubia-0", {"kubia-0": "No data posted yet", "kubia-1": "on every port"})
