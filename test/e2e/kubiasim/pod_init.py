"""A pod's init containers, as its kubelet runs them before the pod's container: one
after the other, each to completion; one that fails (a non-zero exit) is run again
after the kubelet's back-off, doubling, as for a container with restartPolicy Always,
and the pod's container does not start meanwhile. The pod's status says Init:N/M while
the N+1st runs, Init:Error after its first failure and Init:CrashLoopBackOff after the
next ones; each failure counts as a restart of the pod."""

import contextlib
import os
import signal
import subprocess
import time

from .processes import proc_start


def init_log(spec, name):
    return "%s.init-%s.log" % (spec["log"][:-len(".log")], name)


def run_init(k, wait_signal):
    """Runs the init containers of kubelet k's pod; True once every one has succeeded,
    False when the pod was deleted meanwhile (its status then says Terminated)."""
    inits = k.spec.get("init") or []
    backoff = k.spec["backoff_ms"] / 1000.0
    for i, ic in enumerate(inits):
        failures = 0
        while True:
            k.status(state="Init:%d/%d" % (i, len(inits)))
            rc, deleted = run_one(k, ic, wait_signal)
            how = "signal %d" % -rc if rc < 0 else "exit %d" % rc
            if deleted:
                k.status(state="Terminated", last_exit=how,
                         reason="deleted while init container %s ran" % ic["name"])
                return False
            if rc == 0:
                break
            failures += 1
            k.restarts += 1
            k.status(state="Init:Error" if failures == 1 else "Init:CrashLoopBackOff",
                     last_exit=how, reason="init container %s: %s" % (
                         ic["name"], last_line(init_log(k.spec, ic["name"]))),
                     next_start=time.time() + backoff)
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline:
                if wait_signal(deadline - time.monotonic()) in (signal.SIGTERM,
                                                                 signal.SIGINT):
                    k.status(state="Terminated", last_exit=how,
                             reason="deleted while init container %s was backing off"
                             % ic["name"])
                    return False
            backoff = min(backoff * 2, 300.0)
    return True


def run_one(k, ic, wait_signal):
    """(exit status, deleted): one run of an init container. A deletion meanwhile stops
    it as the pod's container is stopped: SIGTERM, SIGKILL when the grace period ends."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update(ic["env"])
    with open(init_log(k.spec, ic["name"]), "ab") as out:
        child = subprocess.Popen(
            ic["cmd"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, preexec_fn=lambda: signal.pthread_sigmask(
                signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD,
                                     signal.SIGUSR1}))
    k.status(**dict(k.current, pid=child.pid, start=proc_start(child.pid)))
    kill_at = None
    while child.poll() is None:
        timeout = 3600 if kill_at is None else kill_at - time.monotonic()
        sig = wait_signal(timeout)
        if sig in (signal.SIGTERM, signal.SIGINT) and kill_at is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
            kill_at = time.monotonic() + k.spec["grace_s"]
        elif kill_at is not None and time.monotonic() >= kill_at:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            if ic.get("kill_cmd"):
                subprocess.run(ic["kill_cmd"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=60, check=False)
            child.wait()
    return child.returncode, kill_at is not None


def last_line(path):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"
    except OSError:
        return "(no output)"
