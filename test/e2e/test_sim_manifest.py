"""The simulated cluster (kubia-sim), not kubia: it runs what the manifests say. The
pods' replicas, port, probes, environment, mount path, grace period, user and
securityContext come from k8s/ (or from the file given with -f), not from the harness;
its kubelet runs the liveness and readiness probes they name; and it refuses manifests
and images it cannot run. Each test changes a copy of the book's StatefulSet and checks
that the pods follow the change. A failure here means kubia-sim broke, not kubia.
"""

import copy
import json
import re
import os
import signal
import subprocess

import pytest

from conftest import BASE, IMAGE, K8S, image_available, wait_until
from kubiasim import manifests

PET = os.path.join(BASE, "kubia-statefulset.yaml")


def book_statefulset():
    [sts] = manifests.find(manifests.load(PET), "StatefulSet")
    return sts


def container(sts):
    return sts["spec"]["template"]["spec"]["containers"][0]


def set_env(c, name, value):
    for e in c["env"]:
        if e["name"] == name:
            e["value"] = value
            return
    c["env"].append({"name": name, "value": value})


def write(tmp_path, name, *objects):
    """The objects as a multi-document manifest (JSON is YAML)."""
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write("\n---\n".join(json.dumps(o, indent=1) for o in objects))
    return path


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        pairs = f.read().decode().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def fast_liveness(sts, **probe):
    c = container(sts)
    c["livenessProbe"].update(periodSeconds=1, timeoutSeconds=1, failureThreshold=2, **probe)
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1


def test_the_default_is_the_kustomization_and_the_pods_get_its_environment(sim):
    want = manifests.settings()  # what kubectl kustomize k8s/ renders
    r = sim.up(None, None)
    assert "(replicas %d, %s mode)" % (want["replicas"], want["env"]["KUBIA_MODE"]) in r.stdout
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-%d" % i for i in range(want["replicas"])]
    for name in st["pods"]:
        env = environ(st["pod_status"][name]["container_pid"])
        for k, v in want["env"].items():
            assert env.get(k) == v, (name, k)
    template = st["templates"][st["current_revision"]]
    assert template["readiness"]["path"] == want["readiness_path"]
    assert template["liveness"]["path"] == want["liveness_path"]
    assert template["grace_s"] == want["termination_grace_period_seconds"]


def test_port_mount_path_environment_and_replicas_come_from_the_manifest(sim, tmp_path):
    sts = book_statefulset()
    sts["spec"]["replicas"] = 2
    c = container(sts)
    c["ports"][0]["containerPort"] = 9090
    set_env(c, "KUBIA_PORT", "9090")
    set_env(c, "KUBIA_DATA_FILE", "/var/kubia/stored.txt")
    set_env(c, "KUBIA_MAX_BODY", "100")
    c["volumeMounts"][0]["mountPath"] = "/var/kubia"
    [headless] = manifests.load(os.path.join(BASE, "kubia-service-headless.yaml"))
    path = write(tmp_path, "sts.yaml", headless, sts)

    r = sim.up(None, None, manifest=path)
    assert "(replicas 2, pet mode)" in r.stdout
    assert sorted(sim.status()["pods"]) == ["kubia-0", "kubia-1"]
    # the API server's proxy reaches the pods on the manifest's port
    r = sim.post_pod("kubia-1", "stored where the manifest says")
    assert (r.status, r.body) == (200, "Data stored on pod kubia-1\n")
    with open(os.path.join(sim.volume(1), "stored.txt")) as f:
        assert f.read() == "stored where the manifest says"
    # the environment's limit is kubia's limit
    r = sim.post_pod("kubia-1", "x" * 101)
    assert r.status == 413
    assert sim.get_pod("kubia-1", "/data").body == "stored where the manifest says"
    # cluster DNS gives the port the headless Service targets (the port named http)
    out = sim.dig("+short", "SRV", "kubia.default.svc.cluster.local")
    ports = sorted(line.split()[2] for line in out.splitlines())
    assert ports == ["9090", "9090"], out


def make_volume_read_only(sim, pod, mount_path="/var/data"):
    """The pod's volume turns read-only under it: kubia's /readyz fails (503), while
    every other GET path still answers 200."""
    sim.exec(pod, "mount", "-o", "remount,bind,ro", mount_path)


