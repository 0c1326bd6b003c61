"""The simulated StatefulSet controller (kubia-sim), not kubia: scaling, claims, rolling
updates with a partition, a rollout that stops at a pod that never gets ready, a
scale-down that waits while a pod is unhealthy, and the scheduler's spreading of the
pods over the nodes. A failure here means kubia-sim broke,
not kubia.
"""

import os
import re
import shutil

from conftest import KUBIA, lines_of


def test_scale_down_and_up_keeps_each_ordinals_data(sim):
    sim.up(3, "pet")
    for i in range(3):
        assert sim.post_pod("kubia-%d" % i, "data of %d" % i).status == 200
    r = sim.cli("scale", 1)
    # highest ordinal first, one at a time
    deleted = [m.group(1) for m in lines_of(r.stdout, r'^pod "(kubia-\d+)" deleted')]
    assert deleted == ["kubia-2", "kubia-1"]
    st = sim.status()
    assert sorted(st["pods"]) == ["kubia-0"]
    assert st["endpoints"] == ["kubia-0"]
    # the claims stay
    assert os.path.isdir(sim.volume(1)) and os.path.isdir(sim.volume(2))
    assert sim.get_pod("kubia-2").status == 404
    r = sim.cli("scale", 3)
    created = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")]
    assert created == ["kubia-1", "kubia-2"]
    for i in range(3):
        r = sim.get_pod("kubia-%d" % i)
        assert r.body == "You've hit kubia-%d\nData stored on this pod: data of %d\n" % (i, i)


def test_claims_are_deleted_only_when_asked(sim):
    sim.up(2, "pet")
    sim.post_pod("kubia-1", "kept")
    r = sim.cli("delete", "pvc", "data-kubia-1", check=False)
    assert r.returncode == 1
    assert "persistentvolumeclaim data-kubia-1 is in use by pod kubia-1" in r.stderr
    sim.cli("scale", 1)
    # down keeps the claims too; a new cluster of the same name gets them back
    sim.cli("down")
    assert os.path.isdir(sim.volume(1))
    sim.up(2, "pet")
    assert sim.get_pod("kubia-1", "/data").body == "kept"
    sim.cli("scale", 1)
    r = sim.cli("delete", "pvc", "data-kubia-1")
    assert 'persistentvolumeclaim "data-kubia-1" deleted' in r.stdout
    assert not os.path.exists(sim.volume(1))
    sim.cli("scale", 2)
    assert sim.get_pod("kubia-1", "/data").body == "No data posted yet"
    r = sim.cli("delete", "pvc", "data-kubia-9", check=False)
    assert r.returncode == 1 and 'persistentvolumeclaims "data-kubia-9" not found' in r.stderr


