"""What the StatefulSet scenario tests (test_statefulset*.py) share: the StatefulSet they
start from, a readiness probe to break and restore from inside a pod, a kubectl command
left running while the test acts, and looks at the cluster that need no lock.

Kubernetes' own tests break a pod's readiness by moving the file its probe asks for; a
kubia pod's /readyz fails while its volume is read-only, so these remount it read-only
(and back) inside the pod, with nsenter, which takes no lock of kubia-sim: it works
while a command of kubia-sim runs.
"""

import json
import os
import subprocess
import time

from conftest import BASE, KUBECTL, read_state, wait_until
from kubiasim import manifests

PET = os.path.join(BASE, "kubia-statefulset.yaml")
PERIOD_S = 1  # the readiness probe's period in these tests


def statefulset(replicas=3, mode="pet", **spec):
    """The book's StatefulSet with a fast readiness probe (every second, unready after
    one failure), a grace period of a second and no preStop hook, spec's fields set."""
    [sts] = manifests.find(manifests.load(PET), "StatefulSet")
    sts["spec"]["replicas"] = replicas
    pod = sts["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 1
    c = pod["containers"][0]
    c["readinessProbe"].update(periodSeconds=PERIOD_S, failureThreshold=1)
    c.pop("lifecycle", None)  # the upstream pods have no preStop hook
    for e in c["env"]:
        if e["name"] == "KUBIA_MODE":
            e["value"] = mode
    sts["spec"].update(spec)
    return sts


def write(tmp_path, sts, name="sts.yaml"):
    path = str(tmp_path / name)
    with open(path, "w") as f:
        json.dump(sts, f, indent=1)
    return path


def up(sim, tmp_path, sts, *extra, check=True):
    return sim.up(None, None, *extra, manifest=write(tmp_path, sts, "up.yaml"), check=check)


def apply(sim, tmp_path, sts, check=True):
    """kubectl replace -f: the changed StatefulSet as a whole, as the upstream tests update
    it (kubectl apply would keep a field the file leaves out, having not applied it)."""
    return sim.kubectl("replace", "-f", write(tmp_path, sts, "apply.yaml"), check=check)


def state(sim):
    """The cluster's state file, read without the lock (also while a command runs)."""
    return read_state(sim)


def revisions(sim):
    st = state(sim)
    return {n: p["revision"] for n, p in st["pods"].items()}


def names(sim):
    return sorted(state(sim)["pods"], key=lambda n: int(n.split("-")[1]))


def pid_of(sim, pod):
    return sim.status()["pod_status"][pod]["container_pid"]


def set_ready(pid, ready):
    """Breaks (ready False) or restores the readiness of the pod whose kubia is pid."""
    subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "mount", "-o",
                    "remount,bind,%s" % ("rw" if ready else "ro"), "/var/data"],
                   check=True, timeout=10)


def wait_ready_count(sim, n, timeout=15):
    """Until the StatefulSet's status.readyReplicas is n."""
    return wait_until(lambda: sim.sts()["readyReplicas"] == n, timeout,
                      "%d ready replicas" % n, 0.1)


def wait_pod_ready(sim, pod, ready, timeout=10):
    def ok():
        p = sim.get("po")["items"]
        return any(o["metadata"]["name"] == pod and o["status"]["phase"] == "Running" and
                   o["status"]["containerStatuses"][0]["ready"] == ready for o in p)
    wait_until(ok, timeout, "%s to be %s" % (pod, "ready" if ready else "unready"), 0.1)


def dns_names(sim):
    """The pods cluster DNS answers for the headless Service (SRV targets)."""
    st = state(sim)
    out = subprocess.run(["dig", "@%s.1" % st["subnet"], "+short", "+time=1", "+tries=1",
                          "SRV", "kubia.%s.svc.cluster.local" % sim.ns],
                         capture_output=True, text=True, timeout=10).stdout
    return sorted(line.split()[3].split(".")[0] for line in out.splitlines()
                  if len(line.split()) == 4)


class Background:
    """A kubectl command left running while the test acts."""

    def __init__(self, sim, *args):
        self.sim = sim
        self.args = args
        self.p = subprocess.Popen(
            [KUBECTL] + [str(a) for a in args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            env=dict(os.environ, KUBECONFIG=sim.kubeconfig))

    def running(self):
        return self.p.poll() is None

    def finish(self, timeout=120, check=True):
        try:
            out, err = self.p.communicate(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.communicate()
        self.sim.remember()
        if check:
            assert self.p.returncode == 0, (self.args, out, err)
        return self.p.returncode, out, err


def stays(pred, seconds, what):
    """pred holds all along for seconds (a halt: something that must not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred(), what
        time.sleep(0.1)
