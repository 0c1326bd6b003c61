"""kubia-sim rollout: a new pod template (kubectl apply -f, or kubectl edit's changes on
the command line) rolled out as the StatefulSet's update strategy says, and rollout
status, which prints what `kubectl rollout status statefulset kubia` prints."""

import json
import os
import time

from .commands import check_ordinals, print_pods
from .controller import (converge, create_pod, delete_pod, healthy, hold_pending, pod_name,
                         sync_revisions, wait_healthy, wait_ready, wanted)
from .endpoints import publish, sts_status
from .state import STS, revision_of
from .templates import controller_of, override, read_manifest, template_of
from .util import SimError, say

# kubectl apply may change these fields of a StatefulSet's spec, and no others
MUTABLE = ("partition", "update_strategy", "when_deleted", "when_scaled", "min_ready_s",
           "ordinals_start", "history_limit")


def cmd_rollout(c, a):
    if a.action == "status":
        raise SimError("rollout status runs without the lock")  # cli dispatches it
    st = c.require_up()
    binary = None
    if a.binary:
        binary = os.path.abspath(a.binary)
        if not os.access(binary, os.X_OK):
            raise SimError("no binary at %s" % binary)
    if a.partition is not None and a.partition < 0:
        raise SimError("--partition %d: 0 or more" % a.partition)
    template, replicas, ctl = rollout_template(c, a, binary)
    partition = ctl["partition"] if a.partition is None else a.partition
    changed = [k for k in ("pod_management_policy",) if ctl[k] != st["controller"][k]]
    if changed:
        raise SimError("StatefulSet.apps \"%s\" is invalid: spec: Forbidden: updates to "
                       "statefulset spec for fields other than 'replicas', 'ordinals', "
                       "'template', 'updateStrategy', 'revisionHistoryLimit', "
                       "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                       "forbidden (podManagementPolicy)" % STS)
    rev = revision_of(template)
    for k in MUTABLE:
        if k != "partition":
            st["controller"][k] = ctl[k]
    st["partition"] = partition
    record_revision(c, rev, template)
    say("statefulset.apps/%s: update revision %s, partition %d" % (STS, rev, partition))
    if replicas != st["replicas"] or [p for p in st["pods"].values()
                                      if p["ordinal"] < ctl["ordinals_start"]]:
        st["replicas"] = replicas
        c.save()
        say("statefulset.apps/%s: replicas %d from ordinal %d"
            % (STS, replicas, ctl["ordinals_start"]))
    converge(c)
    roll_out(c, rev, partition)
    print_pods(c)


def rollout_template(c, a, binary):
    """(template, replicas, controller settings) of the update: from the manifest given
    with -f, else the current update revision's template with the command line's
    changes and the current settings."""
    st = c.st
    cur = st["templates"][st["update_revision"]]
    replicas = st["replicas"]
    ctl = dict(st["controller"], partition=st["partition"])
    if a.file:
        # kubectl apply -f: the whole pod template, the replica count and the
        # controller's settings from the file; what only this simulation knows (runtime,
        # binary) carries over.
        source, s = read_manifest(a.file)
        ctl = controller_of(source, s)
        base_t = {k: cur[k] for k in ("runtime", "binary") if k in cur}
        template = template_of(source, s, base_t, a)
        replicas = s["replicas"]
        check_ordinals(replicas, ctl["ordinals_start"])
        st["source"] = source
    else:
        template = json.loads(json.dumps(cur))
        override(template, a)
    if binary:
        if template.get("runtime") == "podman":
            raise SimError("--binary: the pods run the image (use --image)")
        template["binary"] = binary
    return template, replicas, ctl


def status_message(c):
    """(done, message) as kubectl's StatefulSet status viewer says it."""
    st = c.st
    if st["controller"]["update_strategy"] != "RollingUpdate":
        raise SimError("rollout status is only available for RollingUpdate strategy type")
    s = sts_status(c)
    replicas, partition = st["replicas"], st["partition"]
    if s["readyReplicas"] < replicas:
        return False, "Waiting for %d pods to be ready..." % (replicas - s["readyReplicas"])
    if partition > 0:
        if s["updatedReplicas"] < replicas - partition:
            return False, ("Waiting for partitioned roll out to finish: %d out of %d new pods "
                           "have been updated..." % (s["updatedReplicas"], replicas - partition))
        return True, ("partitioned roll out complete: %d new pods have been updated..."
                      % s["updatedReplicas"])
    if s["updateRevision"] != s["currentRevision"]:
        return False, ("waiting for statefulset rolling update to complete %d pods at "
                       "revision %s..." % (s["updatedReplicas"], s["updateRevision"]))
    return True, ("statefulset rolling update complete %d pods at revision %s..."
                  % (s["currentReplicas"], s["currentRevision"]))


def cmd_rollout_status(c, a):
    """Prints each new message until the rollout is done (or only the first, with
    --watch false); each look at the cluster takes its lock for a moment only."""
    if a.target not in ([], ["statefulset", STS], ["statefulset/" + STS], ["sts", STS]):
        raise SimError("rollout status: the StatefulSet is %s (rollout status statefulset "
                       "%s)" % (STS, STS))
    deadline = time.monotonic() + a.timeout
    last = None
    while True:
        with c.locked():
            c.require_up()
            done, msg = status_message(c)
        if msg != last:
            say(msg)
            last = msg
        if done or not a.watch:
            return 0
        if time.monotonic() >= deadline:
            raise SimError("timed out waiting for the condition")
        time.sleep(0.1)


def record_revision(c, rev, template):
    """A template applied: its revision becomes the update revision (an older template
    applied again is its old revision: a roll-back)."""
    st = c.st
    st["templates"][rev] = template
    history = st.setdefault("history", [st["current_revision"]])
    if rev in history:
        history.remove(rev)
    history.append(rev)
    st["update_revision"] = rev
    c.save()


def roll_out(c, rev, partition):
    """The rolling update to revision rev: every pod at or above the partition that runs
    another revision is replaced, highest ordinal first, each only once it is ready and
    the next only once its replacement is. OnDelete replaces none."""
    st = c.st
    if st["controller"]["update_strategy"] == "OnDelete":
        say("updateStrategy OnDelete: each pod gets revision %s when it is deleted" % rev)
        sync_revisions(c)
        return
    start = st["controller"]["ordinals_start"]
    for o in reversed(wanted(st)):
        name = pod_name(o)
        pod = st["pods"].get(name)
        if o < start + partition:
            say("%s stays at %s (below the partition)" % (name, pod["revision"] if pod else "-"))
            continue
        if pod is not None and pod["revision"] == rev:
            continue
        if pod is None and name in st.get("pending", []):
            say("rolling update: %s stays Pending and the update waits for it" % name)
            break
        if pod is not None:
            # a pod is replaced only once every pod is ready
            for p in sorted(st["pods"].values(), key=lambda p: -p["ordinal"]):
                if not healthy(c, p):
                    wait_healthy(c, p, "the rolling update of %s" % name)
            say("rolling update: replacing %s (%s -> %s)" % (name, pod["revision"], rev))
            delete_pod(c, name)
        if not hold_pending(c, [o], False, more=True):
            say("rolling update: %s stays Pending and the update waits for it" % name)
            break
        wait_ready(c, create_pod(c, o))
        publish(c)
    sync_revisions(c)