def test_rolling_update_goes_in_reverse_order_and_keeps_data(sim, tmp_path):
    sim.up(3, "pet")
    for i in range(3):
        sim.post_pod("kubia-%d" % i, "before update %d" % i)
    old = sim.status()["update_revision"]
    v2 = str(tmp_path / "kubia-v2")
    shutil.copy(KUBIA, v2)

    # with a partition, only the ordinals at or above it change
    r = sim.cli("rollout", "--binary", v2, "--mode", "peers", "--partition", 2)
    replaced = [m.group(1) for m in lines_of(r.stdout, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-2"]
    st = sim.status()
    new = st["update_revision"]
    assert new != old and st["current_revision"] == old
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [old, old, new]
    assert os.readlink("/proc/%d/exe" % sim.container_pid("kubia-2")) == v2
    assert os.readlink("/proc/%d/exe" % sim.container_pid("kubia-0")) == os.path.realpath(KUBIA)
    assert sim.get_pod("kubia-1").body == (
        "You've hit kubia-1\nData stored on this pod: before update 1\n")
    data = {"kubia-%d" % i: "before update %d" % i for i in range(3)}
    sim.wait_view("kubia-2", data)
    # a pod below the partition that is deleted comes back at the current revision
    sim.cli("delete", "pod", "kubia-0")
    assert sim.status()["pods"]["kubia-0"]["revision"] == old

    # partition 0: the rest, highest ordinal first, each ready before the next
    r = sim.cli("rollout", "--partition", 0)
    replaced = [m.group(1) for m in lines_of(r.stdout, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-1", "kubia-0"]
    out = r.stdout
    assert out.index("pod/kubia-1 is ready") < out.index("replacing kubia-0")
    st = sim.status()
    assert st["current_revision"] == new
    assert all(p["revision"] == new for p in st["pods"].values())
    for i in range(3):
        assert os.readlink("/proc/%d/exe" % sim.container_pid("kubia-%d" % i)) == v2
        sim.wait_view("kubia-%d" % i, data)


def test_a_pod_that_never_gets_ready_stops_the_rollout_and_down_cleans_up(sim, tmp_path):
    broken = str(tmp_path / "broken")
    with open(broken, "w") as f:
        f.write("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    os.chmod(broken, 0o755)
    sim.up(2, "pet", "--ready-timeout", 2, "--restart-backoff-ms", 200)
    r = sim.cli("rollout", "--binary", broken, check=False)
    assert r.returncode == 1
    assert "kubia-1 to become ready" in r.stderr and "cannot start" in r.stderr
    st = sim.status()
    # kubia-1 crash-loops on the new revision; kubia-0 was not touched
    assert st["pod_status"]["kubia-1"]["restarts"] >= 1
    assert st["pod_status"]["kubia-1"]["last_exit"] == "exit 3"
    assert st["pod_status"]["kubia-1"]["reason"] == "cannot start"
    assert st["pods"]["kubia-0"]["revision"] == st["current_revision"]
    assert sim.get_pod("kubia-0", "/data").body == "No data posted yet"


def test_scale_down_waits_while_a_pod_is_unhealthy(sim):
    sim.up(3, "pet", "--ready-timeout", 2)
    sim.cli("cut", "kubia-0")
    r = sim.cli("scale", 1, check=False)
    assert r.returncode == 1
    assert "does not scale down while any pod is unhealthy" in r.stderr
    assert "kubia-0 not ready" in r.stderr
    assert sorted(sim.status()["pods"]) == ["kubia-0", "kubia-1", "kubia-2"]
    # the node back, the controller goes on where it stopped: spec.replicas is already 1
    r = sim.cli("heal", "kubia-0")
    deleted = [m.group(1) for m in lines_of(r.stdout, r'^pod "(kubia-\d+)" deleted')]
    assert deleted == ["kubia-2", "kubia-1"]
    assert "deleted" not in sim.cli("scale", 1).stdout


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
    r = sim.cli("cordon", "kubia-sim-2")
    assert r.stdout.startswith("node/kubia-sim-2 cordoned\n")
    assert sim.status()["nodes"]["kubia-sim-2"]["unschedulable"]
    assert re.search(r"^kubia-sim-2\s+Ready,SchedulingDisabled\s", sim.cli("nodes").stdout,
                     re.M)
    sim.cli("delete", "pod", "kubia-1")
    assert sim.pod("kubia-1")["node"] == "kubia-sim-3"
    assert re.search(r"^kubia-1\s+1/1\s+Running\s.*\skubia-sim-3\s", sim.cli("status").stdout,
                     re.M)
    # uncordoned, it takes the next pod (it has none)
    sim.cli("uncordon", "kubia-sim-2")
    sim.cli("scale", 5)
    assert sim.pod("kubia-4")["node"] == "kubia-sim-2"
    # every node cordoned (no NODE): a deleted pod is recreated Pending, and why
    r = sim.cli("cordon")
    assert [m.group(1) for m in lines_of(r.stdout, r"^node/(\S+) cordoned$")] == [
        "kubia-sim-1", "kubia-sim-2", "kubia-sim-3"]
    r = sim.cli("delete", "pod", "kubia-4")
    assert "pod/kubia-4 Pending: 0/3 nodes are available: 3 node(s) were unschedulable" \
        in r.stdout
    sim.cli("uncordon")
    assert sim.pod("kubia-4")["node"] == "kubia-sim-2"


def test_one_node_takes_every_pod(sim):
    sim.up(2, "pet", "--nodes", 1)
    st = sim.status()
    assert sorted(st["nodes"]) == ["kubia-sim-1"]
    assert [p["node"] for p in st["pods"].values()] == ["kubia-sim-1"] * 2
