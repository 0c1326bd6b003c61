"""Chapter 10's walk-through, request by request, with the book's texts: the book's
files and commands with kubectl, against a cluster brought up empty.

Every expected text below is the contract (the book's own texts); the test fails if
any response changes by one byte.
"""

import os
import re

import pytest

from conftest import BASE, IMAGE, first, image_available

GREETING = "Hey there! This greeting was submitted to kubia-0."


@pytest.mark.parametrize("runtime", ["process", "podman"])
def test_walkthrough(sim, runtime):
    if runtime == "podman" and not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = runtime
    sim.up(None, None, "--empty")
    # 10.3.2: the book's files with kubectl create -f: two replicas of the pet app,
    # created one at a time; replicas, mode and everything else come from the file
    r = sim.kubectl("create", "-f", os.path.join(BASE, "persistent-volumes-gcepd.yaml"),
                    "-f", os.path.join(BASE, "kubia-service-headless.yaml"),
                    "-f", os.path.join(BASE, "kubia-service-public.yaml"))
    assert r.stdout.splitlines() == [
        "persistentvolume/pv-a created", "persistentvolume/pv-b created",
        "persistentvolume/pv-c created", "service/kubia created",
        "service/kubia-public created"]
    watch = sim.watch()
    r = sim.kubectl("create", "-f", os.path.join(BASE, "kubia-statefulset.yaml"))
    assert r.stdout == "statefulset.apps/kubia created\n"
    sim.wait_pods(2)
    events = watch.events()
    assert [e[1] for e in events if e[0] == "ADDED"] == ["kubia-0", "kubia-1"], events
    # OrderedReady: kubia-1 is created only after kubia-0 is ready
    assert first(events, ("MODIFIED", "kubia-0", "True")) < first(events, ("ADDED",
                                                                          "kubia-1"))
    env = {e["name"]: e.get("value") for e in sim.get("po", "kubia-0")["spec"][
        "containers"][0]["env"]}
    assert env["KUBIA_MODE"] == "pet"

    # 10.3.3: through the API server's pod proxy
    r = sim.get_pod("kubia-0")
    assert (r.status, r.body) == (200, "You've hit kubia-0\nData stored on this pod: "
                                       "No data posted yet\n")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = sim.post_pod("kubia-0", GREETING)
    assert (r.status, r.body) == (200, "Data stored on pod kubia-0\n")
    r = sim.get_pod("kubia-0")
    assert (r.status, r.body) == (200, "You've hit kubia-0\nData stored on this pod: %s\n"
                                  % GREETING)
    r = sim.get_pod("kubia-1")
    assert (r.status, r.body) == (200, "You've hit kubia-1\nData stored on this pod: "
                                       "No data posted yet\n")

    # deleting a pod: it comes back with the same name, address and data
    before = sim.get("po", "kubia-0")
    r = sim.delete_pod("kubia-0")
    assert r.stdout == 'pod "kubia-0" deleted\n'
    after = sim.get("po", "kubia-0")
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # a new pod
    r = sim.get_pod("kubia-0")
    assert (r.status, r.body) == (200, "You've hit kubia-0\nData stored on this pod: %s\n"
                                  % GREETING)

    # 10.4: three replicas of the peers app (kubectl apply -f kubia-statefulset-peers.yaml):
    # kubia-2 is created, then kubia-1 and kubia-0 are replaced, highest ordinal first
    watch = sim.watch()
    r = sim.kubectl("apply", "-f", os.path.join(BASE, "kubia-statefulset-peers.yaml"))
    assert "statefulset.apps/kubia configured" in r.stdout
    r = sim.rollout_status()
    assert r.stdout.splitlines()[-1].startswith(
        "statefulset rolling update complete 3 pods at revision kubia-"), r.stdout
    sim.wait_pods(3)
    events = watch.events()
    assert [e[1] for e in events if e[0] == "ADDED"] == ["kubia-2", "kubia-1", "kubia-0"], \
        events
    assert first(events, ("MODIFIED", "kubia-2", "True")) < first(events, ("DELETED",
                                                                          "kubia-1"))
    assert sim.get("statefulset", "kubia")["spec"]["replicas"] == 3
    posts = ["The sun is shining", "The weather is sweet", "It's raining"]
    stored = {}
    for body in posts:
        r = sim.post_svc(body)
        m = re.fullmatch(r"Data stored on pod (kubia-[0-2])\n", r.body)
        assert r.status == 200 and m, r
        stored[m.group(1)] = body
    # kubia-public balances round-robin over the ready pods
    assert sorted(stored) == ["kubia-0", "kubia-1", "kubia-2"]

    want = {p: stored[p] for p in ("kubia-0", "kubia-1", "kubia-2")}
    for pod in ("kubia-0", "kubia-1", "kubia-2"):
        sim.wait_view(pod, want)
    r = sim.get_svc()
    m = re.match(r"You've hit (kubia-[0-2])\n", r.body)
    assert r.status == 200 and m, r
    assert r.body == sim.view(m.group(1), want)
    # GET /data through the proxy: the data verbatim
    r = sim.get_pod("kubia-1", "/data")
    assert (r.status, r.body) == (200, stored["kubia-1"])
