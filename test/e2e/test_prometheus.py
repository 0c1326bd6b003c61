"""A real Prometheus (Debian's) scraping the simulated cluster: `kubia-sim up
--prometheus` starts it on 127.0.0.1 and it finds kubia's kubia_* series on every ready
pod; its file service discovery follows the pods (scaled away and back, cut off and
healed, replaced by a rolling update, deleted and recreated); the manifests'
prometheus.io/* annotations decide what it scrapes, and nothing outside the cluster is
ever a target. Every wait is bounded; the scrape interval is short (SCRAPE_S).
"""

import calendar
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import BASE, KUBIA, wait_until
from kubiasim import manifests, prometheus

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SCRAPE_S = 1
# Prometheus applies a change of its targets at most every 5 s, then scrapes
FOLLOW_S = 30
JOB = 'job="%s"' % prometheus.JOB
# the pods whose last scrape worked and gave kubia's series (a failed scrape, or a pod
# that left, marks the pod's series stale at once: they leave the answer)
SERIES = ('count by (pod) ({__name__=~"kubia_.+",%s}) and on (pod) (up{%s} == 1)'
          % (JOB, JOB))

pytestmark = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                                reason="prometheus is not installed (bash test/setup.sh)")


def api(port, path, **params):
    """The data of a Prometheus API answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""))
        r = conn.getresponse()
        body = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 200 and body["status"] == "success", body
    return body["data"]


def pods_with_series(port, expr=SERIES):
    return sorted(r["metric"]["pod"] for r in api(port, "/api/v1/query", query=expr)["result"])


def wait_series(port, want, what, targets=None):
    """Waits until exactly the pods want have fresh kubia_* series, and exactly the pods
    targets (default: want) are Prometheus' targets, each with an up series."""
    targets = want if targets is None else targets
    last = []

    def ok():
        last[:] = [(pods_with_series(port), pods_with_series(port, "up{%s}" % JOB),
                    sorted(active_targets(port)))]
        return last[0] == (sorted(want), sorted(targets), sorted(targets))
    try:
        wait_until(ok, FOLLOW_S, what, interval=0.2)
    except AssertionError:
        assert last[0] == (sorted(want), sorted(targets), sorted(targets)), what


def active_targets(port):
    return {t["labels"]["pod"]: t for t in api(port, "/api/v1/targets")["activeTargets"]}


def discovered(port, pod):
    """The labels Prometheus' discovery gave the pod's target."""
    return active_targets(port)[pod]["discoveredLabels"]


def wait_ready_label(port, pod, ready):
    """Waits until Prometheus has the pod as a target whose discovery says ready."""
    def ok():
        t = active_targets(port).get(pod)
        return t and t["discoveredLabels"]["__meta_kubernetes_pod_ready"] == ready
    wait_until(ok, FOLLOW_S, "%s to be a target with ready %s" % (pod, ready), interval=0.2)


