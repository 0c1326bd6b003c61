"""kubia's kustomize overlays (k8s/overlays/<target>/) and what docs/deploying.md tells a
user to run with them: each overlay changes the base in what its platform needs and in
nothing else; the NetworkPolicies let through what kubia needs and nothing else (judged
by the rules of the NetworkPolicy API, since there is no cluster here); its deploy
steps name each overlay, paths that exist and the image the manifests use.
test_manifests.py renders and validates every kustomization.
"""

import ipaddress
import os
import re
import shutil

import pytest

from k8sfiles import (K8S, KUBIA_PORT, OVERLAYS, TOP, by_kind, container, load_book,
                      load_every, meson_version, needs_kubectl, statefulset, without)
from kubiasim import manifests

if not (manifests.have_pyyaml() or manifests.kubectl()):
    pytest.skip("no way to read YAML: neither python3-yaml nor kubectl is installed",
                allow_module_level=True)


@pytest.fixture(scope="session")
def book():
    return load_book()


@pytest.fixture(scope="session")
def every():
    return load_every()


# --- the overlays ------------------------------------------------------------------------

@needs_kubectl
@pytest.mark.parametrize("target", ["kind", "minikube"])
def test_local_overlays_never_pull_the_loaded_image(every, target):
    """kind and minikube: the image that `kind load` / `minikube image load` put on the
    node, never pulled; nothing else differs from the base."""
    objects = every["overlays/" + target]
    c = container(statefulset(objects))
    assert c["image"] == "localhost/kubia:%s" % meson_version()
    assert c["imagePullPolicy"] == "Never"

    def as_base(sts):
        container(sts)["imagePullPolicy"] = "IfNotPresent"
    assert without(objects, as_base) == by_kind(every["base"])


def _copy_of_k8s(tmp_path):
    """k8s/ copied, so an overlay's files can be changed as a user would."""
    dest = tmp_path / "k8s"
    shutil.copytree(K8S, str(dest))
    return dest


@needs_kubectl
def test_the_gke_overlay(every, tmp_path):
    objects = every["overlays/gke"]
    sts = statefulset(objects)
    c = container(sts)
    # as shipped: a registry that cannot exist, so a forgotten step fails visibly
    assert c["image"] == "registry.invalid/kubia:%s" % meson_version()
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "10Gi"}
    assert sts["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert not manifests.find(objects, "ConfigMap"), "the image's ConfigMap is deployed"

    def as_base(s):
        s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] = {
            "storage": "1Mi"}
        del s["spec"]["template"]["spec"]["nodeSelector"]
        container(s)["image"] = "localhost/kubia:%s" % meson_version()
    assert without(objects, as_base) == by_kind(every["base"])

    # docs/deploying.md's step: `echo "KUBIA_IMAGE=$IMAGE" >k8s/overlays/gke/image.env`.
    k8s = _copy_of_k8s(tmp_path)
    image = "europe-west1-docker.pkg.dev/a-project/kubia/kubia:%s" % meson_version()
    (k8s / "overlays" / "gke" / "image.env").write_text("KUBIA_IMAGE=%s\n" % image)
    mine = manifests.load(str(k8s / "overlays" / "gke"))
    assert container(statefulset(mine))["image"] == image
    assert by_kind(mine) == without(objects, lambda s: container(s).update(image=image))


