"""What the manifest tests (test_manifests.py, test_overlays.py) share: where the files
under the book's names are, every kustomization under k8s/, and how to pick objects out
of what they render. Not a test file itself.
"""

import copy
import os
import re

import pytest

from kubiasim import manifests

TOP = manifests.TOP
K8S = manifests.K8S_DIR
# The book's file names, so the chapter's `kubectl create -f` commands work as printed,
# and the PodDisruptionBudget that is not in the book; where each is under k8s/.
BOOK_FILES = {
    "persistent-volumes-hostpath.yaml": "overlays/hostpath",
    "persistent-volumes-gcepd.yaml": "base",
    "kubia-service-headless.yaml": "base",
    "kubia-service-public.yaml": "base",
    "kubia-statefulset.yaml": "base",
    "kubia-statefulset-peers.yaml": "base",
}
ALL_FILES = dict(BOOK_FILES, **{"kubia-pdb.yaml": "base"})
KUBIA_PORT = 8080
KUBECTL = manifests.kubectl()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def path(name):
    """A file under its book's name, where it is in k8s/."""
    return os.path.join(K8S, ALL_FILES[name], name)


def kustomizations():
    """Every directory under k8s/ with a kustomization.yaml, relative to k8s/ ("." is
    k8s/ itself)."""
    found = []
    for d, _dirs, files in os.walk(K8S):
        if "kustomization.yaml" in files:
            found.append(os.path.relpath(d, K8S))
    return sorted(found)


OVERLAYS = sorted(d.split("/", 1)[1] for d in kustomizations() if d.startswith("overlays/"))


def load_book():
    """{book's file name: its objects}."""
    return {name: manifests.load(path(name)) for name in ALL_FILES}


def load_every():
    """{where under k8s/: the objects kubectl kustomize renders} for every kustomization."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    return {where: manifests.load(os.path.join(K8S, where)) for where in kustomizations()}


def statefulset(objects):
    [sts] = manifests.find(objects, "StatefulSet", "kubia")
    return sts


def container(sts):
    [c] = sts["spec"]["template"]["spec"]["containers"]
    return c


def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def meson_version():
    with open(os.path.join(TOP, "meson.build"), encoding="utf-8") as f:
        return re.search(r"^\s*version: '([^']+)'", f.read(), re.M).group(1)


def by_kind(objects):
    return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))


def without(objects, change):
    """A deep copy of objects, sorted by kind and name, with change(statefulset) applied
    to the StatefulSet."""
    out = copy.deepcopy(objects)
    change(statefulset(out))
    return by_kind(out)
