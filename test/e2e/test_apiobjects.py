"""kubiasim/apiobjects.py with the real kubectl: every kustomization under k8s/ applied
to an empty cluster with the oldest and the newest kubectl, each object created as the
kustomization says and served back; the events the controller and the kubelets give."""

import os
import re

import pytest
import yaml
from conftest import K8S, KUBIA, wait_until
from test_apiserver import VERSIONS, Kubectl, kubectl_of

# every kustomization of the repository (k8s/ is the base, under the name the README uses)
# (the hostpath overlay last: its pods are left to run)
KUSTOMIZATIONS = ["", "base", "overlays/gke", "overlays/kind", "overlays/minikube",
                  "overlays/network-policy", "components/network-policy", "overlays/hostpath"]
NODES = ("kubia-sim-1", "kubia-sim-2", "kubia-sim-3")


def test_every_kustomization_is_listed():
    found = sorted("" if d == K8S else os.path.relpath(d, K8S)
                   for d, _, files in os.walk(K8S) if "kustomization.yaml" in files)
    assert found == sorted(KUSTOMIZATIONS)


def empty_cluster(sim, tmp_path, minor):
    exe = kubectl_of(minor)
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % minor)
    sim.cli("up", "--empty", "--binary", KUBIA, "--subnet", sim.base + ".0/24",
            "--api-port", sim.api_port, "--kubernetes-version", minor, *sim.sanitizer_env())
    return Kubectl(sim, exe, tmp_path)


def built(k, path):
    """The objects `kubectl kustomize` makes of path, in its order."""
    return [d for d in yaml.safe_load_all(k("kustomize", path).stdout) if d]


def kind_names(docs):
    return [(d["kind"], d["metadata"]["name"]) for d in docs]


@pytest.mark.parametrize("minor", VERSIONS)
def test_apply_k_every_kustomization(sim, tmp_path, minor):
    """kubectl apply -k of k8s/ and of each overlay and component, one after the other
    on one cluster, each deleted again (kubectl delete -k) before the next. The nodes
    are cordoned, so that the pods stay Pending and each kustomization takes seconds:
    the pods of the base run in the chapter's tests; the last one here, the hostpath
    overlay (its own StorageClass and volumes, an init container), runs once the nodes
    are uncordoned."""
    k = empty_cluster(sim, tmp_path, minor)
    for node in NODES:
        k("cordon", node)
    for rel in KUSTOMIZATIONS:
        path = os.path.join(K8S, rel)
        docs = built(k, path)
        assert docs, rel
        r = k("apply", "-k", path)
        assert r.stderr == "", (rel, r.stderr)
        created = [re.fullmatch(r"(\S+)/(\S+) created", line) for line in
                   r.stdout.splitlines()]
        assert all(created) and len(created) == len(docs), (rel, r.stdout, docs)
        got = yaml.safe_load(k("get", "-k", path, "-o", "yaml").stdout)["items"]
        assert kind_names(got) == kind_names(docs), rel
        for want, obj in zip(docs, got):
            assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"], rel
            if obj["kind"] != "StatefulSet":
                continue
            # the overlay's changes are what the API server stores
            tmpl, spec = obj["spec"]["template"]["spec"], want["spec"]["template"]["spec"]
            assert tmpl["containers"][0]["image"] == spec["containers"][0]["image"]
            assert tmpl["containers"][0]["imagePullPolicy"] == \
                spec["containers"][0].get("imagePullPolicy", "IfNotPresent")
            assert tmpl.get("nodeSelector") == spec.get("nodeSelector")
            assert [c["name"] for c in tmpl.get("initContainers") or []] == \
                [c["name"] for c in spec.get("initContainers") or []]
            assert obj["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == \
                want["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]
        if rel == KUSTOMIZATIONS[-1]:
            break
        gone = k("delete", "-k", path, timeout=180)
        assert gone.stderr == "" and len(gone.stdout.splitlines()) == len(docs), gone
        left = k("get", "-k", path, "--ignore-not-found", "-o", "name").stdout
        assert left == "", (rel, left)
    # the hostpath overlay's pods, their claims bound to its volumes (the other nodes
    # stay cordoned: the pods go to the one uncordoned)
    k("uncordon", NODES[0])
    k.ready(3)
    assert k("get", "pv", "-o", "jsonpath={range .items[*]}{.metadata.name}="
             "{.status.phase}:{.spec.claimRef.name} {end}").stdout.split() == [
        "pv-%s=Bound:data-kubia-%d" % (x, i) for i, x in enumerate("abc")]
    assert k("get", "pvc", "-o", "jsonpath={range .items[*]}{.spec.storageClassName}:"
             "{.spec.volumeName} {end}").stdout.split() == [
        "kubia-hostpath:pv-%s" % x for x in "abc"]
    assert k("logs", "kubia-0", "-c", "volume-owner").returncode == 0
    wait_until(lambda: k("get", "pdb", "kubia", "-o",
                         "jsonpath={.status.currentHealthy}").stdout == "3", 10,
               "the budget to count three healthy pods")


