"""The simulated StatefulSet controller (kubia-sim), not kubia: scaling, claims, rolling
updates with a partition, a rollout that stops at a pod that never gets ready, a
scale-down that waits while a pod is unhealthy, and the scheduler's spreading of the
pods over the nodes. A failure here means kubia-sim broke,
not kubia.
"""

import os
import re

from conftest import first, lines_of, wait_until
from test_sim_manifest import environ


def mode(sim, pod):
    """KUBIA_MODE of the pod's kubia, as its process has it."""
    return environ(sim.container_pid(pod))["KUBIA_MODE"]


def test_scale_down_and_up_keeps_each_ordinals_data(sim):
    sim.up(3, "pet")
    for i in range(3):
        assert sim.post_pod("kubia-%d" % i, "data of %d" % i).status == 200
    watch = sim.watch()
    sim.scale(1)
    # highest ordinal first, one at a time
    events = watch.events()
    assert [e[1] for e in events if e[0] == "DELETED"] == ["kubia-2", "kubia-1"], events
    assert sorted(sim.status()["pods"]) == ["kubia-0"]
    assert sim.endpoints() == ["kubia-0"]
    # the claims stay
    assert os.path.isdir(sim.volume(1)) and os.path.isdir(sim.volume(2))
    assert sim.get_pod("kubia-2").status == 404
    watch = sim.watch()
    sim.scale(3)
    events = watch.events()
    assert [e[1] for e in events if e[0] == "ADDED"] == ["kubia-1", "kubia-2"], events
    for i in range(3):
        r = sim.get_pod("kubia-%d" % i)
        assert r.body == "You've hit kubia-%d\nData stored on this pod: data of %d\n" % (i, i)


def test_claims_are_deleted_only_when_asked(sim):
    sim.up(2, "pet")
    sim.post_pod("kubia-1", "kept")
    r = sim.kubectl("delete", "pvc", "data-kubia-1", check=False)
    assert r.returncode == 1
    assert "persistentvolumeclaim data-kubia-1 is in use by pod kubia-1" in r.stderr
    sim.scale(1)
    # down keeps the claims too; a new cluster of the same name gets them back
    sim.cli("down")
    assert os.path.isdir(sim.volume(1))
    sim.up(2, "pet")
    assert sim.get_pod("kubia-1", "/data").body == "kept"
    sim.scale(1)
    r = sim.kubectl("delete", "pvc", "data-kubia-1")
    assert r.stdout == 'persistentvolumeclaim "data-kubia-1" deleted\n'
    assert not os.path.exists(sim.volume(1))
    sim.scale(2)
    assert sim.get_pod("kubia-1", "/data").body == "No data posted yet"
    r = sim.kubectl("delete", "pvc", "data-kubia-9", check=False)
    assert r.returncode == 1 and 'persistentvolumeclaims "data-kubia-9" not found' in r.stderr


