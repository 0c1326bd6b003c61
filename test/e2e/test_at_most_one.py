"""kubia's side of the StatefulSet's at-most-one guarantee (section 10.5): a second kubia
on a pod's volume is refused, and so is a force-deleted pod's replacement while the old
process still runs on its cut-off node. (The simulated controller itself is tested in
test_sim_controller.py.)"""

import os

from conftest import KUBIA, wait_until


def test_a_second_kubia_on_a_live_pods_volume_is_refused(sim):
    sim.up(1, "pet")
    sim.post_pod("kubia-0", "mine")
    r = sim.exec("kubia-0", KUBIA, "--port", "8081", check=False)
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
    r = sim.kubectl("delete", "po", "kubia-0", "--force", "--grace-period", "0")
    assert 'pod "kubia-0" force deleted' in r.stdout
    # the old process is still alive; the replacement keeps being refused
    os.kill(old_pid, 0)
    st = sim.status()
    assert st["orphans"][0]["name"] == "kubia-0"

    wait_until(lambda: sim.restarts("kubia-0") >= 2, 20, "a second refused start")
    p = sim.pod_obj("kubia-0")
    assert "at most one kubia" in p["status"]["containerStatuses"][0]["lastState"][
        "terminated"]["message"], p["status"]
    assert "at most one kubia" in sim.kubectl("logs", "kubia-0").stdout
    assert "kubia-0" not in sim.endpoints()
    r = sim.get_pod("kubia-0")
    assert r.status == 502  # the replacement has the address but no process behind it
    # the node comes back: the old pod is stopped there, the replacement starts
    r = sim.cli("heal", "kubia-0")
    assert "the force-deleted kubia-0 is stopped" in r.stdout
    wait_until(lambda: not os.path.exists("/proc/%d" % old_pid), 5, "the old process to end")
    assert sim.get_pod("kubia-0").body == (
        "You've hit kubia-0\nData stored on this pod: precious\n")
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1"], 10, "both endpoints")