@needs_kubectl
def test_the_hostpath_overlay(book, every):
    """PersistentVolumes on a node's disk that bind where a default StorageClass exists
    too, survive a restart of the node, are made when missing, stay with their node,
    and that kubia (a non-root user) can write to."""
    objects = every["overlays/hostpath"]
    sts = statefulset(objects)
    [claim] = sts["spec"]["volumeClaimTemplates"]
    [sc] = manifests.find(objects, "StorageClass")
    assert claim["spec"]["storageClassName"] == sc["metadata"]["name"] == "kubia-hostpath"
    assert sc["provisioner"] == "kubernetes.io/no-provisioner"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    pvs = manifests.find(objects, "PersistentVolume")
    assert pvs == book["persistent-volumes-hostpath.yaml"]
    assert [pv["metadata"]["name"] for pv in pvs] == ["pv-a", "pv-b", "pv-c"]
    for pv in pvs:
        spec, letter = pv["spec"], pv["metadata"]["name"]
        assert spec["storageClassName"] == "kubia-hostpath"
        assert spec["accessModes"] == claim["spec"]["accessModes"]
        assert manifests.quantity(spec["capacity"]["storage"]) >= manifests.quantity(
            claim["spec"]["resources"]["requests"]["storage"])
        assert spec["persistentVolumeReclaimPolicy"] == "Retain"
        assert spec["hostPath"] == {"path": "/var/lib/kubia/" + letter,
                                    "type": "DirectoryOrCreate"}
        assert spec["nodeAffinity"] == {"required": {"nodeSelectorTerms": [{
            "matchExpressions": [{"key": "kubia-volumes", "operator": "In",
                                  "values": ["hostpath"]}]}]}}
    # The directory the kubelet makes is root's: handed to kubia's user first, by a
    # container that can do that and nothing more.
    pod = sts["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]
    assert init["command"] == ["chown", "%d:%d" % (uid, gid), "/var/data"]
    assert init["volumeMounts"] == [{"name": "data", "mountPath": "/var/data"}]
    assert init["securityContext"] == {
        "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}
    assert "limits" in init["resources"]

    def as_base(s):
        del s["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"]
        del s["spec"]["template"]["spec"]["initContainers"]
    rest = [o for o in objects if o["kind"] not in ("PersistentVolume", "StorageClass")]
    assert without(rest, as_base) == by_kind(every["base"])


# --- the NetworkPolicies: what they let through ----------------------------------------

def _selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions) selects labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _peer_matches(peer, policy_ns, end):
    """Whether a NetworkPolicyPeer (from/to) matches an end of a connection."""
    if "ipBlock" in peer:
        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        ip = ipaddress.ip_address(end["ip"])
        return ip in net and not any(ip in ipaddress.ip_network(x)
                                     for x in peer["ipBlock"].get("except") or [])
    if end.get("namespace") is None:
        return False  # not a pod: only an ipBlock matches it
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"],
                         {"kubernetes.io/metadata.name": end["namespace"]})
    else:
        ns_ok = end["namespace"] == policy_ns
    return ns_ok and ("podSelector" not in peer or _selects(peer["podSelector"],
                                                            end["labels"]))


def _port_matches(ports, port, protocol, named):
    """Whether a rule's ports allow port/protocol at a pod whose named ports are named."""
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        first = named.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if first is not None and first <= port <= p.get("endPort", first):
            return True
    return False


def _allowed(policies, src, dst, port, protocol="TCP", ns="default"):
    """Whether the policies (applied in namespace ns) let src open port/protocol at dst,
    as a NetworkPolicy implementation decides: egress at src, then ingress at dst."""
    for direction, me, other, rules_key, peers_key in (
            ("Egress", src, dst, "egress", "to"), ("Ingress", dst, src, "ingress", "from")):
        if me.get("namespace") != ns:
            continue  # not a pod these policies can select
        mine = [p["spec"] for p in policies if _selects(p["spec"]["podSelector"], me["labels"])
                and direction in p["spec"].get("policyTypes", ["Ingress"])]
        if not mine:
            continue  # isolated in that direction by no policy: allowed
        if not any(_port_matches(rule.get("ports"), port, protocol, dst.get("ports", {}))
                   and (peers_key not in rule or any(_peer_matches(peer, ns, other)
                                                     for peer in rule[peers_key]))
                   for spec in mine for rule in spec.get(rules_key) or []):
            return False
    return True


def _kubia_pod(every):
    sts = statefulset(every["overlays/network-policy"])
    c = container(sts)
    return {"namespace": "default", "labels": sts["spec"]["template"]["metadata"]["labels"],
            "ports": {p["name"]: p["containerPort"] for p in c["ports"]}}


