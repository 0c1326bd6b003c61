"""The pod template: what the StatefulSet's manifest asks of each pod (as manifests.py
reads it), checked for what kubia-sim can run, with the command line's changes."""

import os
import subprocess

from . import manifests, podspec
from .containers import PODMAN_FLAGS
from .state import STS
from .util import SimError, sh, tool


def read_manifest(source):
    """(source, settings) of the StatefulSet in a manifest file or a kustomization
    directory (k8s/ by default), through the image suite's reader of k8s/. Without a
    governing Service of its own, the source is read as the chapter deploys it: after
    kubia-service-headless.yaml."""
    source = os.path.abspath(source or manifests.K8S_DIR)
    if not os.path.exists(source):
        raise SimError("-f %s: no such file or directory" % source)
    try:
        return source, manifests.settings(source, services=manifests.HEADLESS_SERVICE,
                                          controller=True)
    except (manifests.ManifestError, OSError, subprocess.SubprocessError) as e:
        raise SimError("-f %s: %s" % (source, e))
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise SimError("-f %s: not a StatefulSet kubia-sim can run (%s: %s)"
                       % (source, type(e).__name__, e))


def template_of(source, s, base, a):
    """The pod template that the manifest's settings s describe, on top of base (the
    runtime and binary), with the command line's overrides in a."""
    where = "-f %s" % source
    if s["statefulset_name"] != STS or s["service_name"] != STS:
        raise SimError("%s: the StatefulSet is %r with serviceName %r; kubia-sim plays "
                       "the chapter's, %r governed by the headless Service %r"
                       % (where, s["statefulset_name"], s["service_name"], STS, STS))
    podspec.check_pod(where, s["pod_spec"])
    try:
        init = podspec.init_containers(where, s["pod_spec"], base.get("runtime"))
    except manifests.ManifestError as e:
        raise SimError("%s: %s" % (where, e))
    if s["command"]:
        raise SimError("%s: the container sets command; kubia-sim runs kubia itself "
                       "(give arguments with args)" % where)
    if s["readiness_probe"] is None:
        raise SimError("%s: the container has no readinessProbe; kubia-sim publishes a "
                       "pod when its readiness probe passes" % where)
    if s["volume_mount_path"] is None:
        raise SimError("%s: the container mounts no volume named data (the claim "
                       "template's); its data would not outlive the pod" % where)
    from_elsewhere = sorted(k for k, v in s["env"].items() if v is None)
    if from_elsewhere:
        raise SimError("%s: env %s uses valueFrom, which kubia-sim does not resolve"
                       % (where, ", ".join(from_elsewhere)))
    for probe_name in ("readiness_probe", "liveness_probe"):
        p = s[probe_name]
        if p and p["port"] != s["container_port"]:
            raise SimError("%s: the %s asks port %d, but kubia listens on containerPort "
                           "%d" % (where, probe_name.replace("_", " "), p["port"],
                                   s["container_port"]))
    srv_ports = s["headless_service_ports"] or [
        {"name": "", "protocol": "tcp", "port": s["container_port"]}]
    template = dict(base)
    template.update(
        port=s["container_port"],
        srv_port=srv_ports[0]["port"], srv_ports=srv_ports,
        readiness=dict(s["readiness_probe"], success_threshold=s["statefulset"][
            "readiness_success_threshold"]), liveness=s["liveness_probe"],
        mount_path=s["volume_mount_path"], env=dict(s["env"]), args=list(s["args"] or []),
        grace_s=s["termination_grace_period_seconds"],
        pre_stop_s=s["pre_stop_sleep_seconds"], security=s["security"],
        resources=s["resources"], pod_labels=s["pod_labels"],
        pod_annotations=s["pod_annotations"], init_containers=init,
        node_selector=dict(s["pod_spec"].get("nodeSelector") or {}),
        seccomp=podspec.seccomp(s["pod_spec"], s["pod_spec"]["containers"][0]),
        fs_group_change=(s["pod_spec"].get("securityContext") or {}).get(
            "fsGroupChangePolicy", "Always"))
    if template.get("runtime") == "podman":
        template["image"] = s["image"]
        sec = s["security"]
        if sec["run_as_user"] is not None:
            template["user"] = "%d:%d" % (sec["run_as_user"], sec["run_as_group"]
                                          if sec["run_as_group"] is not None else 0)
    override(template, a)
    if not os.path.isabs(template["mount_path"]):
        raise SimError("%s: mountPath %s is not absolute" % (where, template["mount_path"]))
    mount = os.path.normpath(template["mount_path"])
    if template.get("runtime") != "podman" and not mount.startswith("/var/"):
        raise SimError("%s: the volume's mountPath %s is outside /var; a pod of the "
                       "process runtime has a private /var only (use --runtime podman)"
                       % (where, template["mount_path"]))
    return template


