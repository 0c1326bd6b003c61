"""kubia's Kubernetes manifests (k8s/): valid API objects, and what kubia needs of them.

There is no cluster here. `kubectl kustomize` renders every kustomization under k8s/
(the default k8s/, its base k8s/base/, the overlays k8s/overlays/<target>/ and the
components); every object they render and every file under the book's names is checked
against the Kubernetes API schemas by validate.mjs (the npm packages kubernetes-models
and yaml, pinned in package.json and package-lock.json); and the tests below read the
manifests and check what the schemas cannot know: the port the headless Service's SRV
records carry, the name kubia asks for them, the probes' paths, the security context,
the retention of the claims, the labels, and so on, in the book's files and in
everything every kustomization renders. What each overlay changes, and what the
NetworkPolicies let through, is in test_overlays.py; k8sfiles.py has what both share.

The npm packages are installed with `npm ci` outside the source tree: in
$KUBIA_VALIDATOR_DIR when it is set (kept and reused while package-lock.json is
unchanged), else in a temporary directory of this run. Without node, npm or kubectl the
tests that need them are skipped; so are the validation tests when the npm registry
cannot be reached, except in CI (CI set in the environment), where that is a failure.
"""

import copy
import filecmp
import os
import re
import shutil
import subprocess

import pytest

from k8sfiles import (ALL_FILES, K8S, KUBECTL, KUBIA_PORT, TOP, container, env,
                      kustomizations, load_book, load_every, meson_version, needs_kubectl,
                      path, statefulset)
from kubiasim import manifests, podspec

HERE = os.path.dirname(os.path.abspath(__file__))
KUBIA_UID = KUBIA_GID = 10001
NPM_TIMEOUT_S = 600
NODE_TIMEOUT_S = 120
# What npm says when it cannot reach the registry.
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
                  "ENETUNREACH", "EHOSTUNREACH", "ERR_SOCKET_TIMEOUT")

NODE = shutil.which("node")
NPM = shutil.which("npm")

if not (manifests.have_pyyaml() or KUBECTL):
    pytest.skip("no way to read YAML: neither python3-yaml nor kubectl is installed",
                allow_module_level=True)


@pytest.fixture(scope="session")
def rendered():
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    return manifests.load()


@pytest.fixture(scope="session")
def book():
    return load_book()


@pytest.fixture(scope="session")
def every():
    return load_every()


def all_statefulsets(book, every):
    """The StatefulSet of each file and of each kustomization that has one, by where it
    comes from."""
    out = {
        "kubia-statefulset.yaml": statefulset(book["kubia-statefulset.yaml"]),
        "kubia-statefulset-peers.yaml": statefulset(book["kubia-statefulset-peers.yaml"]),
    }
    for where, objects in every.items():
        if manifests.find(objects, "StatefulSet"):
            out["kubectl kustomize k8s/%s" % where] = statefulset(objects)
    return out


def mebibytes(quantity):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert m, "quantity %r is not in Ki, Mi or Gi" % quantity
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[m.group(2)]


# --- the validator ----------------------------------------------------------------------

def _inside(child, parent):
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return os.path.commonpath([child, parent]) == parent


