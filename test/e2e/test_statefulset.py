"""Kubernetes' StatefulSet end-to-end scenarios (test/e2e/apps/statefulset.go, "Basic
StatefulSet functionality"), run against kubia-sim: each test is named after the
upstream one and asserts what it asserts, with kubia pods for the web server pods,
kubectl patch for a template update (an environment variable that the pods' processes
show, for a new image), kubectl rollout undo for the roll-back, and a read-only volume
for a broken readiness probe (ststest.py). The coverage
table is in README.md beside this file. A failure here means kubia-sim broke its
StatefulSet contract.
"""

import os

from conftest import KUBIA, first, lines_of, wait_until
from ststest import (Background, PERIOD_S, names, pid_of, revisions, set_ready,
                     state, statefulset, stays, up, wait_pod_ready, wait_ready_count)
from test_sim_manifest import environ

# the update's "image": a template change that the pods' processes show
TAG, V2 = "KUBIA_IMAGE_TAG", "v2"


def update(sim):
    """The template update (kubectl patch of the container's env)."""
    sim.set_env("%s=%s" % (TAG, V2))


def on_v2(sim, pod):
    """Whether the pod's kubia runs the updated template."""
    return environ(pid_of(sim, pod)).get(TAG) == V2


def test_should_provide_basic_identity(sim, tmp_path):
    up(sim, tmp_path, statefulset(3, podManagementPolicy="Parallel"))
    for pod in names(sim):
        # the mounted data directory is usable, the host name is the pod's name
        assert sim.post_pod(pod, "data of %s" % pod).status == 200
        r = sim.exec(pod, "hostname")
        assert r.stdout.strip() == pod
        sim.exec(pod, "sh", "-c", "hostname > /var/data/hostname && ln -s "
                 "/var/data/hostname /var/data/hostname-symlink")
    # the governing Service names every pod
    assert sim.endpoints() == ["kubia-0", "kubia-1", "kubia-2"]
    # restart: down to no pods and back
    sim.scale(0)
    assert names(sim) == []
    sim.scale(3)
    for pod in names(sim):
        for f in ("hostname", "hostname-symlink"):
            r = sim.exec(pod, "sh", "-c", '[ "$(cat /var/data/%s)" = "$(hostname)" ]' % f,
                         check=False)
            assert r.returncode == 0, (pod, f)
        assert sim.get_pod(pod, "/data").body == "data of %s" % pod


def test_should_not_deadlock_when_a_pods_predecessor_fails(sim, tmp_path):
    up(sim, tmp_path, statefulset(2))
    set_ready(pid_of(sim, "kubia-1"), False)
    wait_pod_ready(sim, "kubia-1", False)
    # the healthy kubia-0 is deleted: it comes back although kubia-1 is unhealthy
    old = sim.uid("kubia-0")
    sim.kubectl("delete", "po", "kubia-0")
    wait_pod_ready(sim, "kubia-0", True)
    assert sim.uid("kubia-0") != old
    assert not sim.pods_ready()["kubia-1"]
    set_ready(pid_of(sim, "kubia-1"), True)
    wait_ready_count(sim, 2)


