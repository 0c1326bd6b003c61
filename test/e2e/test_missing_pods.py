"""Missing pods in the simulated cluster: a pod held not ready in the middle of the
StatefulSet leaves cluster DNS, and the other pods show it as its Error line instead of
a shorter list; an expected replica count shows the pods that are not there yet."""

import json

from conftest import wait_until

MISSING = "Error: not ready (not in DNS)"


def test_a_pod_not_ready_in_the_middle_is_shown_missing(sim):
    sim.up(3)
    data = sim.post_each(3)
    book = sim.wait_view("kubia-0", data).body
    # kubia-1's volume turns read-only: its /readyz fails, it leaves the endpoints
    sim.exec("kubia-1", "mount", "-o", "remount,bind,ro", "/var/data")
    sim.cli("probe")
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-2"], 5,
               "kubia-1 to leave the endpoints", 0.1)
    gap = dict(data, **{"kubia-1": MISSING})
    sim.wait_view("kubia-0", gap)
    sim.wait_view("kubia-2", gap)
    # kubia-1 itself, not in DNS, still shows its own data among the others
    sim.wait_view("kubia-1", data)

    # the JSON view through the API server's proxy says the same, line by line
    r = sim.get_pod("kubia-2", "/?format=json")
    assert r.status == 200 and r.headers.get("Content-Type") == "application/json", r
    doc = json.loads(r.body)
    assert [p["name"] for p in doc["peers"]] == [sim.fqdn("kubia-%d" % i) for i in range(3)]
    assert [p["missing"] for p in doc["peers"]] == [False, True, False]
    assert doc["peers"][1]["error"] == "not ready (not in DNS)"
    assert doc["peers"][0]["data"] == data["kubia-0"] and doc["peers"][2]["self"]
    assert [rec["target"] for rec in doc["srv"]["records"]] == [
        sim.fqdn("kubia-0"), sim.fqdn("kubia-2")]

    # ready again: the book's view, byte for byte
    sim.exec("kubia-1", "mount", "-o", "remount,bind,rw", "/var/data")
    sim.cli("probe")
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1", "kubia-2"], 10,
               "kubia-1 back in the endpoints", 0.1)
    assert sim.wait_view("kubia-0", data).body == book


def test_expected_replicas_show_the_pods_not_there_yet(sim):
    """Two pods running where the StatefulSet is expected to have three
    (KUBIA_REPLICAS=3): the third shows as missing at the tail."""
    sim.up(2, "peers", "--env", "KUBIA_REPLICAS=3")
    data = sim.post_each(2)
    sim.wait_view("kubia-1", dict(data, **{"kubia-2": MISSING}))