@pytest.fixture(scope="session")
def validator(tmp_path_factory):
    """Runs validate.mjs with its packages installed by npm ci outside the source tree."""
    if NODE is None or NPM is None:
        pytest.skip("node and npm are needed to validate the manifests (bash test/setup.sh)")
    where = os.environ.get("KUBIA_VALIDATOR_DIR") or str(tmp_path_factory.mktemp("validator"))
    if _inside(where, TOP):
        pytest.fail("KUBIA_VALIDATOR_DIR %s is inside the source tree" % where)
    os.makedirs(where, exist_ok=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(where, name))
    # npm ci empties node_modules and installs the lock file's packages again; skip it
    # when the directory already holds what this lock file says.
    stamp = os.path.join(where, "installed-package-lock.json")
    lock = os.path.join(where, "package-lock.json")
    if not (os.path.exists(stamp) and filecmp.cmp(stamp, lock, shallow=False)
            and os.path.isdir(os.path.join(where, "node_modules"))):
        env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
                   npm_config_audit="false")
        r = subprocess.run([NPM, "ci", "--prefer-offline", "--ignore-scripts",
                            "--no-audit", "--no-fund"], cwd=where, env=env,
                           capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if any(code in out for code in NETWORK_ERRORS) and not os.environ.get("CI"):
                pytest.skip("the npm registry cannot be reached: %s" % out.strip()[-500:])
            pytest.fail("npm ci failed (exit %d):\n%s" % (r.returncode, out))
        shutil.copyfile(lock, stamp)
    script = os.path.join(where, "validate.mjs")

    def validate(*files, stdin=None):
        return subprocess.run([NODE, script, *files], input=stdin, capture_output=True,
                              text=True, timeout=NODE_TIMEOUT_S, cwd=TOP)

    return validate


def test_validator_is_installed_outside_the_source_tree(validator):
    assert not os.path.exists(os.path.join(HERE, "node_modules"))
    assert not os.path.exists(os.path.join(TOP, "node_modules"))


@needs_kubectl
def test_every_rendered_object_validates(validator, rendered):
    text = manifests.render()
    r = validator("-", stdin=text)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(rendered) == 4, r.stdout
    assert all(line.startswith("valid: ") for line in lines), r.stdout


def test_the_kustomizations_are_found():
    # the default, its base, an overlay per target, the NetworkPolicy component
    assert kustomizations() == [".", "base", "components/network-policy", "overlays/gke",
                                "overlays/hostpath", "overlays/kind", "overlays/minikube",
                                "overlays/network-policy"]


@needs_kubectl
@pytest.mark.parametrize("where", kustomizations())
def test_every_kustomization_renders_and_validates(validator, where):
    """kubectl kustomize of every kustomization under k8s/; each object it renders is a
    valid API object, and none is the local-config one kustomize leaves out."""
    text = manifests.render(os.path.join(K8S, where))
    objects = manifests.parse(text)
    assert objects, where
    r = validator("-", stdin=text)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(objects), r.stdout
    assert all(line.startswith("valid: ") for line in lines), r.stdout
    for o in objects:
        annotations = o["metadata"].get("annotations") or {}
        assert "config.kubernetes.io/local-config" not in annotations, (where, o["kind"])


@pytest.mark.parametrize("name", ALL_FILES)
def test_book_file_validates(validator, book, name):
    where = os.path.join("k8s", ALL_FILES[name], name)
    r = validator(where)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(book[name]), r.stdout
    assert all(line.startswith("valid: %s " % where) for line in lines), r.stdout


def _pet_text():
    with open(path("kubia-statefulset.yaml"), encoding="utf-8") as f:
        return f.read()


def _broken(old, new):
    text = _pet_text()
    assert old in text
    return text.replace(old, new, 1)


NOT_VALID = {
    "replicas not a number": (_broken("replicas: 2", 'replicas: "three"'),
                              "StatefulSet kubia", "spec/replicas must be integer"),
    "selector missing": (_broken("  selector:\n    matchLabels:\n      app: kubia\n", ""),
                         "StatefulSet kubia", "must have required property selector"),
    "podManagementPolicy not one of its values": (
        _broken("podManagementPolicy: OrderedReady", "podManagementPolicy: Sequential"),
        "StatefulSet kubia", "podManagementPolicy must be equal to one of the allowed values"),
    "container port a word": (_broken("containerPort: 8080", "containerPort: http"),
                              "StatefulSet kubia", "containerPort must be integer"),
    # the schema knows the sleep action (Kubernetes 1.29 and later) and checks it
    "preStop sleep of a word": (
        _broken("              seconds: 2\n", "              seconds: two\n"),
        "StatefulSet kubia", "sleep/seconds must be integer"),
    "unknown kind": ("apiVersion: v1\nkind: Serivce\nmetadata:\n  name: kubia\n",
                     "Serivce kubia", "unknown kind Serivce"),
    "no name": ("apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {}\n",
                "Service (no name)", "metadata.name is missing"),
    "a List item": ("apiVersion: v1\nkind: List\nitems:\n"
                    "- {apiVersion: v1, kind: Service, metadata: {name: a}}\n"
                    "- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {ports: 80}}\n",
                    "document 1 item 2: Service b", "spec/ports must be array"),
    "not YAML": ("kind: [Service\n", "document 1", "not valid YAML"),
    "nothing": ("# only a comment\n", "standard input", "no Kubernetes object"),
}


@pytest.mark.parametrize("case", NOT_VALID)
def test_validator_rejects(validator, case):
    text, names, why = NOT_VALID[case]
    r = validator(stdin=text)
    assert r.returncode == 1, r.stdout + r.stderr
    assert names in r.stderr and why in r.stderr, r.stderr


def test_validator_names_the_file_that_cannot_be_read(validator, tmp_path):
    missing = str(tmp_path / "missing.yaml")
    r = validator(path("kubia-pdb.yaml"), missing)
    assert r.returncode == 2 and missing in r.stderr, r.stderr


# --- what the deployment says -----------------------------------------------------------

@needs_kubectl
def test_kustomization_deploys_the_peers_version(rendered):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == [("PodDisruptionBudget", "kubia"), ("Service", "kubia"),
                     ("Service", "kubia-public"), ("StatefulSet", "kubia")]
    sts = statefulset(rendered)
    assert sts["spec"]["replicas"] == 3
    assert env(container(sts))["KUBIA_MODE"] == "peers"
    # Volumes are provisioned by the cluster, and the namespace is the current one.
    assert not manifests.find(rendered, "PersistentVolume")
    assert all("namespace" not in o["metadata"] for o in rendered)


def test_pet_and_peers_files(book):
    pet = statefulset(book["kubia-statefulset.yaml"])
    peers = statefulset(book["kubia-statefulset-peers.yaml"])
    assert (pet["spec"]["replicas"], env(container(pet))["KUBIA_MODE"]) == (2, "pet")
    assert (peers["spec"]["replicas"], env(container(peers))["KUBIA_MODE"]) == (3, "peers")
    # Apart from those two, the peers version is the pet version: applying it is the
    # chapter's update and nothing else.
    same = copy.deepcopy(peers)
    same["spec"]["replicas"] = 2
    for e in container(same)["env"]:
        if e["name"] == "KUBIA_MODE":
            e["value"] = "pet"
    assert same == pet


@needs_kubectl
def test_statefulset_as_the_book_names_it(book, every):
    for where, sts in all_statefulsets(book, every).items():
        assert sts["apiVersion"] == "apps/v1", where
        assert sts["metadata"]["name"] == "kubia", where
        spec = sts["spec"]
        assert spec["serviceName"] == "kubia", where
        assert spec["selector"] == {"matchLabels": {"app": "kubia"}}, where
        assert spec["template"]["metadata"]["labels"]["app"] == "kubia", where
        [claim] = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data", where
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], where
        # the book's size, but where a platform needs another (overlays/gke)
        size = "10Gi" if where.endswith("overlays/gke") else "1Mi"
        assert claim["spec"]["resources"]["requests"]["storage"] == size, where
        c = container(sts)
        assert c["name"] == "kubia", where
        assert c["ports"] == [{"name": "http", "containerPort": KUBIA_PORT,
                               "protocol": "TCP"}], where
        assert c["volumeMounts"] == [{"name": "data", "mountPath": "/var/data"}], where