def test_prometheus_scrapes_every_ready_pod_and_follows_them(sim):
    r = sim.up(3, "peers", "--prometheus", "--prometheus-interval", SCRAPE_S)
    st = sim.status()
    port = st["prometheus_port"]
    # `up` says where it is, and it is there, on loopback only, its TSDB and files in
    # the cluster's run directory
    m = re.search(r"^Prometheus: http://127\.0\.0\.1:(\d+)/, scraping 3 pods every 1 s",
                  r.stdout, re.M)
    assert m and int(m.group(1)) == port, r.stdout
    sim.refs.append(st["prometheus"])
    flags = api(port, "/api/v1/status/flags")
    assert flags["web.listen-address"] == "127.0.0.1:%d" % port
    home = os.path.join(st["run"], "prometheus")
    assert flags["storage.tsdb.path"] == os.path.join(home, "data")
    assert flags["config.file"] == os.path.join(home, "prometheus.yml")
    assert os.path.isdir(os.path.join(home, "data", "wal"))

    # every ready pod is scraped, at its address in the cluster, as the annotations say
    ready = sim.endpoints()
    assert ready == ["kubia-0", "kubia-1", "kubia-2"]
    wait_series(port, ready, "series of every ready pod")
    targets = active_targets(port)
    assert sorted(targets) == ready
    for name, t in targets.items():
        assert t["scrapeUrl"] == "http://%s:8080/metrics" % st["pods"][name]["ip"]
        assert t["scrapeUrl"].startswith("http://%s." % sim.base)
        assert t["labels"]["namespace"] == "default" and t["labels"]["job"] == prometheus.JOB
    assert api(port, "/api/v1/targets")["droppedTargets"] == []
    # each target is the pod it is named for
    info = api(port, "/api/v1/query", query="kubia_build_info{%s}" % JOB)["result"]
    assert sorted((i["metric"]["pod"], i["metric"]["hostname"], i["metric"]["mode"])
                  for i in info) == [(p, p, "peers") for p in ready]

    # Each step below changes the pods and waits for Prometheus once (it applies a
    # change of targets at most every 5 s).
    old = {p: discovered(port, p) for p in ("kubia-1", "kubia-2")}
    # cut off the network, kubia-0 leaves the endpoints (probe publishes them) but stays
    # a target, not ready (the API server keeps a pod of an unreachable node), whose
    # scrapes fail
    sim.cli("cut", "kubia-0")
    sim.cli("probe")
    wait_ready_label(port, "kubia-0", "false")
    wait_series(port, ["kubia-1", "kubia-2"], "kubia-0's series to end when it is cut off",
                targets=ready)
    assert pods_with_series(port, "up{%s} == 0" % JOB) == ["kubia-0"]
    # healed, kubia-0 is ready and scraped again; scaled down, kubia-2 leaves Prometheus
    sim.cli("heal", "kubia-0")
    sim.scale(2)
    wait_ready_label(port, "kubia-0", "true")
    wait_series(port, ["kubia-0", "kubia-1"],
                "kubia-0's series to come back when healed, kubia-2's to end after scale 2")

    # scaled up, kubia-2 is back; a rolling update above a partition replaces it with a
    # pod of the new revision; deleted, kubia-1 comes back as a new pod (a new uid)
    sim.scale(3)
    sim.patch({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}},
                        "template": {"spec": {"containers": [
                            {"name": "kubia", "env": [{"name": "KUBIA_LOG_LEVEL",
                                                       "value": "info"}]}]}}}})
    sim.rollout_status()
    sim.delete_pod("kubia-1")
    back = time.time()
    st = sim.status()
    new = {"kubia-1": ("__meta_kubernetes_pod_uid", st["pods"]["kubia-1"]["netns"]),
           "kubia-2": ("__meta_kubernetes_pod_label_controller_revision_hash",
                       st["update_revision"])}
    for p, (label, value) in new.items():
        assert old[p][label] != value, (p, label)
    assert st["pods"]["kubia-1"]["revision"] == old["kubia-1"][
        "__meta_kubernetes_pod_label_controller_revision_hash"]  # below the partition

    def follows():
        # a pod being replaced may be no target for a moment
        targets = active_targets(port)
        return all(p in targets and targets[p]["discoveredLabels"][label] == value
                   and scrape_time(targets[p]["lastScrape"]) > back
                   for p, (label, value) in new.items())
    wait_until(follows, FOLLOW_S, "Prometheus to scrape the new kubia-1 and kubia-2",
               interval=0.2)
    wait_series(port, sim.endpoints(), "series of every ready pod after the replacements")
    # the same series, now from new processes: their request counters started again
    resets = ('resets(kubia_http_requests_total{%s,pod=~"kubia-[12]",route="/metrics",'
              'code="200"}[5m]) >= 1' % JOB)
    wait_until(lambda: pods_with_series(port, resets) == ["kubia-1", "kubia-2"], FOLLOW_S,
               "Prometheus to see the request counters of the new pods start again",
               interval=0.2)

    # down stops it and removes its files
    pid = st["prometheus"]["pid"]
    sim.cli("down")
    assert not os.path.exists(home)
    assert not proc_is(pid, st["prometheus"])
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()