@pytest.mark.parametrize("path,published", [("/readyz", False), ("/healthz", True)])
def test_the_readiness_probe_path_is_the_manifests(sim, tmp_path, path, published):
    sts = book_statefulset()
    sts["spec"]["replicas"] = 1
    container(sts)["readinessProbe"]["httpGet"]["path"] = path
    sim.up(None, None, manifest=write(tmp_path, "sts.yaml", sts))
    assert sim.endpoints() == ["kubia-0"]
    make_volume_read_only(sim, "kubia-0")
    assert sim.get_pod("kubia-0", "/readyz").status == 503
    r = sim.cli("probe")
    assert ("endpoints kubia: %s" % ("kubia-0" if published else "<none>")) in r.stdout
    wait_until(lambda: sim.endpoints() == (["kubia-0"] if published else []), 5,
               "the endpoints the probe found")


def test_a_hung_pod_is_restarted_by_its_liveness_probe_with_its_data(sim, tmp_path):
    sts = book_statefulset()
    fast_liveness(sts)
    path = write(tmp_path, "sts.yaml", sts)
    sim.up(None, None, "--restart-backoff-ms", 200, manifest=path)
    sim.post_pod("kubia-1", "kept across the restart")
    pid = sim.status()["pod_status"]["kubia-1"]["container_pid"]
    os.kill(pid, signal.SIGSTOP)  # hung: the process is there but answers nothing

    def restarted():
        s = sim.status()["pod_status"]["kubia-1"]
        return s if s.get("restarts", 0) >= 1 and s.get("state") == "Running" else None
    s = wait_until(restarted, 20, "the liveness probe to restart kubia-1", 0.2)
    assert s["reason"].startswith('Liveness probe failed: Get "http://'), s
    assert s["last_exit"] == "signal 9"  # SIGTERM cannot stop it; the grace period ends
    assert s["container_pid"] != pid
    sim.cli("probe")
    assert sim.get_pod("kubia-1", "/data").body == "kept across the restart"
    assert sim.status()["pod_status"]["kubia-0"]["restarts"] == 0


def test_the_liveness_probe_path_is_the_manifests(sim, tmp_path):
    # The book's liveness path (/healthz) does not look at the volume; this one does.
    sts = book_statefulset()
    fast_liveness(sts, httpGet={"path": "/readyz", "port": "http"})
    sts["spec"]["replicas"] = 1
    path = write(tmp_path, "sts.yaml", sts)
    sim.up(None, None, "--restart-backoff-ms", 200, manifest=path)
    make_volume_read_only(sim, "kubia-0")

    def restarted():
        s = sim.status()["pod_status"]["kubia-0"]
        return s if s.get("restarts", 0) >= 1 else None
    s = wait_until(restarted, 20, "the liveness probe to restart kubia-0", 0.2)
    assert s["reason"] == "Liveness probe failed: HTTP probe failed with statuscode: 503"
    # kubia ends on the SIGTERM, within the grace period
    assert s["last_exit"] == "exit 0"


def test_a_pod_cut_off_the_network_is_not_killed_by_its_liveness_probe(sim, tmp_path):
    # The kubelet probes from the pod's node, which the cut does not separate from it.
    sts = book_statefulset()
    fast_liveness(sts)
    path = write(tmp_path, "sts.yaml", sts)
    sim.up(None, None, manifest=path)
    pid = sim.status()["pod_status"]["kubia-1"]["container_pid"]
    before = sim.status()["pod_status"]["kubia-1"]["liveness_probes"]
    sim.cli("cut", "kubia-1")
    # the host no longer reaches it, so its readiness fails; liveness is checked from
    # inside: wait for as many periods as would kill it twice over
    def probed():
        s = sim.status()["pod_status"]["kubia-1"]
        return s if s.get("liveness_probes", 0) >= before + 5 else None
    s = wait_until(probed, 20, "five liveness probes of the cut-off pod", 0.2)
    assert s["liveness_failures"] == 0
    assert s.get("restarts", 0) == 0 and s["container_pid"] == pid
    sim.cli("heal", "kubia-1")