def _contract_variables():
    with open(os.path.join(TOP, "docs", "contract.md"), encoding="utf-8") as f:
        return set(re.findall(r"^\| `--[a-z-]+` \| `(KUBIA_[A-Z_]+)` \|", f.read(), re.M))


@needs_kubectl
def test_environment(book, every):
    known = _contract_variables()
    assert "KUBIA_MODE" in known and "KUBIA_SERVICE" in known
    for where, sts in all_statefulsets(book, every).items():
        c = container(sts)
        e = env(c)
        assert set(e) <= known, "%s: not in docs/contract.md's settings: %s" % (
            where, set(e) - known)
        assert all(isinstance(v, str) for v in e.values()), where
        # The SRV name the Kubernetes DNS specification defines for the governing
        # Service's port named http, _http._tcp.<service>, short: the pod's resolv.conf
        # search list supplies its namespace. (The bare Service name has SRV records
        # in CoreDNS and kube-dns only, as their extension.)
        [port] = [p for p in manifests.find(book["kubia-service-headless.yaml"], "Service",
                                            sts["spec"]["serviceName"])[0]["spec"]["ports"]
                  if manifests.resolve_port(p["targetPort"], c) == KUBIA_PORT]
        assert e["KUBIA_SERVICE"] == "_%s._%s.%s" % (
            port["name"], port["protocol"].lower(), sts["spec"]["serviceName"]), where
        assert e["KUBIA_SERVICE"] == "_http._tcp.kubia", where
        assert not any("default" in v or "cluster.local" in v for v in e.values()), where
        assert int(e["KUBIA_PORT"]) == c["ports"][0]["containerPort"], where
        assert os.path.dirname(e["KUBIA_DATA_FILE"]) == c["volumeMounts"][0]["mountPath"]
        pod = sts["spec"]["template"]["spec"]
        # Service links would set KUBIA_PORT=tcp://... for a Service named kubia.
        assert pod["enableServiceLinks"] is False, where


