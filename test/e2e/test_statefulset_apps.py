"""Kubernetes' StatefulSet end-to-end scenarios (test/e2e/apps/statefulset.go) beyond the
basic ones, run against kubia-sim: clustered applications (kubia's cluster view in the
place of ZooKeeper, Redis, MySQL Galera and CockroachDB), minReadySeconds, the claims'
retention policy, a claim recreated for a pending pod, and ordinals.start; then what
kubia-sim promises besides: endpoints that follow readiness with no command run, a
lost node's pods leaving them after its grace, kubectl rollout status following it,
and the refusal of StatefulSet fields it does not implement. The coverage table is in
README.md beside this file.
"""

import os
import re
import time

import pytest

from conftest import wait_until
from ststest import (PERIOD_S, apply, dns_names, names, pid_of, revisions, set_ready,
                     statefulset, stays, up, wait_ready_count)


def clustered_app(sim, tmp_path, sts, *extra, restart=True):
    """The upstream clusterAppTester: foo=bar written to member 0, the whole set
    restarted, the value read from member 2 (here: in kubia-2's cluster view)."""
    up(sim, tmp_path, sts, *extra)
    assert sim.post_pod("kubia-0", "foo:bar").status == 200
    if restart:
        sim.scale(0)
        assert names(sim) == []
        sim.scale(sts["spec"]["replicas"])
        wait_ready_count(sim, 3)
    sim.wait_view("kubia-2", {"kubia-0": "foo:bar", "kubia-1": "No data posted yet",
                              "kubia-2": "No data posted yet"})


def test_should_creating_a_working_zookeeper_cluster(sim, tmp_path):
    clustered_app(sim, tmp_path, statefulset(3, mode="peers"))


def test_should_creating_a_working_redis_cluster(sim, tmp_path):
    # a DNS that serves only the specification's records
    clustered_app(sim, tmp_path, statefulset(3, mode="peers"), "--cluster-dns", "spec")


def test_should_creating_a_working_mysql_cluster(sim, tmp_path):
    # upstream does not restart MySQL Galera
    clustered_app(sim, tmp_path, statefulset(3, mode="peers"), restart=False)


def test_should_creating_a_working_cockroachdb_cluster(sim, tmp_path):
    clustered_app(sim, tmp_path, statefulset(3, mode="peers", podManagementPolicy="Parallel"))


def available(sim):
    """status.availableReplicas as the API server computes it, read from the simulation's
    files at once: the test looks within seconds of minReadySeconds, which a kubectl
    call on a busy machine can take."""
    return sim.status()["status"]["availableReplicas"]


def test_minreadyseconds_should_be_honored_when_enabled(sim, tmp_path):
    up(sim, tmp_path, statefulset(1))
    wait_until(lambda: available(sim) == 1, 10, "one available replica", 0.1)


def test_availablereplicas_should_get_updated_accordingly_when_minreadyseconds_is_enabled(
        sim, tmp_path):
    # upstream: 30 s and an hour; here 4 s and an hour
    sts = statefulset(2, podManagementPolicy="Parallel", minReadySeconds=4)
    up(sim, tmp_path, sts)
    wait_ready_count(sim, 2)
    # counted from when the first pod became ready (the kubelet's clock, as the
    # controller's), however long up and kubectl took after it on a busy machine
    ready_at = min(s["ready_since"] for s in sim.status()["pod_status"].values())

    def not_yet():
        return available(sim) == 0 or time.time() - ready_at >= 3.9
    assert not_yet()
    stays(not_yet, max(0.5, ready_at + 4 - time.time()),
          "replicas available before minReadySeconds")
    wait_until(lambda: available(sim) == 2, 10, "two available replicas", 0.2)
    sts["spec"]["minReadySeconds"] = 3600
    apply(sim, tmp_path, sts)
    assert available(sim) == 0
    sts["spec"]["minReadySeconds"] = 0
    apply(sim, tmp_path, sts)
    assert sim.kubectl("get", "statefulset", "kubia", "-o",
                       "jsonpath={.status.availableReplicas}").stdout == "2"


