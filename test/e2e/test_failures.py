"""Peers that die or drop off the network, a node whose network goes down (section 10.5),
cluster DNS trouble, pods that are not ready."""

import os
import re
import signal
import time

from conftest import proc_alive, wait_until
from ststest import stays

ERROR_LINE = r"- %s: Error: (.+)\n"


def nodes_of(sim):
    """(pod, node) of every pod, as the API server has scheduled them."""
    return sorted((p["metadata"]["name"], p["spec"].get("nodeName"))
                  for p in sim.get("po")["items"])


def node_ready(sim, node):
    """The status of the node's Ready condition: True, or Unknown once it is lost."""
    return next(c["status"] for c in sim.get("node", node)["status"]["conditions"]
                if c["type"] == "Ready")


def error_reason(sim, body, pod):
    m = re.search(ERROR_LINE % re.escape(sim.fqdn(pod)), body)
    assert m, body
    return m.group(1)


def test_killed_peer_is_an_error_line_and_comes_back(sim):
    # a long first back-off keeps the dead pod dead while the view is asked for
    sim.up(3, "peers", "--restart-backoff-ms", 4000)
    data = sim.post_each(3)
    sim.wait_view("kubia-0", data)
    os.kill(sim.container_pid("kubia-1"), signal.SIGKILL)
    r = sim.get_pod("kubia-0")
    assert r.status == 200
    assert r.elapsed < 2.0  # --peer-timeout-ms 2000; a refused connection is immediate
    want = sim.view("kubia-0", dict(data, **{"kubia-1": "Error: REASON"}))
    reason = error_reason(sim, r.body, "kubia-1")
    assert r.body == want.replace("REASON", reason)
    assert "connect" in reason.lower()
    # the kubelet restarts it after the back-off, with its data
    wait_until(lambda: sim.restarts("kubia-1") == 1 and
               sim.get_pod("kubia-1", "/data").body == "data of kubia-1", 15,
               "kubia-1 to be restarted")
    sim.wait_view("kubia-0", data)


def test_cut_off_peer_costs_at_most_the_peer_timeout(sim):
    sim.up(3)
    data = sim.post_each(3)
    sim.wait_view("kubia-2", data)
    sim.cli("cut", "kubia-1")
    # the process still runs (a node failure, not a crash) and DNS still lists it
    os.kill(sim.container_pid("kubia-1"), 0)
    r = sim.get_pod("kubia-2")
    assert r.status == 200
    assert r.elapsed < 3.0, r.elapsed  # --peer-timeout-ms is 2000 (connect: 1000)
    reason = error_reason(sim, r.body, "kubia-1")
    want = sim.view("kubia-2", dict(data, **{"kubia-1": "Error: " + reason}))
    assert r.body == want
    assert "timeout" in reason.lower() or "timed out" in reason.lower()
    # the other pods keep answering at full speed meanwhile
    r = sim.get_pod("kubia-0", "/data")
    assert r.body == "data of kubia-0" and r.elapsed < 0.5
    sim.cli("heal", "kubia-1")
    sim.wait_view("kubia-2", data)


def test_cluster_dns_down_and_back(sim):
    sim.up(2)
    data = sim.post_each(2)
    sim.wait_view("kubia-0", data)
    sim.cli("dns", "stop")
    assert sim.status()["dns"] is None

    def failed():
        r = sim.get_pod("kubia-0")
        return r if "Could not look up" in r.body else None
    r = wait_until(failed, 10, "the cluster view to report the DNS failure", 0.1)
    assert r.status == 200
    m = re.fullmatch(r"You've hit kubia-0\nData stored in the cluster:\n"
                     r"Could not look up DNS SRV records: (.+)\n", r.body)
    assert m, r.body
    assert "kubia" in m.group(1)
    assert r.elapsed < 3.0  # --dns-timeout-ms 2000
    sim.cli("dns", "start")
    sim.wait_view("kubia-0", data)