@needs_kubectl
def test_probes_never_ask_the_peers(book, every):
    for where, sts in all_statefulsets(book, every).items():
        c = container(sts)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in c:
                get = c[probe]["httpGet"]
                assert get.get("path", "/") != "/", "%s: %s on /" % (where, probe)
                assert manifests.resolve_port(get["port"], c) == KUBIA_PORT, where
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where


@needs_kubectl
def test_headless_service_targets_the_container_port(book, rendered):
    for where, objects in (("kubia-service-headless.yaml", book["kubia-service-headless.yaml"]),
                           ("kubectl kustomize k8s/", rendered)):
        [svc] = manifests.find(objects, "Service", "kubia")
        spec = svc["spec"]
        assert spec["clusterIP"] == "None", where
        assert spec["selector"] == {"app": "kubia"}, where
        # Only ready pods in DNS: a decision, so it is written out.
        assert spec["publishNotReadyAddresses"] is False, where
        [port] = spec["ports"]
        assert port["name"] == "http", where
        # The SRV records carry the target port, and kubia dials what they say.
        c = container(statefulset(book["kubia-statefulset.yaml"]))
        assert manifests.resolve_port(port["targetPort"], c) == KUBIA_PORT, where
        assert port["port"] == KUBIA_PORT, where


@needs_kubectl
def test_public_service(book, rendered):
    for objects in (book["kubia-service-public.yaml"], rendered):
        [svc] = manifests.find(objects, "Service", "kubia-public")
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP"
        assert spec["selector"] == {"app": "kubia"}
        [port] = spec["ports"]
        c = container(statefulset(book["kubia-statefulset.yaml"]))
        assert port["port"] == 80
        assert manifests.resolve_port(port["targetPort"], c) == KUBIA_PORT


