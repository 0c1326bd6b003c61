"""Kubernetes' StatefulSet end-to-end scenarios (test/e2e/apps/statefulset.go, "Basic
StatefulSet functionality"), run against kubia-sim: each test is named after the
upstream one and asserts what it asserts, with kubia pods for the web server pods,
`kubia-sim rollout` for a template update (a copy of the kubia binary for a new
image) and a read-only volume for a broken readiness probe (ststest.py). The coverage
table is in README.md beside this file. A failure here means kubia-sim broke its
StatefulSet contract.
"""

import os
import re
import shutil

from conftest import KUBIA, lines_of, wait_until
from ststest import (Background, PERIOD_S, names, pid_of, revisions, set_ready,
                     state, statefulset, stays, up, wait_pod_ready, wait_ready_count)


def new_image(tmp_path):
    """A different binary: the update's "image"."""
    v2 = str(tmp_path / "kubia-v2")
    shutil.copy(KUBIA, v2)
    return v2


def exe(sim, pod):
    return os.readlink("/proc/%d/exe" % pid_of(sim, pod))


def test_should_provide_basic_identity(sim, tmp_path):
    up(sim, tmp_path, statefulset(3, podManagementPolicy="Parallel"))
    for pod in names(sim):
        # the mounted data directory is usable, the host name is the pod's name
        assert sim.post_pod(pod, "data of %s" % pod).status == 200
        r = sim.cli("exec", pod, "--", "hostname")
        assert r.stdout.strip() == pod
        sim.cli("exec", pod, "--", "sh", "-c",
                "hostname > /var/data/hostname && ln -s /var/data/hostname "
                "/var/data/hostname-symlink")
    # the governing Service names every pod
    assert sim.status()["endpoints"] == ["kubia-0", "kubia-1", "kubia-2"]
    # restart: down to no pods and back
    sim.cli("scale", 0)
    assert names(sim) == []
    sim.cli("scale", 3)
    for pod in names(sim):
        for f in ("hostname", "hostname-symlink"):
            r = sim.cli("exec", pod, "--", "sh", "-c",
                        '[ "$(cat /var/data/%s)" = "$(hostname)" ]' % f, check=False)
            assert r.returncode == 0, (pod, f)
        assert sim.get_pod(pod, "/data").body == "data of %s" % pod


def test_should_not_deadlock_when_a_pods_predecessor_fails(sim, tmp_path):
    up(sim, tmp_path, statefulset(2))
    set_ready(pid_of(sim, "kubia-1"), False)
    wait_pod_ready(sim, "kubia-1", False)
    # the healthy kubia-0 is deleted: it comes back although kubia-1 is unhealthy
    r = sim.cli("delete", "pod", "kubia-0")
    assert "pod/kubia-0 created" in r.stdout
    wait_pod_ready(sim, "kubia-0", True)
    assert not sim.status()["pod_status"]["kubia-1"]["ready"]
    set_ready(pid_of(sim, "kubia-1"), True)
    wait_ready_count(sim, 2)


