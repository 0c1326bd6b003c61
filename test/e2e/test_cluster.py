"""The simulated cluster itself: DNS as CoreDNS answers it, a cluster of twenty pods, the
command's errors, and cleaning up after a failure."""

import os
import re
import socket
import subprocess

from conftest import KUBIA, SIM, Sim, lines_of


def dig(sim, *args):
    r = sim.cli("run", "--", "dig", "+time=2", "+tries=1", *args)
    return r.stdout


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
    # names it does not know: NXDOMAIN
    assert "status: NXDOMAIN" in dig(sim, "SRV", "nothing.default.svc.cluster.local")
    # a pod's resolv.conf is a pod's: the short name resolves through the search list
    out = sim.cli("exec", "kubia-0", "--", "cat", "/etc/resolv.conf").stdout
    assert out == ("nameserver %s.1\nsearch default.svc.cluster.local svc.cluster.local "
                   "cluster.local\noptions ndots:5\n" % sim.base)
    out = sim.cli("exec", "kubia-0", "--", "hostname").stdout
    assert out == "kubia-0\n"
    out = dig(sim, "+search", "+short", "SRV", "kubia")
    assert "kubia-1.kubia.default.svc.cluster.local." in out
    # the throwaway pod is gone afterwards
    assert not [n for n in os.listdir("/run/netns") if "-run-" in n and sim.name in n]


def test_other_namespace(tmp_path):
    s = Sim(tmp_path)
    s.ns = "shop"
    try:
        s.up(2, "peers")
        s.post_pod("kubia-1", "in shop")
        r = s.wait_view("kubia-0", {"kubia-0": "No data posted yet", "kubia-1": "in shop"})
        assert "kubia-1.kubia.shop.svc.cluster.local: in shop" in r.body
    finally:
        s.remember()
        s.cli("down", "--delete-volumes", check=False)
        assert s.leftovers() == []
        assert s.sanitizer_reports() == []


def test_twenty_pods_in_one_view(sim):
    r = sim.up(20, "peers")
    created = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")]
    assert created == ["kubia-%d" % i for i in range(20)]
    data = {}
    for i in range(0, 20, 3):
        sim.post_pod("kubia-%d" % i, "twenty %d" % i)
    for i in range(20):
        data["kubia-%d" % i] = "twenty %d" % i if i % 3 == 0 else "No data posted yet"
    r = sim.wait_view("kubia-13", data)
    # one request, every pod, in natural order (kubia-2 before kubia-10)
    names = [m.group(1) for m in lines_of(r.body, r"^- (kubia-\d+)\.")]
    assert names == ["kubia-%d" % i for i in range(20)]
    assert r.elapsed < 2.0


def test_commands_refuse_bad_input_and_change_nothing(sim):
    r = sim.cli("status", check=False)
    assert r.returncode == 1 and "is not up" in r.stderr
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
    assert sim.leftovers() == []
    sim.up(1, "pet")
    r = sim.up(1, "pet", check=False)
    assert r.returncode == 1 and "is already up" in r.stderr
    for args, msg in ((("delete", "pod", "kubia-5"), 'pods "kubia-5" not found'),
                      (("delete", "pod", "web-0"), "no pod 'web-0'"),
                      (("scale", -1), "replicas -1"),
                      (("cut", "kubia-3"), 'pods "kubia-3" not found'),
                      (("heal", "kubia-0"), "kubia-0 is not cut off"),
                      (("rollout", "--env", "NOEQUALS"), "give NAME=VALUE"),
                      (("run",), "give a command")):
        r = sim.cli(*args, check=False)
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0"] and st["replicas"] == 1
    r = subprocess.run([SIM, "--cluster", "Bad_Name", "status"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "cluster name 'Bad_Name'" in r.stderr


def test_a_pod_that_never_gets_ready_stops_the_rollout_and_down_cleans_up(sim, tmp_path):
    broken = str(tmp_path / "broken")
    with open(broken, "w") as f:
        f.write("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    os.chmod(broken, 0o755)
    sim.up(2, "pet", "--ready-timeout", 2, "--restart-backoff-ms", 200)
    r = sim.cli("rollout", "--binary", broken, check=False)
    assert r.returncode == 1
    assert "kubia-1 to become ready" in r.stderr and "cannot start" in r.stderr
    st = sim.status()
    # kubia-1 crash-loops on the new revision; kubia-0 was not touched
    assert st["pod_status"]["kubia-1"]["restarts"] >= 1
    assert st["pod_status"]["kubia-1"]["last_exit"] == "exit 3"
    assert st["pod_status"]["kubia-1"]["reason"] == "cannot start"
    assert st["pods"]["kubia-0"]["revision"] == st["current_revision"]
    assert sim.get_pod("kubia-0", "/data").body == "No data posted yet"
    # the fixture's down must leave nothing, even with a pod in back-off