@needs_kubectl
def test_security_context(book, every):
    with open(os.path.join(TOP, "docker", "Dockerfile"), encoding="utf-8") as f:
        assert re.search(r"^USER %d:%d$" % (KUBIA_UID, KUBIA_GID), f.read(), re.M), \
            "the image's user is not the one the manifests run as"
    for where, sts in all_statefulsets(book, every).items():
        pod = sts["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == \
            (KUBIA_UID, KUBIA_GID, KUBIA_GID), where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
        csc = container(sts)["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True, where
        assert csc["allowPrivilegeEscalation"] is False, where
        assert csc["capabilities"] == {"drop": ["ALL"]}, where
        assert not csc.get("privileged"), where


@needs_kubectl
def test_lifecycle(book, every):
    for where, sts in all_statefulsets(book, every).items():
        spec = sts["spec"]
        assert spec["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain", "whenScaled": "Retain"}, where
        assert spec["podManagementPolicy"] == "OrderedReady", where
        assert spec["updateStrategy"] == {"type": "RollingUpdate"}, where
        # Kubernetes' default grace period: what it gives any pod, no more.
        grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == 30, where
        # The preStop sleep keeps kubia serving while the endpoints catch up with the
        # deletion (kubia stops accepting on SIGTERM); the grace period includes it and
        # must leave kubia's own shutdown time (KUBIA_SHUTDOWN_TIMEOUT_MS, the default
        # stated) after it, with a margin for the last views' answers and the close.
        # The sleep action, not exec: the image has no shell.
        assert container(sts)["lifecycle"] == {"preStop": {"sleep": {"seconds": 2}}}, where
        env = {e["name"]: e.get("value") for e in container(sts)["env"]}
        shutdown_s = int(env["KUBIA_SHUTDOWN_TIMEOUT_MS"]) / 1000
        assert shutdown_s == 25, where
        assert 2 + shutdown_s + 2 <= grace, where


@needs_kubectl
def test_resources(book, every):
    for where, sts in all_statefulsets(book, every).items():
        res = container(sts)["resources"]
        requests, limits = res["requests"], res["limits"]
        assert "cpu" in requests and "cpu" not in limits, where
        # kubia is about 10 MiB resident at rest; a limit below that could never run it.
        assert 16 <= mebibytes(requests["memory"]) <= mebibytes(limits["memory"]), where


@needs_kubectl
def test_disruption_budget(book, every):
    for where, objects in [("kubia-pdb.yaml", book["kubia-pdb.yaml"])] + sorted(every.items()):
        if where == "components/network-policy":
            continue  # the policies only
        [pdb] = manifests.find(objects, "PodDisruptionBudget", "kubia")
        assert pdb["apiVersion"] == "policy/v1", where
        assert pdb["spec"]["maxUnavailable"] == 1, where
        assert pdb["spec"]["selector"] == {"matchLabels": {"app": "kubia"}}, where


def _kustomization(where):
    [k] = manifests.load(os.path.join(K8S, where, "kustomization.yaml"), "pyyaml")
    return k


@needs_kubectl
def test_image_is_set_in_one_place(book, rendered, tmp_path):
    plain = {container(statefulset(book[n]))["image"]
             for n in ("kubia-statefulset.yaml", "kubia-statefulset-peers.yaml")}
    assert len(plain) == 1
    name, _, tag = plain.pop().rpartition(":")
    assert tag == meson_version()
    assert container(statefulset(rendered))["image"].endswith(":" + meson_version())
    if manifests.have_pyyaml():
        k = _kustomization("base")
        [img] = k["images"]
        assert img["name"] == name
        assert container(statefulset(rendered))["image"] == "%s:%s" % (
            img.get("newName", name), img["newTag"])
        assert set(k["resources"]) & {"persistent-volumes-hostpath.yaml",
                                      "persistent-volumes-gcepd.yaml"} == set()
        assert _kustomization(".")["resources"] == ["base"]
    # An overlay that changes the image changes it in the StatefulSet and nowhere else.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources:\n- %s\nimages:\n- name: %s\n  newName: registry.example.com/kubia\n"
        "  newTag: 9.9.9\n" % (os.path.relpath(os.path.join(K8S, "base"), overlay), name))
    objects = manifests.load(str(overlay))
    assert container(statefulset(objects))["image"] == "registry.example.com/kubia:9.9.9"
    assert len(objects) == len(rendered)


def test_the_gce_persistent_volumes(book):
    # The book's, with the disks' size (10 GiB, the smallest persistent disk); no class,
    # so they bind only where the cluster has no default StorageClass, and no
    # kustomization deploys them.
    pvs = book["persistent-volumes-gcepd.yaml"]
    assert [pv["metadata"]["name"] for pv in pvs] == ["pv-a", "pv-b", "pv-c"]
    for pv in pvs:
        spec = pv["spec"]
        letter = pv["metadata"]["name"]
        assert pv["apiVersion"] == "v1" and pv["kind"] == "PersistentVolume"
        assert spec["capacity"] == {"storage": "10Gi"}
        assert spec["accessModes"] == ["ReadWriteOnce"]
        assert spec["persistentVolumeReclaimPolicy"] == "Retain"
        assert spec["storageClassName"] == ""
        assert spec["gcePersistentDisk"] == {"pdName": letter, "fsType": "ext4"}
    with open(path("persistent-volumes-gcepd.yaml"), encoding="utf-8") as f:
        assert "gcloud compute disks create --size=10GiB" in f.read()


# --- labels and scheduling ---------------------------------------------------------------

RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
               "app.kubernetes.io/version", "app.kubernetes.io/component")


