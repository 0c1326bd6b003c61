"""kubiasim/apifields.py: the fields each manager set (managedFields), and server-side
apply with the real kubectl: applied twice, refused with a conflict when another
manager changed a field it applies, taken over with --force-conflicts."""

import json
import re

import pytest
from conftest import K8S, KUBIA
from test_apiserver import VERSIONS, Kubectl, kubectl_of
from kubiasim import apifields


def test_fields_as_fieldsv1_counts_them():
    obj = {"apiVersion": "apps/v1", "kind": "StatefulSet", "status": {"replicas": 1},
           "metadata": {"name": "kubia", "uid": "x", "labels": {"app": "kubia"}},
           "spec": {"replicas": 3, "template": {"spec": {"containers": [{
               "name": "kubia", "image": "kubia:1", "args": ["-v"],
               "ports": [{"containerPort": 8080, "name": "http"}]}]}}}}
    got = apifields.fields(obj)
    ct = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"kubia"}')
    port = ct + ("f:ports", 'k:{"containerPort":8080,"protocol":"TCP"}')
    assert got == {("f:metadata", "f:labels", "f:app"), ("f:spec", "f:replicas"),
                   ct + ("f:name",), ct + ("f:image",), ct + ("f:args",),
                   port + ("f:containerPort",), port + ("f:name",)}
    assert apifields.decode(apifields.encode(got)) == got
    assert apifields.text(ct + ("f:image",)) == \
        '.spec.template.spec.containers[name="kubia"].image'
    assert apifields.value_at(obj, port + ("f:name",)) == "http"
    assert apifields.value_at(obj, ct + ("f:command",)) is apifields.MISSING


def test_updates_take_fields_over_and_applies_conflict():
    old = {"apiVersion": "v1", "kind": "Service", "metadata": {},
           "spec": {"type": "ClusterIP", "selector": {"app": "kubia"}}}
    old["metadata"]["managedFields"] = apifields.created(old, "kubectl", "Apply")
    new = json.loads(json.dumps(old))
    new["spec"]["type"] = "NodePort"
    new["metadata"]["managedFields"] = apifields.updated(old, new, "kubectl-edit")
    owners = {e["manager"]: apifields.decode(e["fieldsV1"])
              for e in new["metadata"]["managedFields"]}
    assert owners == {"kubectl": {("f:spec", "f:selector", "f:app")},
                      "kubectl-edit": {("f:spec", "f:type")}}
    config = {"apiVersion": "v1", "kind": "Service",
              "spec": {"type": "ClusterIP", "selector": {"app": "kubia"}}}
    back = json.loads(json.dumps(new))
    back["spec"]["type"] = "ClusterIP"
    with pytest.raises(apifields.Conflict) as e:
        apifields.applied(new, back, config, "kubectl", False)
    assert e.value.message() == 'Apply failed with 1 conflict: conflict with ' \
        '"kubectl-edit" using v1: .spec.type'
    forced = apifields.applied(new, back, config, "kubectl", True)
    assert [(e["manager"], e["operation"]) for e in forced] == [("kubectl", "Apply")]
    # the same value is no conflict: the field is shared
    assert apifields.applied(new, new, dict(config, spec={"type": "NodePort"}), "kubectl",
                             False)[0]["manager"] == "kubectl-edit"


def test_apply_server_side_with_kubectl(sim, tmp_path):
    exe = kubectl_of(VERSIONS[-1])
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % VERSIONS[-1])
    sim.cli("up", "--empty", "--nodes", 1, "--binary", KUBIA, "--subnet",
            sim.base + ".0/24", "--api-port", sim.api_port, *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    k("cordon", "kubia-sim-1")  # the pods stay Pending: this is about the objects
    applied = ["service/kubia serverside-applied", "service/kubia-public serverside-applied",
               "statefulset.apps/kubia serverside-applied",
               "poddisruptionbudget.policy/kubia serverside-applied"]
    assert k.lines("apply", "--server-side", "-k", K8S) == applied
    assert k.lines("apply", "--server-side", "-k", K8S) == applied

    def managers(kind="sts", name="kubia"):
        o = json.loads(k("get", kind, name, "--show-managed-fields", "-o", "json").stdout)
        return {(e["manager"], e["operation"]): apifields.text_set(e["fieldsV1"])
                for e in o["metadata"]["managedFields"]}
    mf = managers()
    assert list(mf) == [("kubectl", "Apply")]
    assert ".spec.replicas" in mf[("kubectl", "Apply")]
    assert "managedFields" not in k("get", "sts", "kubia", "-o", "yaml").stdout

    assert k("patch", "sts", "kubia", "--type", "merge", "-p",
             '{"spec":{"replicas":2}}').stdout == "statefulset.apps/kubia patched\n"
    mf = managers()
    assert mf[("kubectl-patch", "Update")] == {".spec.replicas"}
    assert ".spec.replicas" not in mf[("kubectl", "Apply")]
    bad = k("apply", "--server-side", "-k", K8S, check=False)
    assert bad.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: ' \
        '.spec.replicas' in bad.stderr, bad.stderr
    assert re.search(r"--force-conflicts", bad.stderr)
    assert k("get", "sts", "kubia", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    assert k.lines("apply", "--server-side", "--force-conflicts", "-k", K8S) == applied
    assert k("get", "sts", "kubia", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    mf = managers()
    assert list(mf) == [("kubectl", "Apply")] and ".spec.replicas" in mf[("kubectl", "Apply")]
    # the Services and the budget were applied unchanged throughout
    for kind, name in (("svc", "kubia"), ("svc", "kubia-public"), ("pdb", "kubia")):
        assert list(managers(kind, name)) == [("kubectl", "Apply")]