def rollback_test(sim, tmp_path, keep_data=False):
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
    log = len(sim.controller_log())
    update(sim)
    wait_until(lambda: state(sim)["update_revision"] != current, 10, "the update revision")
    new = state(sim)["update_revision"]
    assert state(sim)["current_revision"] == current
    stays(lambda: set(revisions(sim).values()) == {current}, 2 * PERIOD_S,
          "a pod was replaced while kubia-1 was unhealthy")
    set_ready(pid1, True)
    sim.rollout_status()
    out = sim.controller_log()[log:]
    replaced = [m.group(1) for m in lines_of(out, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-2", "kubia-1", "kubia-0"], out
    st = current_is(sim, new)
    for pod in names(sim):
        assert st["pods"][pod]["revision"] == new
        assert on_v2(sim, pod)

    # the roll-back: the old template again is the old revision
    pid1 = pid_of(sim, "kubia-1")
    set_ready(pid1, False)
    wait_pod_ready(sim, "kubia-1", False)
    sim.kubectl("rollout", "undo", "statefulset", "kubia")
    wait_until(lambda: state(sim)["update_revision"] != new, 10, "the roll-back")
    assert state(sim)["update_revision"] == current
    assert state(sim)["current_revision"] == new
    set_ready(pid1, True)
    sim.rollout_status()
    st = current_is(sim, current)
    for pod in names(sim):
        assert st["pods"][pod]["revision"] == current
        assert not on_v2(sim, pod)
    return data


def test_should_perform_rolling_updates_and_roll_backs_of_template_modifications_with_pvcs(
        sim, tmp_path):
    # with claims: the data on them outlives the update and the roll-back
    data = rollback_test(sim, tmp_path, keep_data=True)
    for pod, body in data.items():
        assert sim.get_pod(pod, "/data").body == body


def test_should_perform_rolling_updates_and_roll_backs_of_template_modifications(
        sim, tmp_path):
    rollback_test(sim, tmp_path)


def current_is(sim, rev):
    """Until the current revision is rev: the controller makes the update revision
    current once its last pod is updated, a moment after rollout status has seen it."""
    return wait_until(lambda: sim.status()["current_revision"] == rev and sim.status(), 10,
                      "the current revision to be %s" % rev, 0.1)


def check_partition(sim, partition, current, new):
    st = sim.status()
    for o in range(3):
        pod = "kubia-%d" % o
        want = current if o < partition else new
        assert st["pods"][pod]["revision"] == want, (pod, partition)
        assert on_v2(sim, pod) == (o >= partition), (pod, partition)


def test_should_perform_canary_updates_and_phased_rolling_updates_of_template_modifications(
        sim, tmp_path):
    sts = statefulset(3, updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"partition": 3}})
    up(sim, tmp_path, sts)
    st = sim.status()
    current = st["current_revision"]
    assert st["update_revision"] == current and st["partition"] == 3
    # a partition above the replicas: a new revision, and no pod updated
    update(sim)
    sim.rollout_status()
    st = sim.status()
    new = st["update_revision"]
    assert new != current and st["current_revision"] == current
    stays(lambda: set(revisions(sim).values()) == {current}, 2 * PERIOD_S,
          "a pod was updated above the replicas' partition")
    check_partition(sim, 3, current, new)
    # the canary: partition 2
    sim.set_partition(2)
    assert "partitioned roll out complete: 1 new pods have been updated..." in \
        sim.rollout_status().stdout
    check_partition(sim, 2, current, new)
    # deleted pods come back at their side of the partition
    sim.delete_pod("kubia-0")
    sim.delete_pod("kubia-2")
    wait_ready_count(sim, 3)
    check_partition(sim, 2, current, new)
    # the phased rolling update, one ordinal at a time
    for partition in (1, 0):
        sim.set_partition(partition)
        sim.rollout_status()
        check_partition(sim, partition, current, new)
    current_is(sim, new)


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
    update(sim)
    sim.rollout_status()
    st = sim.status()
    new = st["update_revision"]
    assert new != current
    assert sim.sts()["updatedReplicas"] == 2 and sim.sts()["readyReplicas"] == 3
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [current, new, new]
    # kubia-0 is deleted; while it terminates, two replicas are ready
    uid = sim.uid("kubia-0")
    run = Background(sim, "delete", "po", "kubia-0")
    wait_until(lambda: state(sim)["pods"].get("kubia-0", {}).get("terminating"), 10,
               "kubia-0 to terminate")
    assert state(sim)["endpoints"] == ["kubia-1", "kubia-2"]
    _, out, _ = run.finish()
    assert out == 'pod "kubia-0" deleted\n'
    wait_ready_count(sim, 3)
    assert sim.uid("kubia-0") != uid
    st = sim.status()
    assert [st["pods"]["kubia-%d" % i]["revision"] for i in range(3)] == [current, new, new]
    assert st["templates"][current]["binary"] == os.path.abspath(wrapper)
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
    up(sim, tmp_path, statefulset(3, updateStrategy={"type": "OnDelete"}))
    current = sim.status()["current_revision"]
    for i in range(3):
        sim.delete_pod("kubia-%d" % i)
    wait_ready_count(sim, 3)
    assert set(revisions(sim).values()) == {current}
    log = len(sim.controller_log())
    update(sim)
    wait_until(lambda: state(sim)["update_revision"] != current, 10, "the update revision")
    new = state(sim)["update_revision"]
    stays(lambda: set(revisions(sim).values()) == {current}, 2 * PERIOD_S,
          "a pod was replaced with updateStrategy OnDelete")
    assert "rolling update: replacing" not in sim.controller_log()[log:]
    for i in range(3):
        sim.delete_pod("kubia-%d" % i)
    wait_ready_count(sim, 3)
    assert set(revisions(sim).values()) == {new}
    for pod in names(sim):
        assert on_v2(sim, pod)