@needs_kubectl
def test_recommended_labels_without_changing_the_selectors(book, every):
    """Every object carries the book's app label and Kubernetes' recommended
    app.kubernetes.io labels, the version being meson.build's; the pods too. The
    selectors stay the book's app: kubia: a StatefulSet's selector cannot change, so
    clusters that run the earlier manifests can apply these."""
    want = {"app": "kubia", "app.kubernetes.io/name": "kubia",
            "app.kubernetes.io/instance": "kubia",
            "app.kubernetes.io/version": meson_version(),
            "app.kubernetes.io/component": "data-store"}
    sources = [(n, o) for n, objects in book.items() for o in objects]
    sources += [("k8s/" + w, o) for w, objects in every.items() for o in objects]
    for where, o in sources:
        labels = o["metadata"].get("labels") or {}
        assert {k: labels.get(k) for k in want} == want, (where, o["kind"])
        if o["kind"] == "StatefulSet":
            pod = o["spec"]["template"]["metadata"]["labels"]
            assert {k: pod.get(k) for k in want} == want, where
            assert o["spec"]["selector"] == {"matchLabels": {"app": "kubia"}}, where
        if o["kind"] == "Service":
            assert o["spec"]["selector"] == {"app": "kubia"}, where
        if o["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if o["kind"] == "PodDisruptionBudget" else "podSelector"
            assert o["spec"][key] == {"matchLabels": {"app": "kubia"}}, where


# Prometheus' usual pod scrape job keeps the pods annotated prometheus.io/scrape "true"
# and asks prometheus.io/path on prometheus.io/port (docs/prometheus.md).
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(KUBIA_PORT),
                      "prometheus.io/path": "/metrics"}


@needs_kubectl
def test_pods_carry_the_scrape_annotations(book, every):
    """Every pod is scraped for its metrics: GET /metrics on the container port, the
    annotations' values strings (a number or a boolean is not a valid annotation)."""
    for where, sts in all_statefulsets(book, every).items():
        annotations = sts["spec"]["template"]["metadata"]["annotations"]
        assert annotations == SCRAPE_ANNOTATIONS, where
        assert int(annotations["prometheus.io/port"]) == container(sts)["ports"][0][
            "containerPort"], where
        assert "annotations" not in sts["metadata"], where
    # kubia-sim reads them into the pod template, and its Prometheus follows them
    assert manifests.settings(path("kubia-statefulset.yaml"))["pod_annotations"] == \
        SCRAPE_ANNOTATIONS


@needs_kubectl
def test_pods_spread_over_nodes_where_they_can(book, every):
    for where, sts in all_statefulsets(book, every).items():
        pod = sts["spec"]["template"]
        [spread] = pod["spec"]["topologySpreadConstraints"]
        assert spread == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                          "whenUnsatisfiable": "ScheduleAnyway",
                          "labelSelector": {"matchLabels": {"app": "kubia"}}}, where
        # it counts this StatefulSet's own pods
        assert pod["metadata"]["labels"]["app"] == "kubia", where


# --- manifests.py -----------------------------------------------------------------------

