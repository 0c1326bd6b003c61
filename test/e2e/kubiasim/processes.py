"""The processes kubia-sim starts (kubelets, dnsmasq, nginx, containers), named by PID and
start time, so that a PID the kernel has reused since is never signalled."""

import contextlib
import os
import signal
import subprocess

from .util import SimError, wait_for


def proc_start(pid):
    """Start time of a live (non-zombie) process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def ref_of(pid):
    return {"pid": pid, "start": proc_start(pid)}


def alive(ref):
    return bool(ref) and ref.get("start") is not None and proc_start(ref["pid"]) == ref["start"]


def signal_ref(ref, sig):
    if alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref["pid"], sig)


def stop_ref(ref, timeout):
    """SIGTERM, wait up to timeout s, then SIGKILL; returns once the process is gone."""
    if not alive(ref):
        return
    signal_ref(ref, signal.SIGTERM)
    try:
        wait_for(lambda: not alive(ref), timeout, "pid %d to exit" % ref["pid"])
    except SimError:
        signal_ref(ref, signal.SIGKILL)
        wait_for(lambda: not alive(ref), 5, "pid %d to die" % ref["pid"])


def spawn(cmd, log, env=None):
    """Starts a daemon of ours in its own session; it outlives this command."""
    with open(log, "ab") as out:
        p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return ref_of(p.pid), p


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError):
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                    kids.append(int(d))
    return kids
