"""Prometheus (`up --prometheus`): Debian's Prometheus server scraping every pod, as a
Prometheus in a cluster scrapes the pods that carry the usual annotations
(prometheus.io/scrape, prometheus.io/port, prometheus.io/path).

A Prometheus in a cluster finds the pods through the API server (kubernetes_sd_configs,
role pod); here the cluster state is written, as Kubernetes' pod discovery would give
it, to a file that Prometheus watches (file_sd_configs): one target per pod, with the
same __meta_kubernetes_pod_* labels (annotations, labels, name, IP, readiness, ...). So
the job's relabeling is the one a cluster uses, and the manifests' annotations decide
what is scraped. The file is rewritten wherever the endpoints are published
(endpoints.publish), so it follows every pod that is created, deleted, scaled away,
replaced in a rolling update or cut off.

Prometheus runs on the host like the API server's proxy and reaches the pods the same
way, through the host's veth on the cluster's bridge; it listens on 127.0.0.1 only, on
a free port (or --prometheus-port), keeps its TSDB in the cluster's run directory, and
scrapes nothing but addresses of the cluster's /24: itself and the machine are not
targets. Everything is in <run>/prometheus/, which `down` removes.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil

from kubiatest.ports import free_port

from .network import port_free
from .processes import alive, spawn, stop_ref
from .state import STS
from .util import SimError, read_json, say, tool, wait_for, write_atomic

JOB = "kubernetes-pods"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10

# The scrape job's relabeling: what a cluster's Prometheus does with the pods it
# discovers (docs/metrics.md has the whole job for a real cluster).
RELABEL = r"""  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
    action: keep
    regex: "true"
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
    action: replace
    target_label: __metrics_path__
    regex: (.+)
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    action: replace
    regex: ([^:]+)(?::\d+)?;(\d+)
    replacement: $1:$2
    target_label: __address__
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
"""


def interval(text):
    """--prometheus-interval: seconds, at least 0.1, at most an hour."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text)
    if not 0.1 <= v <= 3600:
        raise argparse.ArgumentTypeError("%s s: from 0.1 to 3600" % text)
    return v


def add_options(p):
    """The options of `up` for Prometheus."""
    p.add_argument("--prometheus", action="store_true",
                   help="also start Prometheus (Debian's prometheus) on 127.0.0.1, scraping "
                   "every pod that the prometheus.io/* annotations of the pod template ask "
                   "for, with file service discovery that follows the pods")
    p.add_argument("--prometheus-port", type=int, default=0, metavar="PORT",
                   help="its port on 127.0.0.1 (default: a free one)")
    p.add_argument("--prometheus-interval", type=interval, default=5.0, metavar="SECONDS",
                   help="its scrape interval (default 5)")


def plan(a):
    """What `up` is to start, checked before anything is made: None without
    --prometheus."""
    if not a.prometheus:
        if a.prometheus_port or a.prometheus_interval != 5.0:
            raise SimError("--prometheus-port and --prometheus-interval need --prometheus")
        return None
    tool("prometheus")
    if a.prometheus_port and not (1 <= a.prometheus_port <= 65535
                                  and port_free("127.0.0.1", a.prometheus_port)):
        raise SimError("--prometheus-port %d: not a free port on 127.0.0.1"
                       % a.prometheus_port)
    return {"port": a.prometheus_port, "interval_s": a.prometheus_interval}


def home(c):
    return os.path.join(c.run, "prometheus")


def duration(seconds):
    return "%dms" % round(seconds * 1000)


def config_text(c, targets_file, interval_s):
    """prometheus.yml: one job, the pods of targets_file, relabeled as in a cluster, and
    then only addresses inside the cluster's /24."""
    inside = re.escape(c.st["subnet"] + ".") + r"\d+:\d+"
    return ("# written by kubia-sim: the pods of cluster %s, from %s\n"
            "global:\n"
            "  scrape_interval: %s\n"
            "  scrape_timeout: %s\n"
            "scrape_configs:\n"
            "- job_name: %s\n"
            "  file_sd_configs:\n"
            "  - files: [%s]\n"
            "  relabel_configs:\n%s"
            "  # kubia-sim's own: nothing but the cluster's addresses is scraped\n"
            "  - source_labels: [__address__]\n"
            "    action: keep\n"
            "    regex: %s\n"
            % (c.name, os.path.basename(targets_file), duration(interval_s),
               duration(min(interval_s, 10.0)), JOB, json.dumps(targets_file), RELABEL,
               json.dumps(inside)))