def test_bad_prometheus_options_are_refused_and_change_nothing(sim):
    base = ["up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--api-port",
            sim.api_port]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        for args, status, msg in (
                (["--prometheus-interval", "0"], 2, "--prometheus-interval: 0 s: from 0.1"),
                (["--prometheus-interval", "soon"], 2, "'soon' is not a number of seconds"),
                (["--prometheus-port", "9090"], 1, "need --prometheus"),
                (["--prometheus", "--prometheus-port", taken], 1,
                 "--prometheus-port %d: not a free port on 127.0.0.1" % taken)):
            r = sim.cli(*base, *args, check=False)
            assert r.returncode == status and msg in r.stderr, (args, r.stderr)
            assert sim.leftovers() == []
            assert not os.path.exists(os.path.join(sim.run_dir, sim.name, "state.json"))


def scrape_time(text):
    """A time of the targets API (RFC 3339, UTC) as seconds since the epoch."""
    m = re.fullmatch(r"(\d+-\d+-\d+T\d+:\d+:\d+)(\.\d+)?Z", text)
    assert m, text
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(
        m.group(2) or 0)


def proc_is(pid, ref):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and fields[19] == ref["start"]


class FakeCluster:
    """What the configuration and the targets are made of: a name, a /24, a namespace,
    pod templates by revision."""

    def __init__(self, subnet, templates):
        self.name = "t"
        self.st = {"subnet": subnet, "namespace": "default", "endpoints": ["kubia-0"],
                   "templates": templates}


def pod(ordinal, revision, port=8080):
    return {"name": "kubia-%d" % ordinal, "ordinal": ordinal, "netns": "ns-%d" % ordinal,
            "ip": "10.244.7.%d" % (10 + ordinal), "port": port, "revision": revision}


def discover(tmp_path, c, targets):
    """What Prometheus makes of the targets with kubia-sim's configuration (promtool
    runs its service discovery and relabeling): {address: labels} of those it keeps."""
    tf = tmp_path / "targets.json"
    tf.write_text(json.dumps(targets))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(prometheus.config_text(c, str(tf), SCRAPE_S))
    r = subprocess.run([PROMTOOL, "check", "service-discovery", "--timeout=2s", str(conf),
                        prometheus.JOB], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert len(found) == len(targets), r.stdout
    return {t["labels"]["__address__"]: t["labels"] for t in found if t["labels"]}


def test_the_annotations_decide_and_nothing_outside_the_cluster_is_scraped(tmp_path):
    # the pod template of the book's StatefulSet, as kubia-sim runs it (r1), and others
    s = manifests.settings(os.path.join(BASE, "kubia-statefulset-peers.yaml"))
    book = {"pod_labels": s["pod_labels"], "pod_annotations": s["pod_annotations"]}
    c = FakeCluster("10.244.7", {
        "r1": book,
        "r2": dict(book, pod_annotations={"prometheus.io/scrape": "true",
                                          "prometheus.io/port": "9102",
                                          "prometheus.io/path": "/stats"}),
        "r3": dict(book, pod_annotations={}),
        "r4": dict(book, pod_annotations={"prometheus.io/scrape": "false"})})
    ours = prometheus.target_of(c, pod(0, "r1"))
    # a target that is not an address of the cluster's /24, even one that asks to be
    # scraped, is dropped: the machine, Prometheus itself, another cluster's subnet
    outside = [{"targets": [a], "labels": ours["labels"]}
               for a in ("127.0.0.1:9090", "10.244.70.10:8080", "10.244.7.10.5:80",
                         "192.168.1.10:8080", "[::1]:8080", "localhost:8080")]
    kept = discover(tmp_path, c, [ours] + [prometheus.target_of(c, pod(o, "r%d" % (o + 1)))
                                           for o in (1, 2, 3)] + outside)
    # the book's annotations: GET /metrics on the container port; another port and path
    # are followed; a pod without prometheus.io/scrape "true" is left alone
    assert sorted(kept) == ["10.244.7.10:8080", "10.244.7.11:9102"]
    assert kept["10.244.7.10:8080"]["__metrics_path__"] == "/metrics"
    assert kept["10.244.7.10:8080"]["pod"] == "kubia-0"
    assert kept["10.244.7.10:8080"]["namespace"] == "default"
    assert kept["10.244.7.11:9102"]["__metrics_path__"] == "/stats"