def test_no_ready_pods_means_no_peers_and_no_endpoints(sim):
    sim.up(2)
    for pod in ("kubia-0", "kubia-1"):
        # the volume turns read-only: /readyz fails, the pod leaves the endpoints
        sim.exec(pod, "mount", "-o", "remount,bind,ro", "/var/data")
    r = sim.cli("probe")
    assert "endpoints kubia: <none>" in r.stdout
    wait_until(lambda: sim.endpoints() == [], 5, "the endpoints to be empty")

    def no_peers():
        r = sim.get_pod("kubia-0")
        return r if "No peers" in r.body else None
    r = wait_until(no_peers, 10, "the view without peers", 0.1)
    assert r.body == "You've hit kubia-0\nData stored in the cluster:\nNo peers discovered.\n"
    # the Service has no endpoints, as the API server says it
    r = sim.get_svc()
    assert r.status == 503
    assert 'no endpoints available for service \\"kubia-public\\"' in r.body
    # cluster DNS answers NXDOMAIN, not an error
    out = sim.dig("+time=2", "+tries=1", "SRV", "kubia.default.svc.cluster.local")
    assert "status: NXDOMAIN" in out


def test_a_pod_that_is_not_ready_still_shows_itself(sim):
    sim.up(3)
    data = sim.post_each(3)
    sim.exec("kubia-2", "mount", "-o", "remount,bind,ro", "/var/data")
    sim.cli("probe")
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1"], 5,
               "kubia-2 to leave the endpoints")
    # kubia-2 is not in DNS, but its own view lists it, named like the others
    sim.wait_view("kubia-2", data)
    # the other pods do not list it
    sim.wait_view("kubia-0", {p: data[p] for p in ("kubia-0", "kubia-1")})
    out = sim.kubectl("get", "po").stdout
    assert re.search(r"^kubia-2\s+0/1\s+Running", out, re.M), out


