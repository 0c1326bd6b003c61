"""The rolling update: a new pod template that came through the API (kubectl apply,
edit, patch) recorded as the update revision and rolled out as the StatefulSet's update
strategy says."""

from .controller import (create_pod, delete_pod, healthy, hold_pending, pod_name,
                         sync_revisions, wait_healthy, wait_ready, wanted)
from .endpoints import publish
from .util import say


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
