"""kubia-sim's API server (kubiasim/apiserver.py) with the real kubectl: the chapter's
commands verbatim, against a cluster brought up empty (`up --empty`), with the oldest
and the newest kubectl installed (each run directly: the server's version would choose
the client through the dispatcher).

Each test uses its own kubeconfig (up writes its context there), never ~/.kube/config.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import time

import pytest
import yaml
from conftest import BASE, KUBIA, wait_until
from kubiatest.ports import free_port

KUBECTL = shutil.which("kubectl")
VERSIONS = ("1.27", "1.33")


def kubectl_of(minor):
    if KUBECTL is None:
        return None
    exe = os.path.join(os.path.dirname(os.path.realpath(KUBECTL)), "kubectl." + minor)
    return exe if os.access(exe, os.X_OK) else None


class Kubectl:
    def __init__(self, sim, exe, tmp_path):
        self.sim, self.exe, self.tmp = sim, exe, tmp_path

    def env(self, **more):
        return dict(os.environ, KUBECONFIG=self.sim.kubeconfig, **more)

    def __call__(self, *args, check=True, timeout=120, env=None):
        r = subprocess.run([self.exe, *args], capture_output=True, text=True,
                           timeout=timeout, env=env or self.env(), stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s: exit %d\n%s\n%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def lines(self, *args):
        return self(*args).stdout.splitlines()

    def ready(self, n):
        """Waits until pods kubia-0 .. kubia-n-1 exist, are ready, and no other does."""
        want = " ".join("kubia-%d=True" % i for i in range(n))

        def ok():
            r = self("get", "po", "-o", "jsonpath={range .items[*]}{.metadata.name}="
                     "{.status.conditions[?(@.type==\"Ready\")].status} {end}", check=False)
            return r.stdout.strip() == want
        wait_until(ok, 120, "pods %s" % want, interval=0.5)


def book_statefulset(tmp_path):
    """The chapter's StatefulSet as the book writes it: no updateStrategy, so that the
    API server defaults its partition to 0."""
    with open(os.path.join(BASE, "kubia-statefulset.yaml")) as f:
        doc = yaml.safe_load(f)
    del doc["spec"]["updateStrategy"]
    path = str(tmp_path / "kubia-statefulset.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def http_get(port, path, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": {
            "PATCH": "application/merge-patch+json"}.get(method, "text/plain")})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def start_proxy(k):
    port = free_port()
    p = subprocess.Popen([k.exe, "proxy", "--port", str(port)], env=k.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def listening():
        try:
            return http_get(port, "/version")[0] == 200
        except OSError:
            return False
    wait_until(listening, 20, "kubectl proxy on port %d" % port, interval=0.1)
    return p, port


@pytest.mark.parametrize("minor", VERSIONS)
def test_chapter_with_kubectl(sim, tmp_path, minor):
    exe = kubectl_of(minor)
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % minor)
    sim.cli("up", "--empty", "--binary", KUBIA, "--subnet", sim.base + ".0/24",
            "--api-port", sim.api_port, "--kubernetes-version", minor,
            *sim.sanitizer_env())
    with open(sim.kubeconfig) as f:
        cfg = yaml.safe_load(f)
    assert cfg["current-context"] == "kubia-sim-" + sim.name
    assert cfg["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:%d" % sim.api_port
    k = Kubectl(sim, exe, tmp_path)
    assert json.loads(k("version", "-o", "json").stdout)["serverVersion"]["minor"] == \
        minor.split(".")[1]

    out = k("create", "-f", os.path.join(BASE, "persistent-volumes-gcepd.yaml")).stdout
    assert out.splitlines() == ["persistentvolume/pv-%s created" % x for x in "abc"]
    assert k("create", "-f", os.path.join(BASE, "kubia-service-headless.yaml")).stdout == \
        "service/kubia created\n"
    again = k("create", "-f", os.path.join(BASE, "kubia-service-headless.yaml"),
              check=False)
    assert again.returncode == 1
    assert 'Error from server (AlreadyExists)' in again.stderr
    assert 'services "kubia" already exists' in again.stderr
    assert k("create", "-f", book_statefulset(tmp_path)).stdout == \
        "statefulset.apps/kubia created\n"
    k.ready(2)

    # kubectl get: the API server's tables
    rows = k.lines("get", "po")
    assert re.fullmatch(r"NAME +READY +STATUS +RESTARTS +AGE", rows[0])
    assert [r.split()[:4] for r in rows[1:]] == [["kubia-0", "1/1", "Running", "0"],
                                                 ["kubia-1", "1/1", "Running", "0"]]
    wide = k.lines("get", "po", "-o", "wide")
    assert re.fullmatch(r"NAME +READY +STATUS +RESTARTS +AGE +IP +NODE +NOMINATED NODE +"
                        r"READINESS GATES", wide[0])
    assert wide[1].split()[5:] == [sim.base + ".10", "kubia-sim-1", "<none>", "<none>"]
    pod = yaml.safe_load(k("get", "po", "kubia-0", "-o", "yaml").stdout)
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "kubia-0"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert k("get", "po", "-o", "jsonpath={.items[*].metadata.name}").stdout == \
        "kubia-0 kubia-1"
    missing = k("get", "po", "nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'

    pvc = k.lines("get", "pvc")
    assert pvc[0].split()[:5] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS"]
    assert [r.split()[:2] for r in pvc[1:]] == [["data-kubia-0", "Bound"],
                                                ["data-kubia-1", "Bound"]]
    pv = k.lines("get", "pv")
    assert [r.split()[:5] for r in pv if r.startswith("pv-")] == [
        ["pv-%s" % x, "10Gi", "RWO", "Retain", "Available"] for x in "abc"]
    svc = k.lines("get", "svc")
    assert re.fullmatch(r"NAME +TYPE +CLUSTER-IP +EXTERNAL-IP +PORT\(S\) +AGE", svc[0])
    assert svc[1].split()[:5] == ["kubia", "ClusterIP", "None", "<none>", "8080/TCP"]
    sts = k.lines("get", "statefulset")
    assert re.fullmatch(r"NAME +READY +AGE", sts[0]) and sts[1].split()[:2] == \
        ["kubia", "2/2"]
    nodes = k.lines("get", "nodes")
    assert re.fullmatch(r"NAME +STATUS +ROLES +AGE +VERSION", nodes[0])
    assert nodes[1].split()[:2] == ["kubia-sim-1", "Ready"]
    assert nodes[1].split()[4] == "v%s.0" % minor
    events = k("get", "events").stdout
    assert "create Pod kubia-0 in StatefulSet kubia successful" in events
    assert "Started container kubia" in events

    described = k("describe", "po", "kubia-0").stdout
    assert re.search(r"^Name: +kubia-0$", described, re.M)
    assert re.search(r"^Status: +Running$", described, re.M)
    assert re.search(r"^Controlled By: +StatefulSet/kubia$", described, re.M)
    assert "Successfully assigned %s/kubia-0 to kubia-sim-1" % sim.ns in described
    described = k("describe", "statefulset", "kubia").stdout
    assert re.search(r"^Pods Status: +2 Running / 0 Waiting / 0 Succeeded / 0 Failed$",
                     described, re.M)

    # the real kubectl proxy in front, and the chapter's curl commands through it
    proxy, port = start_proxy(k)
    try:
        base = "/api/v1/namespaces/%s" % sim.ns
        assert http_get(port, base + "/pods/kubia-0/proxy/") == (
            200, "You've hit kubia-0\nData stored on this pod: No data posted yet\n")
        greeting = "Hey there! This greeting was submitted to kubia-0."
        assert http_get(port, base + "/pods/kubia-0/proxy/", "POST", greeting) == (
            200, "Data stored on pod kubia-0\n")
        assert http_get(port, base + "/pods/kubia-0:8080/proxy/")[1].endswith(
            greeting + "\n")
        status, body = http_get(port, base + "/pods/kubia-9/proxy/")
        assert status == 404 and json.loads(body)["reason"] == "NotFound"

        # delete po kubia-0: gone once kubectl returns, then back with its data
        uid = pod["metadata"]["uid"]
        t0 = time.monotonic()
        assert k("delete", "po", "kubia-0").stdout == 'pod "kubia-0" deleted\n'
        assert time.monotonic() - t0 < 60
        k.ready(2)
        assert k("get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout != uid
        assert http_get(port, base + "/pods/kubia-0/proxy/") == (
            200, "You've hit kubia-0\nData stored on this pod: %s\n" % greeting)

        assert k("create", "-f", os.path.join(BASE, "kubia-service-public.yaml")).stdout \
            == "service/kubia-public created\n"
        status, body = http_get(port, base + "/services/kubia-public/proxy/")
        assert status == 200 and body.startswith("You've hit kubia-")
    finally:
        proxy.terminate()
        proxy.wait(10)

    # scale
    assert k("scale", "statefulset", "kubia", "--replicas", "3").stdout == \
        "statefulset.apps/kubia scaled\n"
    k.ready(3)
    assert http_get(sim.api_port, "/apis/apps/v1/namespaces/%s/statefulsets/kubia/scale"
                    % sim.ns, "PATCH", '{"spec":{"replicas":-1}}')[0] == 422

    # edit: the book's change of the template, rolled out one pod at a time
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/value: pet$/value: peers/' \"$1\"\n")
    editor.chmod(0o755)
    r = k("edit", "statefulset", "kubia", env=k.env(EDITOR=str(editor)))
    assert r.stdout == "statefulset.apps/kubia edited\n"
    status = k("rollout", "status", "statefulset", "kubia", timeout=240).stdout
    assert "Waiting for partitioned roll out to finish: 2 out of 3 new pods have been " \
        "updated...\n" in status
    assert status.endswith("partitioned roll out complete: 3 new pods have been "
                           "updated...\n")
    env = k("get", "sts", "kubia", "-o",
            "jsonpath={.spec.template.spec.containers[0].env[0].value}").stdout
    assert env == "peers"
    history = k.lines("rollout", "history", "statefulset", "kubia")
    assert [r.split()[0] for r in history[2:] if r.strip()] == ["1", "2"]

    r = k("patch", "statefulset", "kubia", "-p", '{"spec":{"template":{"spec":{"containers"'
          ':[{"name":"kubia","env":[{"name":"KUBIA_THREADS","value":"3"}]}]}}}}')
    assert r.stdout == "statefulset.apps/kubia patched\n"
    k("rollout", "status", "statefulset", "kubia", timeout=240)
    envs = json.loads(k("get", "sts", "kubia", "-o",
                        "jsonpath={.spec.template.spec.containers[0].env}").stdout)
    assert {e["name"]: e["value"] for e in envs}["KUBIA_THREADS"] == "3"
    assert [e["name"] for e in envs][0] == "KUBIA_MODE"  # merged by name, in place

    assert k("scale", "statefulset", "kubia", "--replicas", "2").stdout == \
        "statefulset.apps/kubia scaled\n"
    k.ready(2)
    assert [r.split()[0] for r in k.lines("get", "pvc")[1:]] == [
        "data-kubia-0", "data-kubia-1", "data-kubia-2"]  # kept, as the chapter says


def test_apply_watch_drain_and_errors(sim, tmp_path):
    """kubectl apply -k of the repository's deployment, get -w while the pods come up
    in order, logs, a forced deletion, a drain stopped by the PodDisruptionBudget, the
    API server's refusals, rollout restart and undo."""
    exe = kubectl_of(VERSIONS[-1])
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % VERSIONS[-1])
    sim.cli("up", "--empty", "--nodes", 1, "--binary", KUBIA, "--subnet",
            sim.base + ".0/24", "--api-port", sim.api_port, *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    watch = subprocess.Popen([exe, "get", "po", "-w"], env=k.env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = k("apply", "-k", os.path.join(BASE, "..")).stdout
        assert out.splitlines() == ["service/kubia created", "service/kubia-public created",
                                    "statefulset.apps/kubia created",
                                    "poddisruptionbudget.policy/kubia created"]
        k.ready(3)
        wait_until(lambda: "kubia-2" in k("get", "ev").stdout, 10, "kubia-2's events")
    finally:
        watch.terminate()
        seen = watch.communicate(timeout=10)[0].splitlines()
    # OrderedReady, as get -w shows it: each pod appears once the one before is ready
    rows = [r.split() for r in seen[1:]]
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r[0], i)
    for n in (1, 2):
        before = rows[:first["kubia-%d" % n]]
        assert ["kubia-%d" % (n - 1), "1/1", "Running"] in [r[:3] for r in before], seen

    again = k("apply", "-k", os.path.join(BASE, "..")).stdout.splitlines()
    assert again[:2] == ["service/kubia unchanged", "service/kubia-public unchanged"]
    assert "level=info" in k("logs", "kubia-0").stdout
    assert k("exec", "kubia-0", "--", "hostname").stdout == "kubia-0\n"

    bad = k("patch", "statefulset", "kubia", "--type", "json", "-p",
            '[{"op":"replace","path":"/spec/replicas","value":-3}]', check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == 'The StatefulSet "kubia" is invalid: spec.replicas: ' \
        'Invalid value: -3: must be greater than or equal to 0'
    bad = k("patch", "statefulset", "kubia", "--type", "merge", "-p",
            '{"spec":{"podManagementPolicy":"Parallel"}}', check=False)
    assert bad.returncode == 1 and "spec: Forbidden: updates to statefulset spec" in \
        bad.stderr

    uid = k("get", "po", "kubia-2", "-o", "jsonpath={.metadata.uid}").stdout
    forced = k("delete", "po", "kubia-2", "--force", "--grace-period", "0")
    assert forced.stdout == 'pod "kubia-2" force deleted\n'
    assert "Immediate deletion does not wait" in forced.stderr
    k.ready(3)
    assert k("get", "po", "kubia-2", "-o", "jsonpath={.metadata.uid}").stdout != uid

    # one node (up --nodes 1): the budget lets one pod go, whose replacement cannot be scheduled
    drain = k("drain", "kubia-sim-1", "--timeout", "15s", check=False, timeout=60)
    assert drain.returncode != 0
    assert "node/kubia-sim-1 cordoned" in drain.stdout
    assert "violate the pod's disruption budget" in drain.stderr
    pods = [r.split()[:3] for r in k.lines("get", "po")[1:]]
    assert sorted(r[2] for r in pods) == ["Pending", "Running", "Running"]
    assert k.lines("get", "pdb")[1].split()[:4] == ["kubia", "N/A", "1", "0"]
    assert k.lines("get", "nodes")[1].split()[1] == "Ready,SchedulingDisabled"
    assert k("uncordon", "kubia-sim-1").stdout == "node/kubia-sim-1 uncordoned\n"
    k.ready(3)

    assert k("rollout", "restart", "statefulset", "kubia").stdout == \
        "statefulset.apps/kubia restarted\n"
    k("rollout", "status", "statefulset", "kubia", timeout=240)
    assert k("rollout", "undo", "statefulset", "kubia").stdout == \
        "statefulset.apps/kubia rolled back\n"
    k("rollout", "status", "statefulset", "kubia", timeout=240)
    assert "kubectl.kubernetes.io/restartedAt" not in k(
        "get", "sts", "kubia", "-o", "jsonpath={.spec.template.metadata}").stdout


@pytest.mark.parametrize("minor", VERSIONS)
def test_section_10_5_on_three_nodes(sim, tmp_path, minor):
    """Section 10.5 with kubectl: a node's network down, its pod Unknown, evicted
    (NodeLost), a graceful deletion that cannot complete, the forced one, the
    replacement on another node refused by kubia's lock until the node is back; then
    cordon, uncordon and drain of a node of three."""
    exe = kubectl_of(minor)
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % minor)
    sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--replicas", 3,
            "--mode", "pet", "--api-port", sim.api_port, "--kubernetes-version", minor,
            "--restart-backoff-ms", 300, "--node-lost-grace", 3, "--pod-eviction-timeout", 3,
            *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    k.ready(3)
    nodes = k.lines("get", "nodes")
    assert [r.split()[:2] for r in nodes[1:]] == [["kubia-sim-%d" % i, "Ready"]
                                                 for i in (1, 2, 3)]
    node = k("get", "po", "kubia-0", "-o", "jsonpath={.spec.nodeName}").stdout
    assert node in ("kubia-sim-1", "kubia-sim-2", "kubia-sim-3")
    base = "/api/v1/namespaces/%s/pods/kubia-0/proxy/" % sim.ns
    assert http_get(sim.api_port, base, "POST", "kept")[0] == 200

    t0 = time.monotonic()
    sim.cli("node-down", node)

    def status_of(kind, name):
        row = [r.split() for r in k.lines("get", kind) if r.split()[0] == name]
        return row[0][2 if kind == "po" else 1] if row else None
    wait_until(lambda: status_of("node", node) == "NotReady", 20, node + " NotReady")
    assert time.monotonic() - t0 >= 3
    assert status_of("po", "kubia-0") == "Unknown"
    assert k.lines("get", "po", "kubia-0")[1].split()[1] == "0/1"
    # the API server cannot reach the node's kubelet
    ex = k("exec", "kubia-0", "--", "true", check=False)
    assert ex.returncode == 1 and "error dialing backend" in ex.stderr, ex.stderr

    def evicted():
        return k("get", "po", "kubia-0", "-o", "jsonpath={.status.reason}").stdout == \
            "NodeLost"
    wait_until(evicted, 20, "kubia-0 evicted")
    described = k("describe", "po", "kubia-0").stdout
    assert re.search(r"^Status: +Terminating \(lasts .+\)$", described, re.M), described
    assert re.search(r"^Reason: +NodeLost$", described, re.M), described
    assert re.search(r"^Message: +Node %s which was running pod kubia-0 is unresponsive$"
                     % node, described, re.M), described
    # a graceful deletion cannot complete: only the lost node's kubelet could confirm it
    uid = k("get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout
    assert k("delete", "po", "kubia-0", "--wait=false").stdout == 'pod "kubia-0" deleted\n'
    deadline = time.monotonic() + 2  # and it does not go, for as long as we look
    while time.monotonic() < deadline:
        assert k("get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout == uid
        assert status_of("po", "kubia-0") == "Unknown"
    forced = k("delete", "po", "kubia-0", "--force", "--grace-period", "0")
    assert forced.stdout == 'pod "kubia-0" force deleted\n'
    assert "Immediate deletion does not wait for confirmation that the running resource " \
        "has been terminated" in forced.stderr

    def replacement():
        r = k("get", "po", "kubia-0", "-o", "wide", check=False).stdout.splitlines()
        return r[1].split() if len(r) > 1 and k(
            "get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout != uid else None
    row = wait_until(replacement, 30, "kubia-0's replacement")
    where = k("get", "po", "kubia-0", "-o", "jsonpath={.spec.nodeName}").stdout
    assert where != node and where.startswith("kubia-sim-") and where in row
    # kubia refuses to start while the old process holds the data directory's lock
    wait_until(lambda: int(k.lines("get", "po", "kubia-0")[1].split()[3]) >= 1, 30,
               "the replacement to restart")
    assert k.lines("get", "po", "kubia-0")[1].split()[1] == "0/1"
    sim.cli("node-up", node)
    k.ready(3)
    proxy, port = start_proxy(k)
    try:
        assert http_get(port, base) == (
            200, "You've hit kubia-0\nData stored on this pod: kept\n")
    finally:
        proxy.terminate()
        proxy.wait(10)

    # cordon, uncordon, drain on three nodes
    other = k("get", "po", "kubia-1", "-o", "jsonpath={.spec.nodeName}").stdout
    assert k("cordon", other).stdout == "node/%s cordoned\n" % other
    assert status_of("node", other) == "Ready,SchedulingDisabled"
    assert k("uncordon", other).stdout == "node/%s uncordoned\n" % other
    assert status_of("node", other) == "Ready"
    drain = k("drain", other, "--timeout", "60s", timeout=90)
    assert "node/%s cordoned" % other in drain.stdout
    assert "node/%s drained" % other in drain.stdout
    k.ready(3)
    placed = k("get", "po", "-o", "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert other not in placed and len(placed) == 3
    assert k("uncordon", other).stdout == "node/%s uncordoned\n" % other


def watch_events(port, path, rv):
    """The events of a watch from rv that the server ends after a second."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "%s?watch=true&resourceVersion=%s&timeoutSeconds=1" % (path, rv))
        r = conn.getresponse()
        assert r.status == 200
        return [json.loads(line) for line in r.read().decode().splitlines() if line]
    finally:
        conn.close()


def test_watch_history_bounded(sim, tmp_path):
    """The API server keeps the last --api-watch-history changes: a watch from within
    them gets the events since, one from before them a 410 Gone (Expired), as from the
    API server's watch cache."""
    exe = kubectl_of(VERSIONS[-1])
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % VERSIONS[-1])
    bad = sim.cli("up", "--empty", "--binary", KUBIA, "--api-watch-history", 0, check=False)
    assert bad.returncode != 0 and "--api-watch-history 0: 1 or more" in bad.stderr
    sim.cli("up", "--empty", "--nodes", 1, "--binary", KUBIA, "--subnet",
            sim.base + ".0/24", "--api-port", sim.api_port, "--api-watch-history", 5,
            *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    pvs = "/api/v1/persistentvolumes"
    rv0 = json.loads(http_get(sim.api_port, pvs)[1])["metadata"]["resourceVersion"]
    k("create", "-f", os.path.join(BASE, "persistent-volumes-gcepd.yaml"))  # 3 changes
    seen = watch_events(sim.api_port, pvs, rv0)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in seen] == [
        ("ADDED", "pv-a"), ("ADDED", "pv-b"), ("ADDED", "pv-c")]
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in seen] == sorted(
        int(e["object"]["metadata"]["resourceVersion"]) for e in seen)
    # two Services and their endpoints: seven changes since rv0, five kept
    k("create", "-f", os.path.join(BASE, "kubia-service-headless.yaml"))
    k("create", "-f", os.path.join(BASE, "kubia-service-public.yaml"))
    gone = watch_events(sim.api_port, pvs, rv0)
    assert len(gone) == 1 and gone[0]["type"] == "ERROR", gone
    status = gone[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: %s (" % rv0)
    # from the last PersistentVolume on: the Services, within the window
    svcs = "/api/v1/namespaces/%s/services" % sim.ns
    since = seen[-1]["object"]["metadata"]["resourceVersion"]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in watch_events(
        sim.api_port, svcs, since)] == [("ADDED", "kubia"), ("ADDED", "kubia-public")]