def claims(sim):
    d = os.path.dirname(sim.volume(0))
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_should_delete_pvcs_with_a_whendeleted_policy(sim, tmp_path):
    sts = statefulset(3, podManagementPolicy="Parallel",
                      persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete"})
    up(sim, tmp_path, sts)
    assert claims(sim) == ["data-kubia-0", "data-kubia-1", "data-kubia-2"]
    r = sim.cli("down")
    assert 'persistentvolumeclaim "data-kubia-2" deleted (whenDeleted: Delete)' in r.stdout
    assert claims(sim) == []


def test_should_delete_pvcs_with_a_onscaledown_policy(sim, tmp_path):
    sts = statefulset(3, podManagementPolicy="Parallel",
                      persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete"})
    up(sim, tmp_path, sts)
    assert claims(sim) == ["data-kubia-0", "data-kubia-1", "data-kubia-2"]
    sim.scale(1)
    wait_until(lambda: claims(sim) == ["data-kubia-0"], 10, "the claims of the pods gone")
    # deleting the StatefulSet keeps the rest (whenDeleted: Retain)
    sim.cli("down")
    assert claims(sim) == ["data-kubia-0"]


def test_pvc_should_be_recreated_when_pod_is_pending_due_to_missing_pvc(sim, tmp_path):
    up(sim, tmp_path, statefulset(1))
    assert claims(sim) == ["data-kubia-0"]
    wait_ready_count(sim, 1)
    assert sim.post_pod("kubia-0", "on the first claim").status == 200
    # every node cordoned, the deleted pod is recreated but stays Pending
    nodes = sim.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert len(nodes) == 3, nodes
    sim.kubectl("cordon", *nodes)
    sim.kubectl("delete", "po", "kubia-0")
    wait_until(lambda: sim.status()["pending"] == ["kubia-0"], 10, "kubia-0 Pending")
    assert names(sim) == []
    assert re.search(r"^kubia-0\s+0/1\s+Pending", sim.kubectl("get", "po").stdout, re.M)
    assert claims(sim) == ["data-kubia-0"]
    sim.kubectl("delete", "pvc", "data-kubia-0")
    assert claims(sim) == []
    # uncordoned: the claim is recreated and the pod runs, ready, on it
    sim.kubectl("uncordon", *nodes)
    wait_ready_count(sim, 1)
    assert claims(sim) == ["data-kubia-0"]
    assert sim.status()["pending"] == []
    assert sim.get_pod("kubia-0", "/data").body == "No data posted yet"


def start_ordinal(sim, tmp_path, initial, want, **change):
    """Two pods from ordinal initial (None: no ordinals), then the change applied."""
    sts = statefulset(2, podManagementPolicy="Parallel")
    if initial is not None:
        sts["spec"]["ordinals"] = {"start": initial}
    up(sim, tmp_path, sts)
    wait_ready_count(sim, 2)
    first = initial or 0
    assert names(sim) == ["kubia-%d" % o for o in range(first, first + 2)]
    sts["spec"].pop("ordinals", None)
    if change.get("start") is not None:
        sts["spec"]["ordinals"] = {"start": change["start"]}
    sts["spec"]["replicas"] = change.get("replicas", 2)
    apply(sim, tmp_path, sts)
    sim.wait_pods(0, names=want)


def test_setting_start_ordinal(sim, tmp_path):
    start_ordinal(sim, tmp_path, None, ["kubia-2", "kubia-3", "kubia-4"], start=2, replicas=3)


def test_increasing_start_ordinal(sim, tmp_path):
    start_ordinal(sim, tmp_path, 2, ["kubia-4", "kubia-5"], start=4)


def test_decreasing_start_ordinal(sim, tmp_path):
    start_ordinal(sim, tmp_path, 3, ["kubia-2", "kubia-3"], start=2)


def test_removing_start_ordinal(sim, tmp_path):
    start_ordinal(sim, tmp_path, 3, ["kubia-0", "kubia-1"])


# --- what kubia-sim promises besides ---------------------------------------------------

def test_a_pod_leaves_dns_within_two_probe_periods_of_failing_with_no_command_run(
        sim, tmp_path):
    up(sim, tmp_path, statefulset(2, podManagementPolicy="Parallel"))
    wait_until(lambda: dns_names(sim) == ["kubia-0", "kubia-1"], 5, "both pods in DNS")
    pid = pid_of(sim, "kubia-1")
    # no kubia-sim command runs from here on: the kubelet and the endpoints controller
    t0 = time.monotonic()
    set_ready(pid, False)
    wait_until(lambda: dns_names(sim) == ["kubia-0"], 2 * PERIOD_S, "kubia-1 to leave DNS")
    assert time.monotonic() - t0 <= 2 * PERIOD_S + 0.5
    t0 = time.monotonic()
    set_ready(pid, True)
    wait_until(lambda: dns_names(sim) == ["kubia-0", "kubia-1"], 2 * PERIOD_S,
               "kubia-1 back in DNS")
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1"], 2, "both endpoints")


def test_a_pod_cut_off_goes_unknown_and_leaves_the_endpoints_after_the_node_lost_grace(
        sim, tmp_path):
    up(sim, tmp_path, statefulset(2, podManagementPolicy="Parallel"),
       "--node-lost-grace", 2)
    t0 = time.monotonic()
    sim.cli("cut", "kubia-1")
    stays(lambda: "kubia-1" in dns_names(sim) or time.monotonic() - t0 >= 1.9, 1.5,
          "kubia-1 left DNS before the node-lost grace")
    wait_until(lambda: dns_names(sim) == ["kubia-0"], 3, "kubia-1 to leave DNS")
    wait_until(lambda: sim.endpoints() == ["kubia-0"], 2, "kubia-1 out of the endpoints")
    # its node NotReady, the pod shows Unknown
    assert re.search(r"^kubia-1\s+0/1\s+Unknown\s", sim.kubectl("get", "po").stdout, re.M)
    sim.cli("heal", "kubia-1")
    wait_until(lambda: dns_names(sim) == ["kubia-0", "kubia-1"], 3, "kubia-1 back in DNS")


def test_rollout_status_of_kubectl_follows_the_statefulset(sim, tmp_path):
    sts = statefulset(3, podManagementPolicy="Parallel",
                      updateStrategy={"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 2}})
    up(sim, tmp_path, sts)
    rev = sim.status()["current_revision"]
    # at creation every pod runs the update revision (it is also the current one)
    r = sim.rollout_status()
    assert r.stdout == "partitioned roll out complete: 3 new pods have been updated...\n"
    sim.set_env("KUBIA_X=1")
    r = sim.rollout_status()
    assert r.stdout.splitlines()[-1] == \
        "partitioned roll out complete: 1 new pods have been updated...", r.stdout
    set_ready(pid_of(sim, "kubia-0"), False)
    wait_ready_count(sim, 2)
    r = sim.kubectl("rollout", "status", "statefulset", "kubia", "--watch=false")
    assert r.stdout == "Waiting for 1 pods to be ready...\n"
    set_ready(pid_of(sim, "kubia-0"), True)
    sim.set_partition(0)
    r = sim.kubectl("rollout", "status", "statefulset/kubia", "--timeout", "120s")
    new = sim.status()["update_revision"]
    assert new != rev
    # a rollingUpdate with a partition, even 0, is a partitioned roll out to kubectl
    assert r.stdout.splitlines()[-1] == \
        "partitioned roll out complete: 3 new pods have been updated...", r.stdout
    assert set(revisions(sim).values()) == {new}
    sts["spec"]["updateStrategy"] = {"type": "OnDelete"}
    apply(sim, tmp_path, sts)
    r = sim.rollout_status(check=False)
    assert r.returncode == 1
    assert "rollout status is only available for RollingUpdate strategy type" in r.stderr


UNIMPLEMENTED = [
    ({"serviceAccountName": "x"}, "sets serviceAccountName, which kubia-sim does not"),
    ({"podManagementPolicy": "Random"}, "podManagementPolicy 'Random'"),
    ({"updateStrategy": {"type": "Recreate"}}, "updateStrategy.type 'Recreate'"),
    ({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}},
     "rollingUpdate.maxUnavailable: kubia-sim implements only partition"),
    ({"updateStrategy": {"rollingUpdate": {"partition": -1}}}, "partition -1"),
    ({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"}}, "whenScaled 'Keep'"),
    ({"minReadySeconds": "5"}, "minReadySeconds '5'"),
    ({"ordinals": {"start": 199}}, "replicas 2 from ordinal 199"),
    ({"revisionHistoryLimit": -2}, "revisionHistoryLimit -2"),
]


@pytest.mark.parametrize("spec,msg", UNIMPLEMENTED, ids=[m for _, m in UNIMPLEMENTED])
def test_a_statefulset_field_kubia_sim_does_not_implement_is_refused(sim, tmp_path, spec,
                                                                      msg):
    r = up(sim, tmp_path, statefulset(2, **spec), check=False)
    assert r.returncode == 1 and msg in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(sim.run_dir, sim.name, "state.json"))


def test_pod_management_policy_cannot_change_and_a_refused_apply_changes_nothing(
        sim, tmp_path):
    sts = statefulset(2, podManagementPolicy="Parallel")
    up(sim, tmp_path, sts)
    before = sim.status()
    sts["spec"]["podManagementPolicy"] = "OrderedReady"
    sts["spec"]["replicas"] = 3
    r = apply(sim, tmp_path, sts, check=False)
    assert r.returncode == 1 and "Forbidden" in r.stderr
    after = sim.status()
    assert after["replicas"] == 2 and after["update_revision"] == before["update_revision"]
    assert names(sim) == ["kubia-0", "kubia-1"]