@needs_kubectl
def test_network_policies_let_through_what_kubia_needs_and_nothing_else(every):
    objects = every["overlays/network-policy"]
    policies = manifests.find(objects, "NetworkPolicy")
    assert len(policies) == 3
    assert policies == every["components/network-policy"]
    kubia = _kubia_pod(every)
    dns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    agent = {"namespace": "kube-system", "labels": {"k8s-app": "konnectivity-agent"}}
    client = {"namespace": "default", "labels": {"run": "client"}}
    stranger = {"namespace": "shop", "labels": {"app": "kubia"}}
    web = {"namespace": "default", "labels": {"app": "web"}, "ports": {"http": 8080}}
    outside = {"ip": "192.0.2.7"}
    allowed = [  # (from, to, port, protocol)
        (kubia, kubia, KUBIA_PORT, "TCP"),  # a peer's GET /data
        (kubia, dns, 53, "UDP"), (kubia, dns, 53, "TCP"),  # the SRV lookup
        (agent, kubia, KUBIA_PORT, "TCP"),  # the API server's proxy (Konnectivity)
        (client, kubia, KUBIA_PORT, "TCP"),  # kubia-public's clients in the namespace
    ]
    denied = [
        (kubia, kubia, 9090, "TCP"), (kubia, kubia, KUBIA_PORT, "UDP"),
        (kubia, dns, 5353, "UDP"), (kubia, web, KUBIA_PORT, "TCP"),
        (kubia, outside, 443, "TCP"), (stranger, kubia, KUBIA_PORT, "TCP"),
        (agent, kubia, 22, "TCP"), (client, kubia, 9090, "TCP"),
        (outside, kubia, KUBIA_PORT, "TCP"),
    ]
    for src, dst, port, proto in allowed:
        assert _allowed(policies, src, dst, port, proto), (src, dst, port, proto)
    for src, dst, port, proto in denied:
        assert not _allowed(policies, src, dst, port, proto), (src, dst, port, proto)
    # the policies are what make the difference: without them all of it goes through
    for src, dst, port, proto in denied:
        assert _allowed([], src, dst, port, proto)
    # each policy is needed: without kubia-dns, the lookup is blocked, and so on
    for name, (src, dst, port, proto) in (("kubia-dns", allowed[1]),
                                          ("kubia-peers", allowed[0]),
                                          ("kubia-clients", allowed[3])):
        rest = [p for p in policies if p["metadata"]["name"] != name]
        assert not _allowed(rest, src, dst, port, proto), name
    assert without(objects, lambda s: None) == by_kind(every["base"] + policies)


# --- what docs/deploying.md tells a user to run ----------------------------------------

def _deploying():
    with open(os.path.join(TOP, "docs", "deploying.md"), encoding="utf-8") as f:
        return f.read()


def test_deploying_names_each_target_with_one_apply_of_its_overlay():
    text = _deploying()
    for target in OVERLAYS:
        assert "kubectl apply -k k8s/overlays/%s" % target in text, target
    assert "kubectl apply -k k8s/\n" in text or "kubectl apply -k k8s/`" in text
    # no file to write by hand: no here-document, no placeholder to fill in
    assert "<<" not in text
    assert "REGISTRY/" not in text
    # every path under k8s/ that it names is there
    for p in set(re.findall(r"\bk8s/[\w./-]*\w", text)):
        assert os.path.exists(os.path.join(TOP, p)), p


def test_the_build_commands_make_the_image_the_manifests_name(book):
    image = container(statefulset(book["kubia-statefulset.yaml"]))["image"]
    with open(os.path.join(TOP, "docker", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    tags = re.findall(r"build .*-t (\S+) \.", dockerfile)
    assert tags and set(tags) == {image}, tags
    local = re.findall(r"(?:docker|podman) build [^\n]*-t (\S+) \.", _deploying())
    assert local and set(local) <= {image, '"$IMAGE"', "localhost/kubia:test"}, local
