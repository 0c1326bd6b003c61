"""kubia-sim's patches (kubiasim/smp.py): the strategic merge patches kubectl edit,
patch and apply send, merge patches and JSON patches, on a StatefulSet's template."""

import pytest
from kubiasim import smp


def sts():
    return {"spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "kubia"}},
                                                 "spec": {"containers": [{
                                                     "name": "kubia", "image": "kubia:1",
                                                     "ports": [{"containerPort": 8080,
                                                                "name": "http"}],
                                                     "env": [{"name": "A", "value": "1"},
                                                             {"name": "B", "value": "2"}],
                                                     "volumeMounts": [{
                                                         "name": "data",
                                                         "mountPath": "/var/data"}]}]}}}}


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def test_strategic_merges_lists_by_their_merge_keys():
    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "kubia", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}}
    out = smp.strategic(sts(), patch)
    c = containers(out)
    assert len(c) == 1 and c[0]["image"] == "kubia:1"
    assert c[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                           {"name": "C", "value": "4"}]
    assert c[0]["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert containers(sts())[0]["env"][1]["value"] == "2"  # the original is left alone


def test_strategic_directives():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "kubia"}],
        "containers": [{"name": "kubia", "$setElementOrder/env": [{"name": "B"},
                                                                   {"name": "A"}],
                        "env": [{"name": "A", "$patch": "delete"}]}]}}}}
    out = smp.strategic(sts(), patch)
    assert containers(out)[0]["env"] == [{"name": "B", "value": "2"}]
    out = smp.strategic(sts(), {"spec": {"template": {"$patch": "replace", "spec": {}}}})
    assert out["spec"]["template"] == {"spec": {}}
    out = smp.strategic(sts(), {"spec": {"$retainKeys": ["template"], "replicas": None}})
    assert sorted(out["spec"]) == ["template"]
    out = smp.strategic(sts(), {"spec": {"template": {"spec": {"containers": [
        {"name": "kubia", "volumeMounts": [{"mountPath": "/var/data",
                                            "$patch": "delete"}]}]}}}})
    assert containers(out)[0]["volumeMounts"] == []
    with pytest.raises(smp.PatchError):
        smp.strategic(sts(), {"spec": {"template": {"spec": {"containers": [
            {"image": "no-name"}]}}}})


def test_strategic_replaces_lists_without_a_merge_key_and_service_ports_by_port():
    out = smp.strategic({"spec": {"args": ["a", "b"]}}, {"spec": {"args": ["c"]}})
    assert out == {"spec": {"args": ["c"]}}
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    out = smp.strategic(svc, {"spec": {"ports": [{"port": 80, "name": "http"}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "name": "http"}]


def test_merge_patch():
    out = smp.merge(sts(), {"spec": {"replicas": 3, "template": {"metadata": None}}})
    assert out["spec"]["replicas"] == 3 and "metadata" not in out["spec"]["template"]
    assert containers(smp.merge(sts(), {"spec": {"template": {"spec": {"containers": []}}}}
                               )) == []


def test_json_patch():
    out = smp.json_patch(sts(), [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "C", "value": "5"}},
        {"op": "remove", "path": "/spec/template/spec/containers/0/env/0"},
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/minReadySeconds"}])
    assert out["spec"]["replicas"] == 3 and out["spec"]["minReadySeconds"] == 3
    assert [e["name"] for e in containers(out)[0]["env"]] == ["B", "C"]
    for bad in ([{"op": "replace", "path": "/spec/nope", "value": 1}],
                [{"op": "test", "path": "/spec/replicas", "value": 9}],
                [{"op": "remove", "path": "/spec/template/spec/containers/5"}],
                [{"op": "frobnicate", "path": "/spec"}], {"op": "add"}):
        with pytest.raises(smp.PatchError):
            smp.json_patch(sts(), bad)
