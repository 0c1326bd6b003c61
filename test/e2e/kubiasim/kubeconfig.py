"""The kubeconfig entries of a cluster, so that kubectl works in the same shell with no
flags, as after `kind create cluster` or `minikube start`: `up` adds cluster, user and
context kubia-sim-<cluster> to the file kubectl reads (the first of $KUBECONFIG, else
~/.kube/config, of the user who ran sudo when kubia-sim runs under sudo: theirs is the
shell kubectl is typed in) and makes the context current; `down` removes them and makes the
context current again that was current before (when it still exists)."""

import os
import pwd

from .util import SimError, write_atomic


def path():
    env = os.environ.get("KUBECONFIG")
    if env:
        first = [p for p in env.split(os.pathsep) if p]
        if first:
            return first[0]
    return os.path.join(home_user()[0], ".kube", "config")


def home_user():
    """(home directory, uid, gid) of the user whose kubeconfig it is."""
    user = os.environ.get("SUDO_USER")
    if user:
        try:
            pw = pwd.getpwnam(user)
            return pw.pw_dir, pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    return os.path.expanduser("~"), os.getuid(), os.getgid()


def _load(p):
    import yaml
    try:
        with open(p) as f:
            doc = yaml.safe_load(f.read())
    except FileNotFoundError:
        doc = None
    except (OSError, yaml.YAMLError) as e:
        raise SimError("kubeconfig %s: %s" % (p, e))
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SimError("kubeconfig %s is not a kubeconfig (not a mapping)" % p)
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    doc.setdefault("preferences", {})
    for k in ("clusters", "users", "contexts"):
        if doc.get(k) is None:
            doc[k] = []
    return doc


def _save(p, doc):
    import yaml
    d = os.path.dirname(os.path.abspath(p))
    made = not os.path.isdir(d)
    os.makedirs(d, exist_ok=True)
    write_atomic(p, yaml.safe_dump(doc, default_flow_style=False, sort_keys=False))
    os.chmod(p, 0o600)
    if not os.environ.get("KUBECONFIG"):
        _, uid, gid = home_user()
        if made:
            os.chown(d, uid, gid)
        os.chown(p, uid, gid)


def _put(items, name, key, value):
    items[:] = [i for i in items if i.get("name") != name]
    items.append({"name": name, key: value})


def context_name(cluster):
    return "kubia-sim-%s" % cluster


def add(cluster, port, namespace):
    """Adds the cluster's entries and makes its context current; returns what `down`
    needs to undo it (the file, the previous current context)."""
    p = path()
    doc = _load(p)
    name = context_name(cluster)
    previous = doc.get("current-context") or ""
    if previous == name:
        previous = ""
    _put(doc["clusters"], name, "cluster", {"server": "http://127.0.0.1:%d" % port})
    _put(doc["users"], name, "user", {})
    _put(doc["contexts"], name, "context", {"cluster": name, "user": name,
                                            "namespace": namespace})
    doc["current-context"] = name
    _save(p, doc)
    return {"path": p, "previous": previous, "context": name}


def remove(saved):
    """Removes the entries add() made and restores the previous current context."""
    if not saved:
        return
    p = saved["path"]
    if not os.path.exists(p):
        return
    doc = _load(p)
    name = saved["context"]
    for k in ("clusters", "users", "contexts"):
        doc[k] = [i for i in doc[k] if i.get("name") != name]
    if doc.get("current-context") == name:
        prev = saved.get("previous") or ""
        doc["current-context"] = prev if any(c.get("name") == prev
                                             for c in doc["contexts"]) else ""
    _save(p, doc)