def test_events_of_the_controller_and_the_kubelets(sim, tmp_path):
    """kubectl get events and describe show the book's kinds of events: the scheduler's
    Scheduled, the kubelet's Pulled, Created, Started and Killing, the StatefulSet
    controller's SuccessfulCreate and SuccessfulDelete; a deleted pod's events outlive
    it."""
    exe = kubectl_of(VERSIONS[-1])
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % VERSIONS[-1])
    sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--replicas", 2,
            "--mode", "pet", "--api-port", sim.api_port, *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    k.ready(2)
    uid = k("get", "po", "kubia-1", "-o", "jsonpath={.metadata.uid}").stdout
    assert k("delete", "po", "kubia-1").stdout == 'pod "kubia-1" deleted\n'
    k.ready(2)
    assert k("scale", "sts", "kubia", "--replicas", "1").stdout == \
        "statefulset.apps/kubia scaled\n"
    k.ready(1)

    def rows(*args):
        return [r.split(None, 4) for r in k.lines("get", "events", *args)[1:]]
    # LAST SEEN, TYPE, REASON, OBJECT, MESSAGE
    wait_until(lambda: ["SuccessfulDelete", "statefulset/kubia",
                        "delete Pod kubia-1 in StatefulSet kubia successful"] in
               [r[2:] for r in rows()], 10, "the controller's SuccessfulDelete")
    seen = [r[1:] for r in rows()]
    assert ["Normal", "Killing", "pod/kubia-1", "Stopping container kubia"] in seen
    assert [r for r in seen if r[1] == "SuccessfulCreate" and "kubia-1" in r[3]] == \
        [["Normal", "SuccessfulCreate", "statefulset/kubia",
          "create Pod kubia-1 in StatefulSet kubia successful"]] * 2
    # the first kubia-1's events are still there, with its uid
    old = k("get", "events", "--field-selector", "involvedObject.uid=" + uid, "-o",
            "jsonpath={range .items[*]}{.reason} {end}").stdout.split()
    assert sorted(old) == ["Created", "Killing", "Pulled", "Scheduled", "Started"]
    described = k("describe", "po", "kubia-0").stdout
    events = described[described.index("\nEvents:") + 1:].splitlines()
    assert re.fullmatch(r" +Type +Reason +Age +From +Message", events[1])
    assert [e.split()[1] for e in events[3:]] == ["Scheduled", "Pulled", "Created",
                                                 "Started"], events
    described = k("describe", "sts", "kubia").stdout
    events = described[described.index("\nEvents:"):]
    assert re.search(r"Normal +SuccessfulDelete +\S+ +statefulset-controller +delete Pod "
                     r"kubia-1 in StatefulSet kubia successful", events), events