BAD = [
    ("no readinessProbe", lambda s: container(s).pop("readinessProbe"),
     "has no readinessProbe"),
    ("the volume outside /var", lambda s: container(s)["volumeMounts"][0].update(
        mountPath="/data"), "mountPath /data is outside /var"),
    ("no volume", lambda s: container(s).pop("volumeMounts"), "mounts no volume named data"),
    ("env from elsewhere", lambda s: container(s)["env"].append(
        {"name": "KUBIA_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
     "env KUBIA_NODE uses valueFrom"),
    ("another StatefulSet", lambda s: s["metadata"].update(name="web"),
     "kubia-sim plays the chapter's"),
    ("a probe on another port", lambda s: container(s)["livenessProbe"]["httpGet"].update(
        port=9999), "the liveness probe asks port 9999"),
    ("a command", lambda s: container(s).update(command=["/bin/sh"]),
     "the container sets command"),
    ("a port name nobody has", lambda s: container(s)["readinessProbe"]["httpGet"].update(
        port="web"), "has no port named 'web'"),
]


@pytest.mark.parametrize("what,change,msg", BAD, ids=[b[0] for b in BAD])
def test_a_manifest_kubia_sim_cannot_run_is_refused_and_nothing_is_made(sim, tmp_path,
                                                                         what, change, msg):
    sts = copy.deepcopy(book_statefulset())
    change(sts)
    path = write(tmp_path, "sts.yaml", sts)
    r = sim.up(None, None, manifest=path, check=False)
    assert r.returncode == 1 and msg in r.stderr, r.stderr
    assert "-f %s" % path in r.stderr
    assert sim.cli("probe", check=False).returncode == 1  # not up
    assert sim.leftovers() == []


def test_a_missing_or_broken_manifest_is_refused(sim, tmp_path):
    r = sim.up(None, None, manifest=str(tmp_path / "absent.yaml"), check=False)
    assert r.returncode == 1 and "no such file or directory" in r.stderr
    broken = str(tmp_path / "broken.yaml")
    with open(broken, "w") as f:
        f.write("kind: StatefulSet\nspec: [unclosed\n")
    r = sim.up(None, None, manifest=broken, check=False)
    assert r.returncode == 1 and "-f %s" % broken in r.stderr
    r = sim.up(None, None, manifest=os.path.join(BASE, "kubia-service-public.yaml"),
               check=False)
    assert r.returncode == 1 and "expected one StatefulSet" in r.stderr
    # and a rollout to a bad manifest changes nothing of a running cluster
    sim.up(1, "pet")
    before = sim.status()
    sts = book_statefulset()
    container(sts).pop("readinessProbe")
    r = sim.kubectl("replace", "-f", write(tmp_path, "sts.yaml", sts), check=False)
    assert r.returncode == 1 and "has no readinessProbe" in r.stderr, r.stderr
    after = sim.status()
    assert after["update_revision"] == before["update_revision"]
    assert after["templates"] == before["templates"] and after["replicas"] == 1
    # nor does up --recreate take the running cluster down for a bad manifest
    r = sim.up(None, None, "--recreate", manifest=broken, check=False)
    assert r.returncode == 1 and "-f %s" % broken in r.stderr
    assert sim.status()["pods"] == before["pods"]
    assert sim.get_pod("kubia-0").status == 200


def test_a_container_gets_the_manifests_user_security_context_and_resources(sim):
    if not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    want = manifests.settings(PET)
    sec, limits = want["security"], want["resources"]["limits"]
    sim.runtime = "podman"
    sim.up(1, None, manifest=PET)
    name = sim.pod("kubia-0")["netns"]  # the container is named after the pod's sandbox
    r = subprocess.run(["podman", "--runtime", "runc", "inspect", name], capture_output=True,
                       text=True, check=True)
    [info] = json.loads(r.stdout)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "%d:%d" % (sec["run_as_user"], sec["run_as_group"])
    assert host["ReadonlyRootfs"] is sec["read_only_root_filesystem"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == limits["memory"] and host["MemorySwap"] == limits["memory"]
    assert host["CpuShares"] == int(want["resources"]["requests"]["cpu"] * 1024)
    # the process itself: the manifest's user, the fsGroup, no capabilities at all
    pid = sim.status()["pod_status"]["kubia-0"]["container_pid"]
    status = proc_status(pid)
    assert status["Uid"].split()[0] == str(sec["run_as_user"])
    assert str(sec["fs_group"]) in status["Groups"].split()
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    # the volume, as fsGroup leaves it: the group owns it and new files inherit it
    st = os.stat(sim.volume(0))
    assert st.st_gid == sec["fs_group"] and st.st_mode & 0o2070 == 0o2070
    r = sim.post_pod("kubia-0", "written as %d" % sec["run_as_user"])
    assert r.status == 200
    data = os.path.join(sim.volume(0), os.path.basename(want["env"]["KUBIA_DATA_FILE"]))
    assert os.stat(data).st_uid == sec["run_as_user"]
    assert os.stat(data).st_gid == sec["fs_group"]


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_an_image_that_is_not_there_is_refused_at_up(sim):
    if not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = "podman"
    r = sim.up(1, None, "--image", "localhost/kubia:no-such-tag", check=False)
    assert r.returncode == 1
    assert "image localhost/kubia:no-such-tag is not on this machine" in r.stderr
    assert sim.leftovers() == []


@pytest.mark.parametrize("runtime", ["process", "podman"])
def test_a_hung_pod_is_killed_when_its_grace_period_ends(sim, tmp_path, runtime):
    if runtime == "podman" and not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = runtime
    sts = book_statefulset()
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    sim.up(1, None, manifest=write(tmp_path, "sts.yaml", sts))
    pid = sim.status()["pod_status"]["kubia-0"]["container_pid"]
    os.kill(pid, signal.SIGSTOP)  # SIGTERM cannot end it now
    assert 1.0 <= stopped_in(sim) < 10
    assert not os.path.exists("/proc/%d" % pid)
    # it comes back, as a StatefulSet's pod does
    assert sim.get_pod("kubia-0", "/data").status == 200


def stopped_in(sim):
    """kubectl delete po kubia-0, until its replacement is ready: how long the old one
    took to stop, as the API server's kubelet says it."""
    log = len(sim.controller_log())
    sim.delete_pod("kubia-0")
    out = sim.controller_log()[log:]
    m = re.search(r'pod "kubia-0" deleted \(stopped in ([0-9.]+) s\)', out)
    assert m, out
    return float(m.group(1))


def overlays():
    d = os.path.join(K8S, "overlays")
    return sorted(n for n in os.listdir(d)
                  if os.path.exists(os.path.join(d, n, "kustomization.yaml")))


@pytest.mark.parametrize("overlay", overlays())
def test_every_overlay_runs_in_the_simulated_cluster(sim, overlay):
    # kubia-sim up -f k8s/overlays/<target>: kubectl kustomize renders it, and the pods
    # are what it says (replicas, environment, probes), with the chapter's cluster view.
    source = os.path.join(K8S, "overlays", overlay)
    want = manifests.settings(source)
    r = sim.up(None, None, manifest=source)
    assert "from %s (replicas 3, peers mode)" % source in r.stdout, r.stdout
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0", "kubia-1", "kubia-2"]
    env = environ(st["pod_status"]["kubia-1"]["container_pid"])
    assert env["KUBIA_SERVICE"] == want["env"]["KUBIA_SERVICE"] == "_http._tcp.kubia"
    if want["pod_spec"].get("initContainers"):
        # hostpath's init container hands the volume to kubia's user before kubia starts
        assert os.stat(sim.volume(1)).st_uid == want["security"]["run_as_user"]
    data = {"kubia-0": "No data posted yet", "kubia-1": "from " + overlay,
            "kubia-2": "No data posted yet"}
    assert sim.post_pod("kubia-1", data["kubia-1"]).status == 200
    for pod in data:
        sim.wait_view(pod, data)


def test_the_prestop_sleep_runs_before_the_sigterm_within_the_grace_period(sim, tmp_path):
    # A sleep as long as the grace period is cut at its end: SIGTERM at 1 s here.
    sts = book_statefulset()
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    container(sts)["lifecycle"]["preStop"]["sleep"]["seconds"] = 30
    sim.up(1, None, manifest=write(tmp_path, "sts.yaml", sts))
    # (uncut, the sleep would take 30 s; the upper bounds leave room for a busy machine)
    assert 1.0 <= stopped_in(sim) < 5.0
    # The book's manifests: a 2 s sleep, a 5 s grace period; kubia serves until its
    # SIGTERM at 2 s, then stops in milliseconds.
    sim.kubectl("apply", "-f", PET)
    sim.rollout_status()
    assert sim.get_pod("kubia-0", "/healthz").status == 200
    assert 2.0 <= stopped_in(sim) < 5.0