def override(template, a):
    """The command line's changes to a pod template (then checks its image)."""
    _override(template, a)
    if template.get("runtime") == "podman":
        r = sh(tool("podman"), *PODMAN_FLAGS, "image", "exists", template["image"], check=False)
        if r.returncode != 0:
            # the kubelet would pull it; kubia-sim has no registry to pull from
            raise SimError("image %s is not on this machine (ErrImagePull): build it with "
                           "podman build -f docker/Dockerfile -t %s ., or give --image"
                           % (template["image"], template["image"]))
        for ic in template.get("init_containers") or []:
            r = sh(tool("podman"), *PODMAN_FLAGS, "image", "exists", ic["image"] or "",
                   check=False)
            if r.returncode != 0:
                raise SimError("image %s of init container %s is not on this machine "
                               "(ErrImagePull): pull it with podman pull %s first"
                               % (ic["image"], ic["name"], ic["image"]))


def _override(template, a):
    if getattr(a, "mode", None):
        template["env"]["KUBIA_MODE"] = a.mode
    template["env"].update(parse_env(a.env))
    if a.arg is not None:
        template["args"] = a.arg
    if getattr(a, "grace_period", None) is not None:
        if a.grace_period < 0:
            raise SimError("--grace-period %g: 0 or more" % a.grace_period)
        template["grace_s"] = a.grace_period
    if template.get("runtime") == "podman":
        if getattr(a, "image", None):
            template["image"] = a.image
        if getattr(a, "user", None):
            template["user"] = a.user
    elif getattr(a, "image", None) or getattr(a, "user", None):
        raise SimError("--image and --user are for --runtime podman")


def parse_env(pairs):
    env = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise SimError("--env %s: give NAME=VALUE" % p)
        env[k] = v
    return env


# The StatefulSet spec fields kubia-sim honours; a manifest with any other is refused.
SPEC_FIELDS = ("serviceName", "replicas", "selector", "template", "volumeClaimTemplates",
               "podManagementPolicy", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
               "minReadySeconds", "ordinals", "revisionHistoryLimit")


def controller_of(source, s):
    """What the StatefulSet's spec asks of the controller (manifests.controller_settings),
    once kubia-sim can honour all of it: a field it does not implement is refused."""
    where = "-f %s" % source
    sts = s["statefulset"]
    unknown = [f for f in sts["fields"] if f not in SPEC_FIELDS]
    if unknown:
        raise SimError("%s: the StatefulSet sets %s, which kubia-sim does not implement "
                       "(it honours %s)" % (where, ", ".join(unknown), ", ".join(SPEC_FIELDS)))

    def choice(what, value, allowed):
        if value not in allowed:
            raise SimError("%s: %s %r: kubia-sim implements %s" % (
                where, what, value, " and ".join(allowed)))
        return value

    def count(what, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SimError("%s: %s %r: give a whole number, 0 or more" % (where, what, value))
        return value
    extra = [f for f in sts["rolling_update"] if f != "partition"]
    if extra:
        raise SimError("%s: updateStrategy.rollingUpdate.%s: kubia-sim implements only "
                       "partition (pods are replaced one at a time)" % (where, extra[0]))
    if sts["update_strategy"] == "OnDelete" and sts["rolling_update"]:
        raise SimError("%s: updateStrategy.rollingUpdate is only for type RollingUpdate"
                       % where)
    return {
        "pod_management_policy": choice("podManagementPolicy", sts["pod_management_policy"],
                                        ("OrderedReady", "Parallel")),
        "update_strategy": choice("updateStrategy.type", sts["update_strategy"],
                                  ("RollingUpdate", "OnDelete")),
        "partition": count("updateStrategy.rollingUpdate.partition", sts["partition"]),
        "when_deleted": choice("persistentVolumeClaimRetentionPolicy.whenDeleted",
                               sts["when_deleted"], ("Retain", "Delete")),
        "when_scaled": choice("persistentVolumeClaimRetentionPolicy.whenScaled",
                              sts["when_scaled"], ("Retain", "Delete")),
        "min_ready_s": count("minReadySeconds", sts["min_ready_seconds"]),
        "ordinals_start": count("ordinals.start", sts["ordinals_start"]),
        "history_limit": count("revisionHistoryLimit", sts["revision_history_limit"]),
    }