@needs_kubectl
def test_settings_of_the_kustomization():
    s = manifests.settings()
    assert s == {
        "statefulset_name": "kubia",
        "replicas": 3,
        "service_name": "kubia",
        "image": "localhost/kubia:%s" % meson_version(),
        "container_port": KUBIA_PORT,
        "readiness_path": "/readyz",
        "liveness_path": "/healthz",
        "readiness_probe": s["readiness_probe"],
        "liveness_probe": s["liveness_probe"],
        "command": None,
        "args": None,
        "security": {
            "run_as_user": 10001, "run_as_group": 10001, "run_as_non_root": True,
            "fs_group": 10001, "read_only_root_filesystem": True,
            "allow_privilege_escalation": False, "capabilities_drop": ["ALL"],
            "capabilities_add": [],
        },
        "resources": {"requests": {"cpu": 0.05, "memory": 32 * 2**20},
                      "limits": {"memory": 64 * 2**20}},
        "env": s["env"],
        "pod_labels": {"app": "kubia", "app.kubernetes.io/name": "kubia",
                       "app.kubernetes.io/instance": "kubia",
                       "app.kubernetes.io/version": meson_version(),
                       "app.kubernetes.io/component": "data-store"},
        "pod_annotations": SCRAPE_ANNOTATIONS,
        "volume_mount_path": "/var/data",
        "termination_grace_period_seconds": s["termination_grace_period_seconds"],
        "pre_stop_sleep_seconds": 2,
        "headless_service_port": KUBIA_PORT,
        "headless_service_target_port": KUBIA_PORT,
        "headless_service_ports": [{"name": "http", "protocol": "tcp", "port": KUBIA_PORT}],
        "pod_spec": s["pod_spec"],
    }
    # the pod template as given, which kubia-sim runs as it is: nothing it refuses
    assert s["pod_spec"]["containers"][0]["name"] == "kubia"
    podspec.check_pod("k8s/", s["pod_spec"])
    assert s["env"]["KUBIA_MODE"] == "peers"
    assert s["env"]["KUBIA_SERVICE"] == "_http._tcp.kubia"
    assert s["termination_grace_period_seconds"] == 30
    for probe, p in (("readiness_probe", "/readyz"), ("liveness_probe", "/healthz")):
        assert s[probe]["path"] == p and s[probe]["port"] == KUBIA_PORT
        assert s[probe]["period_s"] >= 1 and s[probe]["failure_threshold"] >= 1


def test_settings_fill_in_the_probe_defaults(tmp_path):
    # Kubernetes' defaults: no initial delay, every 10 s, 1 s time-out, 3 failures.
    text = _broken("          periodSeconds: 5\n          timeoutSeconds: 1\n"
                   "          failureThreshold: 2\n", "")
    f = tmp_path / "sts.yaml"
    f.write_text(text)
    p = manifests.settings(str(f))["readiness_probe"]
    assert p == {"path": "/readyz", "port": KUBIA_PORT, "initial_delay_s": 0,
                 "period_s": 10, "timeout_s": 1, "failure_threshold": 3}


@pytest.mark.parametrize("q,value", [("64Mi", 64 * 2**20), ("50m", 0.05), ("0.5", 0.5),
                                     (2, 2), ("1.5Gi", 1.5 * 2**30), ("100k", 100000),
                                     ("2M", 2000000), ("1e3", 1000), (".5", 0.5)])
def test_quantities(q, value):
    assert manifests.quantity(q) == pytest.approx(value)


@pytest.mark.parametrize("q", ["64MB", "abc", "1e3Mi", "", "Mi", True, None, "1.2.3"])
def test_quantities_refused(q):
    with pytest.raises(manifests.ManifestError, match="quantity"):
        manifests.quantity(q)


def test_settings_of_one_file():
    s = manifests.settings(path("kubia-statefulset.yaml"))
    assert (s["replicas"], s["env"]["KUBIA_MODE"], s["container_port"]) == (2, "pet", 8080)
    # No Service in the file.
    assert s["headless_service_port"] is None and s["headless_service_target_port"] is None
    assert s["headless_service_ports"] is None
    # ... unless it is read as created after the chapter's headless Service
    s = manifests.settings(path("kubia-statefulset.yaml"), services=manifests.HEADLESS_SERVICE)
    assert s["headless_service_ports"] == [{"name": "http", "protocol": "tcp",
                                            "port": KUBIA_PORT}]