def test_rolling_update_goes_in_reverse_order_and_keeps_data(sim, tmp_path):
    sim.up(3, "pet")
    for i in range(3):
        sim.post_pod("kubia-%d" % i, "before update %d" % i)
    old = sim.status()["update_revision"]

    # with a partition, only the ordinals at or above it change
    log = len(sim.controller_log())
    sim.patch({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}},
                        "template": {"spec": {"containers": [
                            {"name": "kubia", "env": [{"name": "KUBIA_MODE",
                                                       "value": "peers"}]}]}}}})
    sim.rollout_status()
    out = sim.controller_log()[log:]
    replaced = [m.group(1) for m in lines_of(out, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-2"], out
    st = sim.status()
    new = st["update_revision"]
    assert new != old and st["current_revision"] == old
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [old, old, new]
    assert mode(sim, "kubia-2") == "peers" and mode(sim, "kubia-0") == "pet"
    assert sim.get_pod("kubia-1").body == (
        "You've hit kubia-1\nData stored on this pod: before update 1\n")
    data = {"kubia-%d" % i: "before update %d" % i for i in range(3)}
    sim.wait_view("kubia-2", data)
    # a pod below the partition that is deleted comes back at the current revision
    sim.delete_pod("kubia-0")
    assert sim.status()["pods"]["kubia-0"]["revision"] == old

    # partition 0: the rest, highest ordinal first, each ready before the next
    log = len(sim.controller_log())
    watch = sim.watch()
    sim.set_partition(0)
    sim.rollout_status()
    out = sim.controller_log()[log:]
    replaced = [m.group(1) for m in lines_of(out, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-1", "kubia-0"], out
    events = watch.events()
    ready = first(events, ("MODIFIED", "kubia-1", "True"),
                  first(events, ("ADDED", "kubia-1")))
    assert ready < first(events, ("DELETED", "kubia-0")), events
    st = wait_until(lambda: sim.status()["current_revision"] == new and sim.status(), 10,
                    "the update revision to be current")
    assert all(p["revision"] == new for p in st["pods"].values())
    for i in range(3):
        assert mode(sim, "kubia-%d" % i) == "peers"
        sim.wait_view("kubia-%d" % i, data)


def test_a_pod_that_never_gets_ready_stops_the_rollout_and_down_cleans_up(sim, tmp_path):
    sim.up(2, "pet", "--ready-timeout", 2, "--restart-backoff-ms", 200)
    log = len(sim.controller_log())
    # a template whose kubia cannot start: an option it does not know
    sim.patch({"spec": {"template": {"spec": {"containers": [
        {"name": "kubia", "args": ["--no-such-option"]}]}}}})
    r = sim.rollout_status(timeout="8s", check=False)
    assert r.returncode == 1 and "timed out" in r.stderr, (r.stdout, r.stderr)
    cannot = 'kubia: unknown option "--no-such-option" (see --help)'
    wait_until(lambda: "kubia-1 to become ready" in sim.controller_log()[log:], 10,
               "the controller to give up on kubia-1")
    assert cannot in sim.controller_log()[log:]
    st = sim.status()
    # kubia-1 crash-loops on the new revision; kubia-0 was not touched
    assert st["pod_status"]["kubia-1"]["restarts"] >= 1
    assert st["pod_status"]["kubia-1"]["last_exit"] == "exit 2"
    assert st["pod_status"]["kubia-1"]["reason"] == cannot
    assert sim.get("po", "kubia-1")["status"]["containerStatuses"][0]["restartCount"] >= 1
    assert st["pods"]["kubia-0"]["revision"] == st["current_revision"]
    assert sim.get_pod("kubia-0", "/data").body == "No data posted yet"


def test_scale_down_waits_while_a_pod_is_unhealthy(sim):
    sim.up(3, "pet", "--ready-timeout", 2)
    sim.cli("cut", "kubia-0")
    log = len(sim.controller_log())
    sim.kubectl("scale", "statefulset", "kubia", "--replicas", 1)
    wait_until(lambda: "does not scale down while any pod is unhealthy" in
               sim.controller_log()[log:], 15, "the controller to halt the scale-down")
    assert "kubia-0 not ready" in sim.controller_log()[log:]
    assert sorted(sim.status()["pods"]) == ["kubia-0", "kubia-1", "kubia-2"]
    # the node back, the controller goes on where it stopped: spec.replicas is already 1
    watch = sim.watch()
    sim.cli("heal", "kubia-0")
    sim.wait_pods(1)
    events = watch.events()
    assert [e[1] for e in events if e[0] == "DELETED"] == ["kubia-2", "kubia-1"], events


def test_the_scheduler_spreads_the_pods_and_a_cordoned_node_takes_none(sim):
    sim.up(4, "pet", "--nodes", 3)
    st = sim.status()
    on = {p["name"]: p["node"] for p in st["pods"].values()}
    # fewest pods first, the lower-numbered node on a tie
    assert on == {"kubia-0": "kubia-sim-1", "kubia-1": "kubia-sim-2",
                  "kubia-2": "kubia-sim-3", "kubia-3": "kubia-sim-1"}
    for i, name in enumerate(("kubia-sim-1", "kubia-sim-2", "kubia-sim-3")):
        node = st["nodes"][name]
        assert sorted(node) == ["addr", "created", "cut", "labels", "name", "ready",
                                "unschedulable"]
        assert node["name"] == name and node["addr"] == "%s.%d" % (sim.base, 2 + i)
        assert node["labels"]["kubernetes.io/hostname"] == name
        assert node["labels"]["kubernetes.io/os"] == "linux"
        assert node["ready"] and not node["cut"] and not node["unschedulable"]
    assert sorted(st["nodes"]) == ["kubia-sim-1", "kubia-sim-2", "kubia-sim-3"]
    # kubia-1's node cordoned: its replacement goes to the node with fewer pods
    r = sim.kubectl("cordon", "kubia-sim-2")
    assert r.stdout == "node/kubia-sim-2 cordoned\n"
    assert sim.status()["nodes"]["kubia-sim-2"]["unschedulable"]
    assert re.search(r"^kubia-sim-2\s+Ready,SchedulingDisabled\s",
                     sim.kubectl("get", "nodes").stdout, re.M)
    sim.delete_pod("kubia-1")
    assert sim.pod("kubia-1")["node"] == "kubia-sim-3"
    assert re.search(r"^kubia-1\s+1/1\s+Running\s.*\skubia-sim-3\s",
                     sim.kubectl("get", "po", "-o", "wide").stdout, re.M)
    # uncordoned, it takes the next pod (it has none)
    sim.kubectl("uncordon", "kubia-sim-2")
    sim.scale(5)
    assert sim.pod("kubia-4")["node"] == "kubia-sim-2"
    # every node cordoned: a deleted pod is recreated Pending, and why
    nodes = ("kubia-sim-1", "kubia-sim-2", "kubia-sim-3")
    r = sim.kubectl("cordon", *nodes)
    assert [m.group(1) for m in lines_of(r.stdout, r"^node/(\S+) cordoned$")] == list(nodes)
    sim.kubectl("delete", "po", "kubia-4")

    def pending():
        p = [o for o in sim.get("po")["items"] if o["metadata"]["name"] == "kubia-4"]
        return p and p[0]["status"]["phase"] == "Pending" and p[0]
    p = wait_until(pending, 10, "kubia-4 Pending")
    assert [c["message"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled"] \
        == ["0/3 nodes are available: 3 node(s) were unschedulable"], p["status"]
    # one node uncordoned: the Pending pod goes there
    sim.kubectl("uncordon", "kubia-sim-2")
    sim.wait_pods(5)
    assert sim.pod("kubia-4")["node"] == "kubia-sim-2"
    sim.kubectl("uncordon", "kubia-sim-1", "kubia-sim-3")


def test_one_node_takes_every_pod(sim):
    sim.up(2, "pet", "--nodes", 1)
    st = sim.status()
    assert sorted(st["nodes"]) == ["kubia-sim-1"]
    assert [p["node"] for p in st["pods"].values()] == ["kubia-sim-1"] * 2