def label_name(key):
    """A Kubernetes label or annotation key as Kubernetes discovery names its label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def target_of(c, pod):
    """The target Kubernetes' pod discovery would give for the pod's container port."""
    st = c.st
    template = st["templates"].get(pod["revision"], {})
    meta = {
        "__meta_kubernetes_namespace": st["namespace"],
        "__meta_kubernetes_pod_name": pod["name"],
        "__meta_kubernetes_pod_uid": pod["netns"],
        "__meta_kubernetes_pod_ip": pod["ip"],
        "__meta_kubernetes_pod_ready": "true" if pod["name"] in st["endpoints"]
        and not pod.get("cut") else "false",
        "__meta_kubernetes_pod_controller_kind": "StatefulSet",
        "__meta_kubernetes_pod_controller_name": STS,
        "__meta_kubernetes_pod_container_name": STS,
        "__meta_kubernetes_pod_container_port_number": str(pod["port"]),
        "__meta_kubernetes_pod_container_port_protocol": "TCP",
    }
    # the labels a StatefulSet's controller adds to its pods, then the template's
    labels = {"controller-revision-hash": pod["revision"],
              "statefulset.kubernetes.io/pod-name": pod["name"]}
    labels.update(template.get("pod_labels") or {})
    for k, v in labels.items():
        meta["__meta_kubernetes_pod_label_" + label_name(k)] = str(v)
        meta["__meta_kubernetes_pod_labelpresent_" + label_name(k)] = "true"
    for k, v in (template.get("pod_annotations") or {}).items():
        meta["__meta_kubernetes_pod_annotation_" + label_name(k)] = str(v)
        meta["__meta_kubernetes_pod_annotationpresent_" + label_name(k)] = "true"
    return {"targets": ["%s:%d" % (pod["ip"], pod["port"])], "labels": meta}


def targets(c):
    """Every pod the API server lists (a pod being deleted has left), in order."""
    pods = sorted((p for p in c.st["pods"].values() if not p.get("terminating")),
                  key=lambda p: p["ordinal"])
    return [target_of(c, p) for p in pods]


def sync(c):
    """Rewrites the targets file from the cluster state when Prometheus is part of the
    cluster and the pods changed; called wherever the endpoints are published."""
    if not c.st or not c.st.get("prometheus_port"):
        return
    path = os.path.join(home(c), "targets.json")
    text = json.dumps(targets(c), indent=1, sort_keys=True) + "\n"
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        if f.read() == text:
            return
    write_atomic(path, text)


def api(port, path, timeout=2.0):
    """The JSON of a GET to Prometheus' API, or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return json.loads(body) if r.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def start(c, p):
    """Starts Prometheus for the cluster as plan() checked it: its files, then the
    server, once it answers on its port with its own configuration."""
    if p is None:
        return
    st = c.st
    d = home(c)
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    conf = os.path.join(d, "prometheus.yml")
    write_atomic(conf, config_text(c, os.path.join(d, "targets.json"), p["interval_s"]))
    st["prometheus_interval_s"] = p["interval_s"]
    for attempt in range(3):
        # a free port can be taken before Prometheus binds it: then another one
        port = p["port"] or free_port()
        st["prometheus_port"] = port
        sync(c)
        ref, _ = spawn([tool("prometheus"), "--config.file=" + conf,
                        "--web.listen-address=127.0.0.1:%d" % port,
                        "--storage.tsdb.path=" + os.path.join(d, "data"),
                        "--storage.tsdb.retention.time=1d"],
                       os.path.join(d, "prometheus.log"))
        st["prometheus"] = ref
        c.save()

        def ours():
            if not alive(ref):
                return "exited"
            flags = api(port, "/api/v1/status/flags")
            return flags is not None and (flags.get("data") or {}).get("config.file") == conf
        try:
            state = wait_for(ours, START_TIMEOUT_S, "Prometheus to answer on 127.0.0.1:%d"
                             % port, interval=0.05)
        except SimError as e:
            raise SimError("%s (log: %s)" % (e, os.path.join(d, "prometheus.log")))
        if state is True:
            wait_for(lambda: ready_text(port), START_TIMEOUT_S, "Prometheus to be ready")
            return
        if p["port"] or attempt == 2:
            raise SimError("Prometheus exited at start: see %s"
                           % os.path.join(d, "prometheus.log"))


def ready_text(port):
    """/-/ready answers text, not JSON: whether it says 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/-/ready")
        r = conn.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def address(c):
    """Prometheus' address, or None when the cluster has none."""
    port = (c.st or {}).get("prometheus_port")
    return "http://127.0.0.1:%d/" % port if port else None


def status_line(c):
    """The line `up` prints about Prometheus, or None without it."""
    if not address(c):
        return None
    st = c.st
    n = len(read_json(os.path.join(home(c), "targets.json"), []))
    state = "" if alive(st.get("prometheus")) else " (not running: see %s)" % os.path.join(
        home(c), "prometheus.log")
    return ("Prometheus: %s%s, scraping %d pod%s every %g s (job %s)"
            % (address(c), state, n, "" if n == 1 else "s", st["prometheus_interval_s"], JOB))


def say_try(c):
    """For `up`: where Prometheus is, and a query to try."""
    if address(c):
        say(status_line(c))
        say("  curl -G %sapi/v1/query --data-urlencode 'query=up{job=\"%s\"}'"
            % (address(c), JOB))


def stop(c):
    """Stops Prometheus and removes its files."""
    st = c.st or {}
    stop_ref(st.get("prometheus"), STOP_TIMEOUT_S)
    shutil.rmtree(home(c), ignore_errors=True)