def test_a_nodes_network_down_as_section_10_5_tells_it(sim):
    # three pods on three nodes; a short grace and eviction timeout, a short back-off
    sim.up(3, "peers", "--restart-backoff-ms", 300, "--node-lost-grace", 2,
           "--pod-eviction-timeout", 2)
    assert nodes_of(sim) == [
        ("kubia-0", "kubia-sim-1"), ("kubia-1", "kubia-sim-2"), ("kubia-2", "kubia-sim-3")]
    st = sim.status()
    data = sim.post_each(3)
    sim.wait_view("kubia-1", data)
    old = st["pods"]["kubia-0"]
    old_proc = {"pid": sim.container_pid("kubia-0"),
                "start": st["pod_status"]["kubia-0"].get("start")}
    t0 = time.monotonic()
    r = sim.cli("node-down", "kubia-sim-1")
    assert "node kubia-sim-1 is cut off the network, with kubia-0" in r.stdout
    # the node controller notices after its grace: NotReady, kubia-0 Unknown and out of
    # the endpoints; its process runs on
    wait_until(lambda: node_ready(sim, "kubia-sim-1") == "Unknown", 10,
               "kubia-sim-1 to be NotReady")
    assert time.monotonic() - t0 >= 2
    out = sim.kubectl("get", "po", "-o", "wide").stdout
    assert re.search(r"^kubia-0\s+0/1\s+Unknown\s.*\skubia-sim-1\s", out, re.M), out
    out = sim.kubectl("get", "nodes").stdout
    assert re.search(r"^kubia-sim-1\s+NotReady\s", out, re.M), out
    assert re.search(r"^kubia-sim-2\s+Ready\s", out, re.M), out
    # the node's record keeps the fields the API server's Node objects are made of
    assert sorted(sim.status()["nodes"]["kubia-sim-1"]) == [
        "addr", "created", "cut", "labels", "name", "ready", "unschedulable"]
    wait_until(lambda: sim.endpoints() == ["kubia-1", "kubia-2"], 5,
               "kubia-0 to leave the endpoints")
    assert proc_alive(old_proc)
    # then evicted: terminating, NodeLost, but neither removed nor replaced
    pod = wait_until(lambda: sim.get("po", "kubia-0")["status"].get("reason") == "NodeLost"
                     and sim.get("po", "kubia-0"), 10, "kubia-0 to be evicted")
    assert pod["metadata"]["deletionTimestamp"]
    assert pod["status"]["message"] == \
        "Node kubia-sim-1 which was running pod kubia-0 is unresponsive"
    out = sim.kubectl("describe", "po", "kubia-0").stdout
    assert re.search(r"^Status:\s+Terminating \(lasts .*\)$", out, re.M), out
    assert re.search(r"^Reason:\s+NodeLost$", out, re.M), out

    def kept():
        st = sim.status()
        return st["pods"]["kubia-0"]["netns"] == old["netns"] and len(st["pods"]) == 3 \
            and st["orphans"] == [] and proc_alive(old_proc)
    stays(kept, 3, "the lost kubia-0 was removed or replaced")
    # the forced deletion: the replacement goes to another node, with the same claim,
    # and kubia refuses it while the old process holds the volume's lock
    r = sim.kubectl("delete", "po", "kubia-0", "--force", "--grace-period", "0")
    assert 'pod "kubia-0" force deleted' in r.stdout
    new = wait_until(lambda: sim.status()["pods"].get("kubia-0"), 10, "the replacement")
    assert new["netns"] != old["netns"]
    assert dict(nodes_of(sim))["kubia-0"] in ("kubia-sim-2", "kubia-sim-3")
    wait_until(lambda: sim.restarts("kubia-0") >= 2, 15,
               "a second refused start of the replacement")
    log = sim.kubectl("logs", "kubia-0").stdout
    assert "data directory /var/data is locked by another process" in log
    assert "refusing to start: at most one kubia may use a data directory" in log
    assert proc_alive(old_proc) and "kubia-0" not in sim.endpoints()
    # the node is back: its kubelet stops the force-deleted pod, the replacement starts
    # with its data, and every pod's view lists all of them again
    r = sim.cli("node-up", "kubia-sim-1")
    assert "the force-deleted kubia-0 is stopped there" in r.stdout
    wait_until(lambda: not proc_alive(old_proc), 5, "the old process to end")
    assert sim.status()["orphans"] == [] and node_ready(sim, "kubia-sim-1") == "True"
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1", "kubia-2"], 5,
               "every pod in the endpoints")
    assert sim.get_pod("kubia-0", "/data").body == "data of kubia-0"
    for pod in ("kubia-0", "kubia-1", "kubia-2"):
        sim.wait_view(pod, data)


def test_a_lost_nodes_evicted_pod_is_replaced_once_the_node_is_back(sim):
    # no forced deletion: a graceful one cannot complete either, until the node returns
    sim.up(2, "pet", "--node-lost-grace", 1, "--pod-eviction-timeout", 1)
    sim.post_pod("kubia-1", "kept")
    old = sim.status()["pods"]["kubia-1"]
    sim.cli("cut", "kubia-1")  # the pod's node, kubia-sim-2
    assert sim.status()["nodes"]["kubia-sim-2"]["cut"]
    uid = sim.uid("kubia-1")
    # nothing confirms the deletion: kubectl would wait for ever, so it does not wait
    r = sim.kubectl("delete", "po", "kubia-1", "--wait=false")
    assert r.stdout == 'pod "kubia-1" deleted\n'
    pod = sim.get("po", "kubia-1")
    assert pod["metadata"]["uid"] == uid and pod["metadata"]["deletionTimestamp"]
    assert sim.status()["pods"]["kubia-1"]["netns"] == old["netns"]
    r = sim.cli("heal", "kubia-1")
    assert 'pod "kubia-1" deleted (node kubia-sim-2 is back and stopped it)' in r.stdout
    assert sim.status()["pods"]["kubia-1"]["netns"] != old["netns"]
    assert sim.uid("kubia-1") != uid
    wait_until(lambda: sim.endpoints() == ["kubia-0", "kubia-1"], 5, "both endpoints")
    assert sim.get_pod("kubia-1", "/data").body == "kept"
