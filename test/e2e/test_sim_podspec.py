"""The simulated cluster (kubia-sim), not kubia: the pod template's own fields. Each one
is honoured or refused: a field kubia-sim does not implement stops `up` and `rollout`
with the field named and nothing started; nodeSelector is matched against the node's
labels (a pod that does not match stays Pending, out of DNS); init containers run to
completion, in order, as their user, with the claim mounted, before kubia starts, and
one that fails keeps the pod from starting (Init:Error, then Init:CrashLoopBackOff).
A failure here means kubia-sim broke, not kubia.
"""

import copy
import os
import platform
import re
import subprocess

import pytest

from conftest import IMAGE, image_available, wait_until
from ststest import stays
from test_sim_manifest import book_statefulset, container, write

DOMAIN = "kubia.default.svc.cluster.local"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def pod_spec(sts):
    return sts["spec"]["template"]["spec"]


def change_init(pod):
    pod["initContainers"] = [{"name": "setup", "image": "docker.io/library/busybox:1.36.1",
                              "imagePullPolicy": "Always", "command": ["true"]}]


REFUSED = [
    # (what, change, the field the error names)
    ("affinity", lambda s: pod_spec(s).update(affinity={"nodeAffinity": {}}), "affinity"),
    ("tolerations", lambda s: pod_spec(s).update(tolerations=[{"operator": "Exists"}]),
     "tolerations"),
    ("volumes", lambda s: pod_spec(s).update(volumes=[{"name": "tmp", "emptyDir": {}}]),
     "volumes"),
    ("hostNetwork", lambda s: pod_spec(s).update(hostNetwork=True), "hostNetwork"),
    ("dnsPolicy", lambda s: pod_spec(s).update(dnsPolicy="ClusterFirst"), "dnsPolicy"),
    ("a service account token", lambda s: pod_spec(s).update(
        automountServiceAccountToken=True), "automountServiceAccountToken true"),
    ("service links by default", lambda s: pod_spec(s).pop("enableServiceLinks"),
     "enableServiceLinks unset"),
    ("supplementalGroups", lambda s: pod_spec(s)["securityContext"].update(
        supplementalGroups=[5]), "securityContext sets supplementalGroups"),
    ("startupProbe", lambda s: container(s).update(startupProbe=copy.deepcopy(
        container(s)["readinessProbe"])), "startupProbe"),
    ("imagePullPolicy Always", lambda s: container(s).update(imagePullPolicy="Always"),
     "imagePullPolicy Always"),
    ("a latest image, pulled Always by default", lambda s: (
        container(s).pop("imagePullPolicy"), container(s).update(image="kubia:latest")),
     "imagePullPolicy Always"),
    ("envFrom", lambda s: container(s).update(envFrom=[{"configMapRef": {"name": "x"}}]),
     "envFrom"),
    ("workingDir", lambda s: container(s).update(workingDir="/tmp"), "workingDir"),
    ("privileged", lambda s: container(s)["securityContext"].update(privileged=True),
     "privileged true"),
    ("seLinuxOptions", lambda s: container(s)["securityContext"].update(
        seLinuxOptions={"level": "s0"}), "securityContext sets seLinuxOptions"),
    ("a postStart hook", lambda s: container(s)["lifecycle"].update(
        postStart={"sleep": {"seconds": 1}}), "lifecycle sets postStart"),
    ("probe headers", lambda s: container(s)["readinessProbe"]["httpGet"].update(
        httpHeaders=[{"name": "X", "value": "y"}]), "httpGet sets httpHeaders"),
    ("a subPath", lambda s: container(s)["volumeMounts"][0].update(subPath="x"),
     "volumeMounts[0] sets subPath"),
    ("a hostPort", lambda s: container(s)["ports"][0].update(hostPort=8080),
     "ports[0] sets hostPort"),
    ("ephemeral storage", lambda s: container(s)["resources"]["limits"].update(
        {"ephemeral-storage": "1Gi"}), "resources.limits sets ephemeral-storage"),
    ("an init container pulled Always", lambda s: change_init(pod_spec(s)),
     "initContainers[0] (setup).imagePullPolicy Always"),
    ("an init container's probe", lambda s: (change_init(pod_spec(s)), pod_spec(s)[
        "initContainers"][0].update(imagePullPolicy="IfNotPresent", readinessProbe={})),
     "initContainers[0] (setup) sets readinessProbe"),
]


def netns_of(sim):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if sim.name in line]