def test_scaling_should_happen_in_predictable_order_and_halt_if_any_stateful_pod_is_unhealthy(
        sim, tmp_path):
    up(sim, tmp_path, statefulset(1), "--ready-timeout", 3)
    pid0 = pid_of(sim, "kubia-0")
    set_ready(pid0, False)
    wait_ready_count(sim, 0)
    # scale-up halts: no pod is created while kubia-0 is unhealthy
    log = len(sim.controller_log())
    watch = sim.watch()
    sim.kubectl("scale", "statefulset", "kubia", "--replicas", 3)
    wait_until(lambda: "kubia-0 is not ready" in sim.controller_log()[log:], 15,
               "the controller to wait for kubia-0")
    assert names(sim) == ["kubia-0"]
    set_ready(pid0, True)
    sim.wait_pods(3)
    events = watch.events()
    assert [e[1] for e in events if e[0] == "ADDED"] == ["kubia-1", "kubia-2"], events
    assert first(events, ("MODIFIED", "kubia-1", "True")) < first(events, ("ADDED",
                                                                          "kubia-2"))
    # scale-down halts while pods are unhealthy
    pids = {p: pid_of(sim, p) for p in names(sim)}
    for pid in pids.values():
        set_ready(pid, False)
    wait_ready_count(sim, 0)
    log = len(sim.controller_log())
    watch = sim.watch()
    sim.kubectl("scale", "statefulset", "kubia", "--replicas", 0)
    wait_until(lambda: "does not scale down while any pod is unhealthy" in
               sim.controller_log()[log:], 15, "the controller to halt the scale-down")
    assert names(sim) == ["kubia-0", "kubia-1", "kubia-2"]
    for pid in pids.values():
        set_ready(pid, True)
    sim.wait_pods(0)
    deleted = [e[1] for e in watch.events() if e[0] == "DELETED"]
    assert deleted == ["kubia-2", "kubia-1", "kubia-0"]


def test_burst_scaling_should_run_to_completion_even_with_unhealthy_pods(sim, tmp_path):
    up(sim, tmp_path, statefulset(1, podManagementPolicy="Parallel"))
    set_ready(pid_of(sim, "kubia-0"), False)
    wait_ready_count(sim, 0)
    # scale-up does not halt
    log = len(sim.controller_log())
    sim.kubectl("scale", "statefulset", "kubia", "--replicas", 3)
    wait_until(lambda: names(sim) == ["kubia-0", "kubia-1", "kubia-2"], 15,
               "kubia-1 and kubia-2 beside the unready kubia-0")
    wait_ready_count(sim, 2)
    assert "waiting for kubia-0" not in sim.controller_log()[log:]
    set_ready(pid_of(sim, "kubia-0"), True)
    wait_ready_count(sim, 3)
    # scale-down does not halt either
    for p in names(sim):
        set_ready(pid_of(sim, p), False)
    wait_ready_count(sim, 0)
    sim.kubectl("scale", "statefulset", "kubia", "--replicas", 0)
    wait_until(lambda: names(sim) == [], 15, "every pod to go")
    wait_until(lambda: sim.sts()["replicas"] == 0, 5, "status.replicas 0")
