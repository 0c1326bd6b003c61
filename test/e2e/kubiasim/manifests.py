"""What kubia's Kubernetes manifests (k8s/) say, for code that runs kubia the way they do.

The port, the probes' paths, the environment, the volume's mount path, the grace period,
the image and the governing Service are read from the manifests, so a harness that
plays the cluster takes them from there instead of repeating them:

    from kubiasim import manifests
    s = manifests.settings()                      # kubectl kustomize k8s/
    s = manifests.settings("k8s/overlays/kind")   # any kustomization: rendered first
    s = manifests.settings("k8s/base/kubia-statefulset.yaml")
    s["container_port"], s["env"]["KUBIA_MODE"], s["readiness_path"], ...

k8s/ is the default deployment (a kustomization of k8s/base/, where the chapter's files
are, under the book's names); k8s/overlays/<target>/ build on the same base.

YAML is read with PyYAML (Debian's python3-yaml) when it is installed, as YAML 1.1 like
Kubernetes itself; without it, kubectl converts the documents to JSON locally
(`kubectl annotate --local`, which needs no cluster). Rendering a kustomization needs
kubectl in any case. Standard library otherwise.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess

# the repository (this file is test/e2e/kubiasim/manifests.py)
TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", ".."))
K8S_DIR = os.path.join(TOP, "k8s")
BASE_DIR = os.path.join(K8S_DIR, "base")
# The governing Service the chapter creates before the StatefulSet.
HEADLESS_SERVICE = os.path.join(BASE_DIR, "kubia-service-headless.yaml")
TIMEOUT_S = 120


class ManifestError(ValueError):
    """The manifests cannot be read, or do not hold what kubia's deployment needs."""


def kubectl():
    """The kubectl to run: $KUBECTL, else the one on PATH, else None."""
    return os.environ.get("KUBECTL") or shutil.which("kubectl")


def have_pyyaml():
    return importlib.util.find_spec("yaml") is not None