@pytest.mark.parametrize("what,change,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_pod_field_kubia_sim_does_not_honour_is_refused_and_nothing_starts(
        sim, tmp_path, what, change, field):
    sts = book_statefulset()
    change(sts)
    path = write(tmp_path, "sts.yaml", sts)
    r = sim.up(None, None, manifest=path, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "-f %s" % path in r.stderr and field in r.stderr, r.stderr
    assert "kubia-sim does not implement" in r.stderr or "kubia-sim implements" in r.stderr
    assert sim.cli("probe", check=False).returncode == 1  # not up
    assert netns_of(sim) == [] and sim.leftovers() == []


def test_a_rollout_to_a_field_kubia_sim_does_not_honour_changes_nothing(sim, tmp_path):
    sts = book_statefulset()
    sts["spec"]["replicas"] = 1
    sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    before = sim.status()
    pod_spec(sts)["tolerations"] = [{"operator": "Exists"}]
    r = sim.kubectl("apply", "-f", write(tmp_path, "apply.yaml", sts), check=False)
    assert r.returncode == 1 and "sets tolerations" in r.stderr, r.stderr
    after = sim.status()
    assert after["templates"] == before["templates"] and after["pods"] == before["pods"]


def srv_targets(sim):
    out = sim.dig("+short", "SRV", DOMAIN)
    return sorted(line.split()[3].split(".")[0] for line in out.splitlines())


def unschedulable(sim, pod):
    """Why the pod is Pending, as its PodScheduled condition says."""
    p = sim.get("po", pod)
    assert p["status"]["phase"] == "Pending", p["status"]
    return [c.get("message", "") for c in p["status"]["conditions"]
            if c["type"] == "PodScheduled"][0]


def test_a_pod_whose_node_selector_does_not_match_stays_pending_out_of_dns(sim, tmp_path):
    sts = book_statefulset()  # two pods, OrderedReady
    pod_spec(sts)["nodeSelector"] = {"kubernetes.io/os": "linux",
                                     "kubernetes.io/arch": "no-such-arch"}
    r = sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    st = sim.status()
    assert st["pods"] == {} and st["pending"] == ["kubia-0", "kubia-1"], r.stdout
    assert sim.endpoints() == [] and srv_targets(sim) == []
    out = sim.kubectl("get", "po").stdout
    assert re.search(r"^kubia-0\s+0/1\s+Pending", out, re.M), out
    why = unschedulable(sim, "kubia-0")
    assert re.search(r"didn't match Pod's node affinity/selector \(nodeSelector "
                     r"kubernetes.io/arch=no-such-arch; node kubia-sim-1 has "
                     r"kubernetes.io/arch=%s\)" % ARCH, why), why
    # the template fixed (kubectl apply): the pods are scheduled on the one node it
    # names, and run
    pod_spec(sts)["nodeSelector"] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": ARCH,
                                     "kubernetes.io/hostname": "kubia-sim-2"}
    sim.kubectl("apply", "-f", write(tmp_path, "apply.yaml", sts))
    sim.wait_pods(2)
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0", "kubia-1"] and st["pending"] == []
    assert [p["node"] for p in st["pods"].values()] == ["kubia-sim-2"] * 2
    wait_until(lambda: srv_targets(sim) == ["kubia-0", "kubia-1"], 10, "both in DNS")
    # and a rolling update to a template no node matches stops at its first pod
    pod_spec(sts)["nodeSelector"] = {"disktype": "ssd"}
    sim.kubectl("apply", "-f", write(tmp_path, "apply2.yaml", sts))
    wait_until(lambda: sorted(sim.status()["pods"]) == ["kubia-0"] and
               sim.status()["pending"] == ["kubia-1"], 30, "kubia-1 replaced, Pending")
    stays(lambda: sorted(sim.status()["pods"]) == ["kubia-0"], 1,
          "the update went on past its Pending pod")
    why = unschedulable(sim, "kubia-1")
    assert "nodeSelector disktype=ssd; node kubia-sim-1 has no label disktype" in why, why
    wait_until(lambda: srv_targets(sim) == ["kubia-0"], 10, "kubia-1 out of DNS")


# when (seconds since boot, as a process's start time counts), as whom
MARKER = ('cut -d" " -f1 /proc/uptime >/var/data/init-marker; '
          'id -u >>/var/data/init-marker; chown 10001:10001 /var/data')


def init_container(name, script, **security):
    return {"name": name, "image": "docker.io/library/busybox:1.36.1",
            "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", script],
            "securityContext": dict(allowPrivilegeEscalation=False, **security),
            "volumeMounts": [{"name": "data", "mountPath": "/var/data"}]}