def rollback_test(sim, tmp_path, v2, keep_data=False):
    """The upstream rollbackTest; returns the data posted to each pod (keep_data)."""
    up(sim, tmp_path, statefulset(3))
    data = {}
    for pod in names(sim) if keep_data else []:
        data[pod] = "kept by %s" % pod
        assert sim.post_pod(pod, data[pod]).status == 200
    st = sim.status()
    current = st["current_revision"]
    assert st["update_revision"] == current
    assert set(revisions(sim).values()) == {current}
    pid1 = pid_of(sim, "kubia-1")
    set_ready(pid1, False)
    wait_pod_ready(sim, "kubia-1", False)

    # the update: a new revision, and no pod replaced while kubia-1 is unhealthy
    run = Background(sim, "rollout", "--binary", v2)
    wait_until(lambda: state(sim)["update_revision"] != current, 10, "the update revision")
    update = state(sim)["update_revision"]
    assert state(sim)["current_revision"] == current
    stays(lambda: set(revisions(sim).values()) == {current}, 2 * PERIOD_S,
          "a pod was replaced while kubia-1 was unhealthy")
    set_ready(pid1, True)
    _, out, _ = run.finish()
    replaced = [m.group(1) for m in lines_of(out, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-2", "kubia-1", "kubia-0"]
    st = sim.status()
    assert st["current_revision"] == update
    for pod in names(sim):
        assert st["pods"][pod]["revision"] == update
        assert exe(sim, pod) == v2

    # the roll-back: the old template again is the old revision
    pid1 = pid_of(sim, "kubia-1")
    set_ready(pid1, False)
    wait_pod_ready(sim, "kubia-1", False)
    run = Background(sim, "rollout", "--binary", KUBIA)
    wait_until(lambda: state(sim)["update_revision"] != update, 10, "the roll-back")
    assert state(sim)["update_revision"] == current
    assert state(sim)["current_revision"] == update
    set_ready(pid1, True)
    run.finish()
    st = sim.status()
    assert st["current_revision"] == current
    for pod in names(sim):
        assert st["pods"][pod]["revision"] == current
        assert exe(sim, pod) == os.path.realpath(KUBIA)
    return data


def test_should_perform_rolling_updates_and_roll_backs_of_template_modifications_with_pvcs(
        sim, tmp_path):
    # with claims: the data on them outlives the update and the roll-back
    data = rollback_test(sim, tmp_path, new_image(tmp_path), keep_data=True)
    for pod, body in data.items():
        assert sim.get_pod(pod, "/data").body == body


def test_should_perform_rolling_updates_and_roll_backs_of_template_modifications(
        sim, tmp_path):
    rollback_test(sim, tmp_path, new_image(tmp_path))


def check_partition(sim, partition, current, update, v2):
    st = sim.status()
    for o in range(3):
        pod = "kubia-%d" % o
        want = current if o < partition else update
        assert st["pods"][pod]["revision"] == want, (pod, partition)
        assert (exe(sim, pod) == v2) == (o >= partition), (pod, partition)


def test_should_perform_canary_updates_and_phased_rolling_updates_of_template_modifications(
        sim, tmp_path):
    v2 = new_image(tmp_path)
    sts = statefulset(3, updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"partition": 3}})
    up(sim, tmp_path, sts)
    st = sim.status()
    current = st["current_revision"]
    assert st["update_revision"] == current and st["partition"] == 3
    # a partition above the replicas: a new revision, and no pod updated
    sim.cli("rollout", "--binary", v2)
    st = sim.status()
    update = st["update_revision"]
    assert update != current and st["current_revision"] == current
    check_partition(sim, 3, current, update, v2)
    # the canary: partition 2
    sim.cli("rollout", "--partition", 2)
    check_partition(sim, 2, current, update, v2)
    # deleted pods come back at their side of the partition
    sim.cli("delete", "pod", "kubia-0")
    sim.cli("delete", "pod", "kubia-2")
    wait_ready_count(sim, 3)
    check_partition(sim, 2, current, update, v2)
    # the phased rolling update, one ordinal at a time
    for partition in (1, 0):
        sim.cli("rollout", "--partition", partition)
        check_partition(sim, partition, current, update, v2)
    assert sim.status()["current_revision"] == update


def deleting_pod_for_rolling_update_partition_test(sim, tmp_path, wrapper):
    """Partition 1; kubia-0 held in its deletion (its container takes the grace period
    to stop: the upstream finalizer); the other pods updated; kubia-0 deleted, back at
    the current revision."""
    sts = statefulset(3, updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"partition": 1}})
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3
    up(sim, tmp_path, sts, "--binary", wrapper)
    st = sim.status()
    current = st["current_revision"]
    assert st["update_revision"] == current
    v2 = new_image(tmp_path)
    sim.cli("rollout", "--binary", v2)
    st = sim.status()
    update = st["update_revision"]
    assert update != current
    assert st["status"]["updatedReplicas"] == 2 and st["status"]["readyReplicas"] == 3
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [current, update,
                                                                          update]
    # kubia-0 is deleted; while it terminates, two replicas are ready
    run = Background(sim, "delete", "pod", "kubia-0")
    wait_until(lambda: state(sim)["pods"].get("kubia-0", {}).get("terminating"), 10,
               "kubia-0 to terminate")
    assert state(sim)["endpoints"] == ["kubia-1", "kubia-2"]
    _, out, _ = run.finish()
    assert "pod/kubia-0 created" in out
    wait_ready_count(sim, 3)
    st = sim.status()
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [current, update,
                                                                          update]
    assert st["templates"][current]["binary"] == wrapper
    return st


def test_should_perform_canary_updates_and_phased_rolling_updates_of_template_modifications_for_partiton1_and_delete_pod_0_without_failing_container(  # noqa: E501
        sim, tmp_path):
    deleting_pod_for_rolling_update_partition_test(sim, tmp_path, KUBIA)


