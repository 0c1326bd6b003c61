"""The simulated cluster (kubia-sim), not kubia: the pod template's own fields.
nodeSelector is matched against the node's labels: a pod that does not match stays
Pending, out of DNS. A failure here means kubia-sim broke, not kubia.
"""

import platform
import re

from test_sim_manifest import book_statefulset, write

DOMAIN = "kubia.default.svc.cluster.local"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def pod_spec(sts):
    return sts["spec"]["template"]["spec"]


def srv_targets(sim):
    r = sim.cli("run", "--", "dig", "+short", "SRV", DOMAIN)
    return sorted(line.split()[3].split(".")[0] for line in r.stdout.splitlines())


def test_a_pod_whose_node_selector_does_not_match_stays_pending_out_of_dns(sim, tmp_path):
    sts = book_statefulset()  # two pods, OrderedReady
    pod_spec(sts)["nodeSelector"] = {"kubernetes.io/os": "linux",
                                     "kubernetes.io/arch": "no-such-arch"}
    r = sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    st = sim.status()
    assert st["pods"] == {} and st["pending"] == ["kubia-0", "kubia-1"], r.stdout
    assert st["endpoints"] == [] and srv_targets(sim) == []
    out = sim.cli("status").stdout
    assert re.search(r"^kubia-0\s+0/1\s+Pending", out, re.M), out
    assert re.search(r"^pod/kubia-0 Pending: .*didn't match Pod's node affinity/selector "
                     r"\(nodeSelector kubernetes.io/arch=no-such-arch; node kubia-sim has "
                     r"kubernetes.io/arch=%s\)" % ARCH, out, re.M), out
    # the template fixed (kubectl apply): the pods are scheduled and run
    pod_spec(sts)["nodeSelector"] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": ARCH,
                                     "kubernetes.io/hostname": "kubia-sim"}
    sim.cli("rollout", "-f", write(tmp_path, "apply.yaml", sts))
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0", "kubia-1"] and st["pending"] == []
    assert st["endpoints"] == ["kubia-0", "kubia-1"]
    assert srv_targets(sim) == ["kubia-0", "kubia-1"]
    # and a rolling update to a template no node matches stops at its first pod
    pod_spec(sts)["nodeSelector"] = {"disktype": "ssd"}
    r = sim.cli("rollout", "-f", write(tmp_path, "apply2.yaml", sts))
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0"] and st["pending"] == ["kubia-1"], r.stdout
    assert "nodeSelector disktype=ssd; node kubia-sim has no label disktype" in r.stdout
    assert srv_targets(sim) == ["kubia-0"]


# when (seconds since boot, as a process's start time counts), as whom
