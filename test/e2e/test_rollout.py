"""A rolling update under load, through kubia-public, with zero failed requests.

In a real cluster a deleted pod leaves the Service only once the endpoints controller
and every node's kube-proxy have caught up, a moment after its kubelet has begun to stop
it. kubia-sim plays that lag (up --endpoint-lag 1: a random 0 to 1 s), and its Service
proxy, like kube-proxy, never retries a failed connection on another pod, so every
error reaches the client. The manifests' preStop sleep keeps kubia serving through the
lag; without it, kubia (which stops accepting at once on SIGTERM) refuses the
connections sent to it meanwhile, and the load sees it.
"""

import os
import re
import time

from conftest import BASE, lines_of, wait_until
from loadgen import Load
from test_sim_manifest import container, write
from kubiasim import manifests

LAG = 1.0  # seconds: kube-proxy's lag, at most


def rollout_under_load(sim, manifest=None):
    """Brings up three pods (from manifest, default k8s/), rolls them all to a new
    template under constant load through kubia-public (kubectl patch, then kubectl
    rollout status); returns (load, what the controller said meanwhile)."""
    sim.up(3, "peers", "--endpoint-lag", LAG, manifest=manifest)
    with Load(sim, clients=3) as load:
        wait_until(lambda: load.total() >= 30, 30, "the load to get going", 0.05)
        t0 = time.monotonic()
        log = len(sim.controller_log())
        sim.set_env("KUBIA_IDLE_TIMEOUT_S=31")
        sim.rollout_status()
        took = time.monotonic() - t0
        out = sim.controller_log()[log:]
        before = load.total()
        # a little more load on the new pods, so that the last replacement's lag is over
        wait_until(lambda: load.total() >= before + 30, 30, "load after the rollout", 0.05)
    # the controller's own account: the order, the lag it played, each pod's stop
    replaced = [m.group(1) for m in lines_of(out, r"^rolling update: replacing (kubia-\d)")]
    assert replaced == ["kubia-2", "kubia-1", "kubia-0"], out
    lags = [float(m.group(1)) for m in lines_of(out, r"removed ([0-9.]+) s after")]
    assert len(lags) == 3 and all(0 <= x <= LAG for x in lags), out
    stopped = [float(m.group(1)) for m in lines_of(out, r"stopped in ([0-9.]+) s")]
    print("rollout in %.1f s: %s; endpoint lags %s s; pods stopped in %s s; %d view lines "
          "with an error %s" % (took, load.summary(), lags, stopped, load.degraded_lines,
                                 load.degraded))
    return load, out


def test_a_rollout_under_load_fails_no_request(sim):
    load, _ = rollout_under_load(sim)
    assert load.failures == [], "%s: %s" % (load.summary(), load.failures[:10])
    assert min(load.ok.values()) >= 10, load.summary()
    # every acknowledged POST is still there: each pod serves the body it acked last
    for pod, body in load.acked.items():
        r = sim.get_pod(pod, "/data")
        assert (r.status, r.body) == (200, body), pod


def test_without_the_prestop_sleep_the_load_sees_the_lag(sim, tmp_path):
    # The control: the same rollout from the manifests without their preStop hook. The
    # connections that reach a pod between its SIGTERM and its leaving the endpoints
    # are refused, and the proxy passes the error on, as kube-proxy would.
    [sts] = manifests.find(manifests.load(os.path.join(BASE, "kubia-statefulset-peers.yaml")),
                           "StatefulSet")
    del container(sts)["lifecycle"]
    load, out = rollout_under_load(sim, manifest=write(tmp_path, "sts.yaml", sts))
    assert load.failures, "no request failed: %s\n%s" % (load.summary(), out)
    # and, from a pod already stopping, its own refusal of a request that came on a
    # connection opened before its SIGTERM
    assert all(re.match(r"50[24] |503 (not ready|Could not store data): shutting down", what)
               for _, _, what in load.failures), load.failures