def started_at(pid):
    """When a process started, in seconds since boot."""
    with open("/proc/%d/stat" % pid) as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


def test_init_containers_run_in_order_as_their_user_before_kubia(sim, tmp_path):
    sts = book_statefulset()
    sts["spec"]["replicas"] = 1
    # the first as root hands the volume to 10001, which the second (the pod's user)
    # can write to only then
    pod_spec(sts)["initContainers"] = [
        init_container("marker", MARKER, runAsUser=0, runAsNonRoot=False,
                       capabilities={"drop": ["ALL"], "add": ["CHOWN"]}),
        init_container("second", "id -u >/var/data/init-second; hostname >>"
                       "/var/data/init-second")]
    sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    s = sim.status()["pod_status"]["kubia-0"]
    assert s["state"] == "Running" and s["restarts"] == 0
    with open(os.path.join(sim.volume(0), "init-marker")) as f:
        when, uid = f.read().split()
    assert uid == "0"
    assert float(when) <= started_at(s["container_pid"]) + 0.01  # one tick
    with open(os.path.join(sim.volume(0), "init-second")) as f:
        assert f.read().split() == ["10001", "kubia-0"]
    assert os.stat(sim.volume(0)).st_uid == 10001
    # kubia's own data works on the volume the init containers prepared
    assert sim.post_pod("kubia-0", "after the init containers").status == 200
    assert sim.get_pod("kubia-0", "/data").body == "after the init containers"


def test_a_failing_init_container_keeps_the_pod_from_starting(sim, tmp_path):
    sts = book_statefulset()
    sts["spec"]["replicas"] = 1
    pod_spec(sts)["initContainers"] = [init_container("fails", "echo cannot; false",
                                                      runAsUser=0, runAsNonRoot=False)]
    r = sim.up(None, None, "--ready-timeout", 3, "--restart-backoff-ms", 200,
               manifest=write(tmp_path, "sts.yaml", sts), check=False)
    assert r.returncode == 1 and "pod kubia-0 to become ready" in r.stderr, r.stderr
    assert "Init:" in r.stderr and "init container fails: cannot" in r.stderr, r.stderr

    def backing_off():
        s = sim.status()["pod_status"]["kubia-0"]
        return s if s.get("restarts", 0) >= 2 else None
    s = wait_until(backing_off, 20, "the init container to fail twice", 0.2)
    assert s["state"] in ("Init:Error", "Init:CrashLoopBackOff"), s
    assert s["last_exit"] == "exit 1" and not s["ready"]
    out = sim.kubectl("get", "po").stdout
    assert re.search(r"^kubia-0\s+0/1\s+Init:(Error|CrashLoopBackOff|0/1)\s", out, re.M), out
    assert sim.endpoints() == []
    # kubia never started: it has no log, exec finds no container
    r = sim.kubectl("logs", "kubia-0", check=False)
    assert r.returncode == 1 and 'container "kubia" in pod "kubia-0" is waiting to start' \
        in r.stderr, r.stderr
    out = sim.kubectl("logs", "kubia-0", "-c", "fails").stdout
    assert out.startswith("cannot\ncannot\n"), out
    r = sim.exec("kubia-0", "true", check=False)
    assert r.returncode == 1 and "container kubia is not running in pod kubia-0" in r.stderr, \
        r.stderr
    # deleted, the pod goes at once (its kubelet was waiting to try again)
    r = sim.kubectl("delete", "po", "kubia-0", timeout=30)
    assert r.stdout == 'pod "kubia-0" deleted\n', r.stdout + r.stderr


def test_podman_runs_an_init_container_from_its_image_and_refuses_a_missing_one(sim,
                                                                                 tmp_path):
    if not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = "podman"
    sts = book_statefulset()
    sts["spec"]["replicas"] = 1
    version = {"name": "version", "image": "localhost/kubia:no-such-tag",
               "imagePullPolicy": "IfNotPresent", "command": ["/usr/bin/kubia"],
               "args": ["--version"], "securityContext": {"readOnlyRootFilesystem": True}}
    pod_spec(sts)["initContainers"] = [version]
    r = sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts), check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert ("image localhost/kubia:no-such-tag of init container version is not on this "
            "machine (ErrImagePull)") in r.stderr, r.stderr
    assert netns_of(sim) == [] and sim.leftovers() == []
    version["image"] = IMAGE
    sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    assert sim.status()["pod_status"]["kubia-0"]["state"] == "Running"
    assert sim.kubectl("logs", "kubia-0", "-c", "version").stdout.startswith("kubia ")