def test_settings_of_a_service_with_several_ports(tmp_path):
    # every port as cluster DNS publishes it: the endpoint's port, the protocol in lower
    # case; a Service of the source's own takes the place of the one given as created
    f = _with_headless(tmp_path, "  - name: http\n    port: 80\n    targetPort: http\n"
                       "  - name: gossip\n    port: 7946\n    protocol: UDP\n")
    s = manifests.settings(f, services=manifests.HEADLESS_SERVICE)
    assert s["headless_service_ports"] == [
        {"name": "http", "protocol": "tcp", "port": KUBIA_PORT},
        {"name": "gossip", "protocol": "udp", "port": 7946}]
    assert (s["headless_service_port"], s["headless_service_target_port"]) == (80, KUBIA_PORT)


def _with_headless(tmp_path, ports, extra=""):
    f = tmp_path / "manifest.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: kubia\nspec:\n"
                 "  clusterIP: None\n  selector:\n    app: kubia\n  ports:\n" + ports
                 + "---\n" + _pet_text() + extra)
    return str(f)


def test_settings_show_the_books_port_mistake(tmp_path):
    # The book's headless Service: port 80 and no targetPort, so its SRV records say 80.
    s = manifests.settings(_with_headless(tmp_path, "  - name: http\n    port: 80\n"))
    assert (s["headless_service_port"], s["headless_service_target_port"]) == (80, 80)
    assert s["headless_service_target_port"] != s["container_port"]


@pytest.mark.parametrize("target", ["8080", "http", '"8080"'])
def test_settings_resolve_the_target_port(tmp_path, target):
    s = manifests.settings(_with_headless(
        tmp_path, "  - name: http\n    port: 80\n    targetPort: %s\n" % target))
    assert s["headless_service_target_port"] == KUBIA_PORT


def test_settings_refuse_what_kubia_cannot_run(tmp_path):
    with pytest.raises(manifests.ManifestError, match="one StatefulSet"):
        manifests.settings(path("kubia-pdb.yaml"))
    with pytest.raises(manifests.ManifestError, match="no port named 'web'"):
        manifests.settings(_with_headless(tmp_path, "  - port: 80\n    targetPort: web\n"))
    f = tmp_path / "not-headless.yaml"
    f.write_text(_pet_text() + "---\napiVersion: v1\nkind: Service\nmetadata:\n"
                 "  name: kubia\nspec:\n  ports:\n  - port: 8080\n")
    with pytest.raises(manifests.ManifestError, match="not headless"):
        manifests.settings(str(f))
    f = tmp_path / "exec-hook.yaml"
    f.write_text(_broken("            sleep:\n              seconds: 2\n",
                         "            exec:\n              command: [sleep, '2']\n"))
    with pytest.raises(manifests.ManifestError, match="only the sleep action"):
        manifests.settings(str(f))


def test_settings_env_from_elsewhere(tmp_path):
    text = _broken("        - name: KUBIA_THREADS\n          value: \"2\"\n",
                   "        - name: KUBIA_HOSTNAME\n          valueFrom:\n"
                   "            fieldRef:\n              fieldPath: metadata.name\n")
    f = tmp_path / "sts.yaml"
    f.write_text(text)
    e = manifests.settings(str(f))["env"]
    assert e["KUBIA_HOSTNAME"] is None and "KUBIA_THREADS" not in e


@pytest.mark.skipif(not (KUBECTL and manifests.have_pyyaml()),
                    reason="needs both python3-yaml and kubectl")
@pytest.mark.parametrize("name", list(ALL_FILES) + [None])
def test_both_yaml_routes_agree(name):
    source = path(name) if name else None
    assert manifests.load(source, "pyyaml") == manifests.load(source, "kubectl")
