"""The cluster's state and the names that follow from it.

The runtime state (pods, pod templates, the processes of DNS and of the proxy) is
<run>/<cluster>/state.json, rewritten whole under a lock held for a whole command; the
claims are directories under <data>/<cluster>/volumes, kept across `down`.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re

from .util import SimError, read_json, write_atomic

STS = "kubia"  # the StatefulSet, its pods' prefix and its governing (headless) Service
PUBLIC = "kubia-public"
MAX_ORDINALS = 200  # pods get .10 .. .209 of the /24


class Cluster:
    """One simulated cluster: where its state, volumes and lock are, the names of its
    namespaces and interfaces, its addresses; st is its state while the lock is held
    (None when the cluster is not up)."""

    def __init__(self, name, run_root, data_root, launcher):
        if not re.fullmatch(r"[a-z0-9]{1,10}", name):
            raise SimError("cluster name %r: use 1 to 10 lower-case letters and digits" % name)
        self.name = name
        self.run = os.path.join(run_root, name)
        self.volumes = os.path.join(data_root, name, "volumes")
        self.statefile = os.path.join(self.run, "state.json")
        self.lockfile = os.path.join(run_root, name + ".lock")
        self.prefix = "ksim-%s-" % name
        self.net = self.prefix + "net"
        self.host_if = "ksim-" + name
        self.launcher = launcher  # the kubia-sim command: the kubelets are started with it
        self.st = None

    @contextlib.contextmanager
    def locked(self):
        os.makedirs(os.path.dirname(self.lockfile), exist_ok=True)
        with open(self.lockfile, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self.st = read_json(self.statefile)
            yield self

    @contextlib.contextmanager
    def try_locked(self):
        """The lock if no command holds it (yields True; st is then read), else False;
        None when the run directory is gone (the cluster with it)."""
        if not os.path.exists(os.path.dirname(self.lockfile)):
            yield None
            return
        with open(self.lockfile, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            self.st = read_json(self.statefile)
            yield True

    def save(self):
        write_atomic(self.statefile, json.dumps(self.st, indent=1, sort_keys=True))

    def require_up(self):
        if self.st is None:
            raise SimError("cluster %r is not up (start it with: kubia-sim up)" % self.name)
        return self.st

    # addresses --------------------------------------------------------------------
    def addr(self, host):
        return "%s.%d" % (self.st["subnet"], host)

    @property
    def dns_ip(self):
        return self.addr(1)

    @property
    def host_ip(self):
        return self.addr(254)

    def domain(self):
        return "%s.%s.svc.cluster.local" % (STS, self.st["namespace"])

    def pod_fqdn(self, name):
        return "%s.%s" % (name, self.domain())

    def volume(self, ordinal):
        return os.path.join(self.volumes, "data-%s-%d" % (STS, ordinal))


def ordinal_of(name):
    if not name.startswith(STS + "-") or not name[len(STS) + 1:].isdigit():
        raise SimError("no pod %r: pods are named %s-0, %s-1, ..." % (name, STS, STS))
    return int(name[len(STS) + 1:])


def revision_of(template):
    h = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "%s-%s" % (STS, h[:10])
