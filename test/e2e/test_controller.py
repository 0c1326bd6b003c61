"""The StatefulSet controller of the simulation: scaling, claims, rolling updates and
the at-most-one guarantee (section 10.5)."""

import os
import shutil

from conftest import KUBIA, lines_of, wait_until


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


def test_a_second_kubia_on_a_live_pods_volume_is_refused(sim):
    sim.up(1, "pet")
    sim.post_pod("kubia-0", "mine")
    r = sim.cli("exec", "kubia-0", "--", KUBIA, "--port", "8081", check=False)
    assert r.returncode == 1
    assert "locked by another process" in r.stdout + r.stderr
    assert sim.get_pod("kubia-0", "/data").body == "mine"


def test_force_deleted_pod_blocks_its_replacement_until_it_is_gone(sim):
    # section 10.5: the node of kubia-0 fails; the pod is force-deleted; the old
    # process still runs there, holding the volume.
    sim.up(2, "pet", "--restart-backoff-ms", 300)
    sim.post_pod("kubia-0", "precious")
    old_pid = sim.container_pid("kubia-0")
    r = sim.cli("cut", "kubia-0")
    assert "cut off the network" in r.stdout
    assert sim.status()["pods"]["kubia-0"].get("cut")
    r = sim.cli("delete", "pod", "kubia-0", "--force")
    assert 'pod "kubia-0" force deleted' in r.stdout
    assert "CrashLoopBackOff" in r.stdout and "at most one kubia" in r.stdout
    # the old process is still alive; the replacement keeps being refused
    os.kill(old_pid, 0)
    st = sim.status()
    assert st["orphans"][0]["name"] == "kubia-0"
    wait_until(lambda: sim.status()["pod_status"]["kubia-0"]["restarts"] >= 2, 10,
               "a second refused start")
    assert "kubia-0" not in sim.status()["endpoints"]
    r = sim.get_pod("kubia-0")
    assert r.status == 502  # the replacement has the address but no process behind it
    # the node comes back: the old pod is stopped there, the replacement starts
    r = sim.cli("heal", "kubia-0")
    assert "the force-deleted kubia-0 is stopped" in r.stdout
    wait_until(lambda: not os.path.exists("/proc/%d" % old_pid), 5, "the old process to end")
    assert sim.get_pod("kubia-0").body == (
        "You've hit kubia-0\nData stored on this pod: precious\n")
    assert sim.status()["endpoints"] == ["kubia-0", "kubia-1"]