def test_should_perform_canary_updates_and_phased_rolling_updates_of_template_modifications_for_partiton1_and_delete_pod_0_with_failing_container(  # noqa: E501
        sim, tmp_path):
    # kubia-0's container exits with status 1 on SIGTERM, after a second
    wrapper = str(tmp_path / "failing")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                "case $(hostname) in kubia-0) trap 'sleep 1; kill $k; exit 1' TERM;; "
                "*) trap 'kill $k; wait $k; exit 0' TERM;; esac\n"
                "%s \"$@\" & k=$!\nwait $k\n" % KUBIA)
    os.chmod(wrapper, 0o755)
    st = deleting_pod_for_rolling_update_partition_test(sim, tmp_path, wrapper)
    assert st["pod_status"]["kubia-0"]["restarts"] == 0


def test_should_implement_legacy_replacement_when_the_update_strategy_is_ondelete(
        sim, tmp_path):
    v2 = new_image(tmp_path)
    up(sim, tmp_path, statefulset(3, updateStrategy={"type": "OnDelete"}))
    current = sim.status()["current_revision"]
    for i in range(3):
        sim.cli("delete", "pod", "kubia-%d" % i)
    wait_ready_count(sim, 3)
    assert set(revisions(sim).values()) == {current}
    r = sim.cli("rollout", "--binary", v2)
    assert "rolling update: replacing" not in r.stdout
    st = sim.status()
    update = st["update_revision"]
    assert update != current and set(revisions(sim).values()) == {current}
    for i in range(3):
        sim.cli("delete", "pod", "kubia-%d" % i)
    wait_ready_count(sim, 3)
    assert set(revisions(sim).values()) == {update}
    for pod in names(sim):
        assert exe(sim, pod) == v2


def test_scaling_should_happen_in_predictable_order_and_halt_if_any_stateful_pod_is_unhealthy(
        sim, tmp_path):
    up(sim, tmp_path, statefulset(1), "--ready-timeout", 3)
    pid0 = pid_of(sim, "kubia-0")
    set_ready(pid0, False)
    wait_ready_count(sim, 0)
    # scale-up halts: no pod is created while kubia-0 is unhealthy
    r = sim.cli("scale", 3, check=False)
    assert r.returncode == 1 and "kubia-0 is not ready" in r.stderr, r.stderr
    assert names(sim) == ["kubia-0"]
    set_ready(pid0, True)
    r = sim.cli("scale", 3)
    created = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")]
    assert created == ["kubia-1", "kubia-2"]
    out = r.stdout
    assert out.index("pod/kubia-1 is ready") < out.index("pod/kubia-2 created")
    wait_ready_count(sim, 3)
    # scale-down halts while pods are unhealthy
    pids = {p: pid_of(sim, p) for p in names(sim)}
    for pid in pids.values():
        set_ready(pid, False)
    wait_ready_count(sim, 0)
    r = sim.cli("scale", 0, check=False)
    assert r.returncode == 1 and "does not scale down while any pod is unhealthy" in r.stderr
    assert names(sim) == ["kubia-0", "kubia-1", "kubia-2"]
    for pid in pids.values():
        set_ready(pid, True)
    r = sim.cli("scale", 0)
    deleted = [m.group(1) for m in lines_of(r.stdout, r'^pod "(kubia-\d+)" deleted')]
    assert deleted == ["kubia-2", "kubia-1", "kubia-0"]


def test_burst_scaling_should_run_to_completion_even_with_unhealthy_pods(sim, tmp_path):
    up(sim, tmp_path, statefulset(1, podManagementPolicy="Parallel"))
    set_ready(pid_of(sim, "kubia-0"), False)
    wait_ready_count(sim, 0)
    # scale-up does not halt
    r = sim.cli("scale", 3)
    assert names(sim) == ["kubia-0", "kubia-1", "kubia-2"]
    assert not re.search(r"waiting for kubia-0", r.stdout)
    set_ready(pid_of(sim, "kubia-0"), True)
    wait_ready_count(sim, 3)
    # scale-down does not halt either
    for p in names(sim):
        set_ready(pid_of(sim, p), False)
    wait_ready_count(sim, 0)
    sim.cli("scale", 0)
    assert names(sim) == []
    assert sim.status()["status"]["replicas"] == 0