def _run_kubectl(args, stdin=None):
    exe = kubectl()
    if exe is None:
        raise ManifestError("kubectl is not installed")
    r = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    if r.returncode != 0:
        raise ManifestError("kubectl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                         r.stderr.strip()))
    return r.stdout


def render(directory=K8S_DIR):
    """The YAML that `kubectl kustomize DIRECTORY` renders."""
    return _run_kubectl(["kustomize", directory])


def _expand_lists(docs):
    out = []
    for doc in docs:
        if doc is None:
            continue  # an empty document
        if not isinstance(doc, dict):
            raise ManifestError("a YAML document is not a mapping: %r" % (doc,))
        if doc.get("apiVersion") == "v1" and doc.get("kind") == "List":
            out.extend(_expand_lists(doc.get("items") or []))
        else:
            out.append(doc)
    return out


def _parse_pyyaml(text):
    import yaml
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError("not valid YAML: %s" % e) from None


def _parse_kubectl(text):
    # annotate --local with the removal of an annotation nobody sets changes nothing but
    # prints every object (Lists expanded) as JSON, one after the other.
    out = _run_kubectl(["annotate", "--local", "-f", "-", "-o", "json",
                        "kubia.example/unused-"], stdin=text)
    decoder = json.JSONDecoder()
    docs, pos = [], 0
    while True:
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos == len(out):
            break
        doc, pos = decoder.raw_decode(out, pos)
        # The annotation map that kubectl adds to objects that had none.
        meta = doc.get("metadata")
        if isinstance(meta, dict) and meta.get("annotations") == {}:
            del meta["annotations"]
        docs.append(doc)
    return docs


def parse(text, parser=None):
    """Every object in the YAML documents of text, the items of a List one by one.

    parser: "pyyaml" or "kubectl"; by default PyYAML when it is installed."""
    if parser is None:
        parser = "pyyaml" if have_pyyaml() else "kubectl"
    if parser == "pyyaml":
        docs = _parse_pyyaml(text)
    elif parser == "kubectl":
        docs = _parse_kubectl(text)
    else:
        raise ValueError("unknown parser %r" % (parser,))
    return _expand_lists(docs)


def load(source=None, parser=None):
    """The objects of a manifest file, or of a kustomization directory rendered.

    source: a file, a directory with a kustomization.yaml, or None for k8s/."""
    if source is None:
        source = K8S_DIR
    if os.path.isdir(source):
        text = render(source)
    else:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    return parse(text, parser)


def find(objects, kind, name=None):
    """The objects of a kind (and name), in order."""
    return [o for o in objects if o.get("kind") == kind
            and (name is None or (o.get("metadata") or {}).get("name") == name)]


def resolve_port(port, container):
    """A Service's or probe's port (a number or a name) as the container's port number."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise ManifestError("container %s has no port named %r" % (container.get("name"), port))


def service_ports(svc, container):
    """The ports of a headless Service as cluster DNS publishes them for a pod of the
    container: [{"name", "protocol", "port"}], port being the endpoint's port (the
    targetPort, resolved against the container's ports), protocol in lower case as in
    an SRV name (_http._tcp). name is "" for an unnamed port."""
    out = []
    for sp in svc["spec"].get("ports") or []:
        # Without a targetPort, Kubernetes targets the Service's own port number.
        out.append({"name": sp.get("name") or "",
                    "protocol": (sp.get("protocol") or "TCP").lower(),
                    "port": resolve_port(sp.get("targetPort", sp["port"]), container)})
    return out


def _one(objects, kind, what):
    found = find(objects, kind)
    if len(found) != 1:
        raise ManifestError("expected one %s in %s, found %d" % (kind, what, len(found)))
    return found[0]


def _http_path(container, probe):
    p = _http_probe(container, probe)
    return p["path"] if p else None


def _http_probe(container, probe):
    """An HTTP GET probe with Kubernetes' defaults filled in, or None without one."""
    p = container.get(probe)
    if not p:
        return None
    get = p.get("httpGet")
    if not get:
        raise ManifestError("the %s of container %s is not an HTTP GET" %
                            (probe, container.get("name")))
    if get.get("scheme", "HTTP") != "HTTP":
        raise ManifestError("the %s of container %s uses %s; kubia speaks HTTP" %
                            (probe, container.get("name"), get["scheme"]))
    if "port" not in get:
        raise ManifestError("the %s of container %s has no port" %
                            (probe, container.get("name")))
    return {
        "path": get.get("path", "/"),
        "port": resolve_port(get["port"], container),
        "initial_delay_s": p.get("initialDelaySeconds", 0),
        "period_s": p.get("periodSeconds", 10),
        "timeout_s": p.get("timeoutSeconds", 1),
        "failure_threshold": p.get("failureThreshold", 3),
    }


def _pre_stop_sleep(container):
    """Seconds of the container's preStop sleep action (0 without a preStop hook)."""
    hook = (container.get("lifecycle") or {}).get("preStop")
    if not hook:
        return 0
    if set(hook) != {"sleep"}:
        raise ManifestError("the preStop hook of container %s is %s; only the sleep action "
                            "runs without a shell in the image" %
                            (container.get("name"), ", ".join(sorted(hook))))
    seconds = hook["sleep"].get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ManifestError("the preStop sleep of container %s is %r seconds; give a whole "
                            "number of seconds, 0 or more" % (container.get("name"), seconds))
    return seconds


_SUFFIXES = {"": 1, "m": 10**-3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(q):
    """A Kubernetes quantity ("64Mi", "50m", "0.5", 1, "1e3") as a number: bytes for
    memory, cores for CPU."""
    if isinstance(q, bool) or not isinstance(q, (int, float, str)):
        raise ManifestError("quantity %r is not a number or a string" % (q,))
    if not isinstance(q, str):
        return q
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and q.endswith(suffix):
            number = q[:-len(suffix)]
            break
    else:
        suffix, number = "", q
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", number):
        raise ManifestError("quantity %r is not a Kubernetes quantity" % q)
    if "e" in number.lower() and suffix:
        raise ManifestError("quantity %r has both an exponent and a suffix" % q)
    return float(number) * _SUFFIXES[suffix]


def _resources(container):
    """requests and limits: cpu in cores and memory in bytes (absent ones left out)."""
    res = container.get("resources") or {}
    out = {}
    for kind in ("requests", "limits"):
        out[kind] = {k: quantity(v) for k, v in (res.get(kind) or {}).items()
                     if k in ("cpu", "memory")}
    return out


def _security(pod, container):
    """The pod's and the container's securityContext, the container's taking precedence."""
    ps = pod.get("securityContext") or {}
    cs = container.get("securityContext") or {}
    caps = cs.get("capabilities") or {}
    return {
        "run_as_user": cs.get("runAsUser", ps.get("runAsUser")),
        "run_as_group": cs.get("runAsGroup", ps.get("runAsGroup")),
        "run_as_non_root": cs.get("runAsNonRoot", ps.get("runAsNonRoot", False)),
        "fs_group": ps.get("fsGroup"),
        "read_only_root_filesystem": cs.get("readOnlyRootFilesystem", False),
        "allow_privilege_escalation": cs.get("allowPrivilegeEscalation", True),
        "capabilities_drop": list(caps.get("drop") or []),
        "capabilities_add": list(caps.get("add") or []),
    }


def settings(source=None, parser=None, services=None, controller=False):
    """What the manifests say about running kubia, as a dict:

    statefulset_name, replicas, service_name (the StatefulSet's governing Service),
    image, container_port (the port named http, else the first), readiness_path and
    liveness_path (None without that probe), env (name -> value; None for a value
    taken from elsewhere with valueFrom), volume_mount_path (where the claim "data" is
    mounted), termination_grace_period_seconds (Kubernetes' default 30 when unset),
    pre_stop_sleep_seconds (the container's lifecycle.preStop.sleep, 0 without one),
    headless_service_port and headless_service_target_port: the governing Service's
    (first) port and the container port it targets, a number (None when there is no
    such headless Service). The target port is what cluster DNS puts in the SRV records.
    headless_service_ports: every port of that Service as service_ports() gives them
    (None without the Service).
    readiness_probe and liveness_probe: path, port (a number), initial_delay_s,
    period_s, timeout_s and failure_threshold, Kubernetes' defaults filled in (None
    without that probe). command and args: the container's, lists (None when unset).
    security: run_as_user, run_as_group, run_as_non_root, fs_group,
    read_only_root_filesystem, allow_privilege_escalation, capabilities_drop and
    capabilities_add, from the pod's and the container's securityContext.
    resources: requests and limits, each {"cpu": cores, "memory": bytes} as given.
    pod_labels and pod_annotations: the pod template's metadata (empty when unset).
    pod_spec: the pod template's spec as given (spec.template.spec).
    With controller=True, also statefulset: what the StatefulSet's spec asks of its
    controller, Kubernetes' defaults filled in (see controller_settings()).

    services: a manifest whose Services exist before the source's objects, as the
    chapter creates kubia-service-headless.yaml before the StatefulSet; a Service of the
    same name in source takes their place.
    """
    what = source or "k8s/"
    objects = load(source, parser)
    if services is not None:
        own = {(o.get("metadata") or {}).get("name") for o in find(objects, "Service")}
        objects += [o for o in find(load(services, parser), "Service")
                    if (o.get("metadata") or {}).get("name") not in own]
    sts = _one(objects, "StatefulSet", what)
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_meta = spec["template"].get("metadata") or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        raise ManifestError("expected one container in StatefulSet %s, found %d" %
                            (sts["metadata"]["name"], len(containers)))
    c = containers[0]
    ports = c.get("ports") or []
    if not ports:
        raise ManifestError("container %s declares no port" % c.get("name"))
    http = [p for p in ports if p.get("name") == "http"]
    container_port = (http or ports)[0]["containerPort"]

    mounts = [m for m in c.get("volumeMounts") or [] if m.get("name") == "data"]
    env = {e["name"]: e.get("value") if "valueFrom" not in e else None
           for e in c.get("env") or []}

    service_name = spec.get("serviceName")
    headless_port = headless_target = headless_ports = None
    for svc in find(objects, "Service", service_name):
        if svc["spec"].get("clusterIP") != "None":
            raise ManifestError("Service %s governs StatefulSet %s but is not headless" %
                                (service_name, sts["metadata"]["name"]))
        headless_ports = service_ports(svc, c)
        if headless_ports:
            headless_port = svc["spec"]["ports"][0]["port"]
            headless_target = headless_ports[0]["port"]

    out = {
        "statefulset_name": sts["metadata"]["name"],
        "replicas": spec.get("replicas", 1),
        "service_name": service_name,
        "image": c.get("image"),
        "container_port": container_port,
        "readiness_path": _http_path(c, "readinessProbe"),
        "liveness_path": _http_path(c, "livenessProbe"),
        "readiness_probe": _http_probe(c, "readinessProbe"),
        "liveness_probe": _http_probe(c, "livenessProbe"),
        "command": c.get("command"),
        "args": c.get("args"),
        "security": _security(pod, c),
        "resources": _resources(c),
        "env": env,
        "pod_labels": dict(pod_meta.get("labels") or {}),
        "pod_annotations": dict(pod_meta.get("annotations") or {}),
        "pod_spec": pod,
        "volume_mount_path": mounts[0]["mountPath"] if mounts else None,
        "termination_grace_period_seconds": pod.get("terminationGracePeriodSeconds", 30),
        "pre_stop_sleep_seconds": _pre_stop_sleep(c),
        "headless_service_port": headless_port,
        "headless_service_target_port": headless_target,
        "headless_service_ports": headless_ports,
    }
    if controller:
        out["statefulset"] = controller_settings(spec)
        out["statefulset"]["readiness_success_threshold"] = (
            c.get("readinessProbe") or {}).get("successThreshold", 1)
    return out


def controller_settings(spec):
    """The StatefulSet spec's settings for its controller, Kubernetes' defaults filled in:
    fields (the spec's field names, as given), pod_management_policy, update_strategy
    (its type), partition, rolling_update (the rollingUpdate fields given),
    when_deleted and when_scaled (the claims' retention), min_ready_seconds,
    ordinals_start and revision_history_limit."""
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    return {
        "fields": sorted(spec),
        "pod_management_policy": spec.get("podManagementPolicy", "OrderedReady"),
        "update_strategy": strategy.get("type", "RollingUpdate"),
        "rolling_update": sorted(rolling),
        "partition": rolling.get("partition", 0),
        "when_deleted": retention.get("whenDeleted", "Retain"),
        "when_scaled": retention.get("whenScaled", "Retain"),
        "min_ready_seconds": spec.get("minReadySeconds", 0),
        "ordinals_start": (spec.get("ordinals") or {}).get("start", 0),
        "revision_history_limit": spec.get("revisionHistoryLimit", 10),
    }
