"""kubia against a cluster DNS that serves only what the Kubernetes DNS specification
defines (kubia-sim up --cluster-dns spec): SRV records for the named ports of the
headless Service, _<port>._<proto>.<service>.<namespace>.svc.cluster.local, and none for
the bare Service name, which CoreDNS and kube-dns answer only as their extension. The
shipped manifests give kubia the named port's SRV name (_http._tcp.kubia), so the
chapter's cluster view comes out byte for byte the same there.
"""

import os
import re

import pytest

from conftest import K8S, Sim


def dig(sim, *args):
    return sim.dig("+time=2", "+tries=1", *args)


def srv_queries_from_pods(sim):
    """The SRV names the pods asked cluster DNS (its query log), as a set."""
    st = sim.status()
    ips = {p["ip"] for p in st["pods"].values()}
    with open(os.path.join(st["run"], "dnsmasq.log")) as f:
        log = f.read()
    return {m.group(1) for m in re.finditer(r"query\[SRV\] (\S+) from (\S+)", log)
            if m.group(2) in ips}


@pytest.mark.parametrize("namespace,source", [("default", None),
                                              ("shop", "overlays/kind")])
def test_the_chapters_cluster_view_with_the_specifications_dns(tmp_path, namespace,
                                                                source):
    s = Sim(tmp_path)
    s.ns = namespace
    try:
        manifest = os.path.join(K8S, source) if source else None
        r = s.up(None, None, "--cluster-dns", "spec", "--log-dns-queries",
                 manifest=manifest)
        assert "DNS specification's records only" in r.stdout
        domain = "kubia.%s.svc.cluster.local" % namespace
        # the DNS serves the specification only: the bare name has addresses, no SRV
        out = dig(s, "SRV", domain)
        assert "status: NOERROR" in out and "ANSWER: 0," in out, out
        out = dig(s, "+short", "SRV", "_http._tcp." + domain)
        assert sorted(line.split()[3] for line in out.splitlines()) == [
            "%s.%s." % (p, domain) for p in ("kubia-0", "kubia-1", "kubia-2")], out
        assert all(line.split()[2] == "8080" for line in out.splitlines()), out

        # the chapter's section 10.4: data posted through kubia-public, then every
        # pod's view of the cluster, as the book prints it
        stored = {}
        for body in ("The sun is shining", "The weather is sweet", "It's raining"):
            r = s.post_svc(body)
            m = re.fullmatch(r"Data stored on pod (kubia-[0-2])\n", r.body)
            assert r.status == 200 and m, r
            stored[m.group(1)] = body
        assert sorted(stored) == ["kubia-0", "kubia-1", "kubia-2"]
        for pod in sorted(stored):
            r = s.wait_view(pod, stored)
            assert "- kubia-0.%s: %s\n" % (domain, stored["kubia-0"]) in r.body
        # what kubia asked: the named port's name in its own namespace, through the
        # search list, and nothing else
        assert srv_queries_from_pods(s) == {"_http._tcp." + domain}
    finally:
        s.remember()
        s.cli("down", "--delete-volumes", check=False)
        assert s.leftovers() == []
        assert s.sanitizer_reports() == []
