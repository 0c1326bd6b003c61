"""Chapter 10's walk-through, request by request, with the book's texts.

Every expected text below is the contract (the book's own texts); the test fails if
any response changes by one byte.
"""

import os
import re

import pytest

from conftest import BASE, IMAGE, image_available, lines_of

GREETING = "Hey there! This greeting was submitted to kubia-0."


@pytest.mark.parametrize("runtime", ["process", "podman"])
def test_walkthrough(sim, runtime):
    if runtime == "podman" and not image_available():
        pytest.skip("no image %s (the image suite builds it)" % IMAGE)
    sim.runtime = runtime
    # 10.3.2: kubectl create -f kubia-statefulset.yaml: two replicas of the pet app,
    # created one at a time; replicas, mode and everything else come from the file
    r = sim.up(None, None, manifest=os.path.join(BASE, "kubia-statefulset.yaml"))
    assert "(replicas 2, pet mode)" in r.stdout
    created = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")]
    assert created == ["kubia-0", "kubia-1"]
    ready = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) is ready")]
    assert ready == ["kubia-0", "kubia-1"]
    # OrderedReady: kubia-1 is created only after kubia-0 is ready
    out = r.stdout
    assert out.index("pod/kubia-0 is ready") < out.index("pod/kubia-1 created")

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
    before = sim.pod("kubia-0")
    r = sim.cli("delete", "pod", "kubia-0")
    assert 'pod "kubia-0" deleted' in r.stdout
    after = sim.pod("kubia-0")
    assert after["ip"] == before["ip"]
    assert after["netns"] != before["netns"]  # a new pod, not the old one
    r = sim.get_pod("kubia-0")
    assert (r.status, r.body) == (200, "You've hit kubia-0\nData stored on this pod: %s\n"
                                  % GREETING)

    # 10.4: three replicas of the peers app (kubectl apply -f kubia-statefulset-peers.yaml):
    # kubia-2 is created, then kubia-1 and kubia-0 are replaced, highest ordinal first
    r = sim.cli("rollout", "-f", os.path.join(BASE, "kubia-statefulset-peers.yaml"),
                *sim.template_args())
    assert [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")] == \
        ["kubia-2", "kubia-1", "kubia-0"]
    assert sim.status()["replicas"] == 3
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
