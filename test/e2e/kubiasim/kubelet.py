"""The kubelet: one supervisor process per pod, started as `kubia-sim _kubelet SPEC`.

It runs the pod's init containers to completion (pod_init.py), then the pod's
container; it stops the container when the pod is deleted (the preStop sleep, then
SIGTERM, SIGKILL when the grace period ends), runs its liveness probe, and restarts it
when it dies or fails the probe, with the kubelet's doubling back-off. It runs the
readiness probe every periodSeconds with the manifest's thresholds, all the time the
container runs (before its first success, every 0.1 s: a starting pod does not wait a
whole period). What it sees goes to the pod's status file, which `status`, the
controller and the endpoints controller read. SIGUSR1 asks for a readiness probe now,
whose result counts at once (`kubia-sim probe`).
"""

import contextlib
import json
import os
import signal
import subprocess
import time

from .network import netns_socket
from .pod_http import http_get, probe_ok
from .pod_init import run_init
from .processes import proc_start
from .util import read_json, write_atomic

SIGS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGUSR1}
STARTING_PERIOD_S = 0.1  # readiness probes of a container that was never ready yet


def liveness_probe(spec, live):
    """(ok, why): a probe (liveness or readiness), from inside the pod's network
    namespace, so that a pod cut off the network (its node, in the chapter's story) is
    not killed for it, just as a kubelet on the same node still reaches the pod."""
    try:
        sock = netns_socket(spec["netns"])
    except OSError as e:
        return False, str(e)
    code, body = http_get(spec["ip"], live["port"], live["path"], live["timeout_s"], sock)
    if probe_ok(code):
        return True, ""
    if code is None:
        return False, 'Get "http://%s:%d%s": %s' % (spec["ip"], live["port"], live["path"], body)
    return False, "HTTP probe failed with statuscode: %d" % code


def kubelet_main(specpath):
    """`kubia-sim _kubelet SPEC`: supervises the pod that the controller described in the
    file SPEC, until the pod is deleted."""
    return Kubelet(read_json(specpath)).run()


def wait_signal(timeout):
    """The next of SIGS within timeout s, or None. They are blocked while the kubelet
    runs, so none that arrives between two waits is lost."""
    info = signal.sigtimedwait(SIGS, max(0.0, timeout))
    return info.si_signo if info else None


class Container:
    """One run of the pod's container, from its start to its exit."""

    def __init__(self, child, live):
        self.child = child
        self.started = time.monotonic()
        self.term_at = None  # when the preStop sleep of a stop ends: SIGTERM then
        self.kill_at = None  # when the grace period of a stop ends
        self.terminating = False  # the pod is being deleted: no restart
        self.unhealthy = None  # why the liveness probe had the container killed
        self.failures = 0  # liveness probes failed in a row
        self.next_probe = self.started + live["initial_delay_s"] if live else None
        self.next_ready = None  # the next readiness probe (set by the kubelet)
        self.ever_ready = False

    def wakeup(self):
        """Seconds until there is something to do: a grace period ends, or a probe."""
        now = time.monotonic()
        when = [3600 + now]
        if self.term_at is not None:
            when.append(self.term_at)
        if self.kill_at is not None:
            when.append(self.kill_at)
        elif self.next_probe is not None:
            when.append(self.next_probe)
        if not self.terminating and self.next_ready is not None:
            when.append(self.next_ready)
        return min(when) - now

    def stop(self, grace_s, pre_stop_s=0):
        """The kubelet's stop: the preStop sleep (pre_stop_s), then SIGTERM; SIGKILL once
        grace_s have passed since the stop began. The grace period includes the hook: a
        sleep that reaches its end is cut there, and the container then gets 2 s more
        after its SIGTERM, the kubelet's one-off extension."""
        now = time.monotonic()
        self.kill_at = now + grace_s
        if pre_stop_s > 0:
            self.term_at = now + min(pre_stop_s, grace_s)
            if pre_stop_s >= grace_s:
                self.kill_at = self.term_at + 2
        else:
            self.term()

    def term(self):
        self.term_at = None
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signal.SIGTERM)


class Kubelet:
    """The supervisor of one pod. Its status file holds the container's state, its
    restarts, its last termination and the liveness probe's counts."""

    def __init__(self, spec):
        self.spec = spec
        self.live = spec.get("liveness")
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.env.update(spec["env"])
        self.restarts = 0
        self.backoff = spec["backoff_ms"] / 1000.0
        self.last = {}  # the last termination, kept while the next container runs
        self.current = {}  # the state last written
        self.probes = {"liveness_probes": 0, "liveness_failures": 0}
        self.ready_probe = spec.get("readiness")
        # readiness: ready, since when, the probes' counts in a row, the last probe's time
        self.readiness = {"ready": False, "ready_since": None, "readiness_probes": 0,
                          "probed_at": None}
        self.ready_counts = [0, 0]  # successes, failures in a row

    def run(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGS)
        if not run_init(self, wait_signal):
            return 0
        while True:
            if not os.path.exists(os.path.join("/run/netns", self.spec["netns"])):
                # The pod's sandbox is gone (its namespace was deleted under us): nothing
                # to restart into, so this kubelet ends rather than loop for ever.
                self.status(state="Terminated", reason="pod network namespace is gone")
                return 1
            c = self.start()
            self.supervise(c)
            rc = c.child.returncode
            how = "signal %d" % -rc if rc < 0 else "exit %d" % rc
            if c.terminating:
                self.status(state="Terminated", last_exit=how)
                return 0
            if self.back_off(c, how):
                return 0

    def status(self, **kw):
        """Writes the pod's status file: kw, with the last termination and the counts."""
        if "last_exit" in kw:
            self.last.update(last_exit=kw["last_exit"], reason=kw.get("reason", ""))
        self.current.clear()
        self.current.update(kw)
        full = dict(self.last)
        full.update(kw, restarts=self.restarts, since=time.time(), **self.probes)
        full.update(self.readiness)
        write_atomic(self.spec["status"], json.dumps(full))

    def last_line(self):
        """The container log's last line: why a container that exited by itself ended."""
        try:
            with open(self.spec["log"], "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else ""
        except OSError:
            return ""

    def start(self):
        with open(self.spec["log"], "ab") as out:
            child = subprocess.Popen(
                self.spec["cmd"], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=self.env,
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGS))
        c = Container(child, self.live)
        if self.ready_probe:
            c.next_ready = c.started + self.ready_probe["initial_delay_s"]
        self.set_ready(False)
        self.status(state="Running", pid=child.pid, start=proc_start(child.pid))
        return c

    def supervise(self, c):
        """Returns when the container has exited. Meanwhile: stops it when the pod is
        deleted, kills it when a grace period ends, and runs the liveness probe."""
        child = c.child
        while child.poll() is None:
            sig = wait_signal(c.wakeup())
            if sig in (signal.SIGTERM, signal.SIGINT) and not c.terminating:
                c.terminating = True
                self.set_ready(False)
                self.status(state="Terminating", pid=child.pid, start=proc_start(child.pid))
                # SIGINT is `down`'s: the whole cluster goes, nothing is routed to
                # the pod any more, so its preStop hook has nothing to wait for
                hook = self.spec.get("pre_stop_s", 0) if sig == signal.SIGTERM else 0
                c.stop(self.spec["grace_s"], hook)
                continue
            if sig == signal.SIGUSR1:
                self.probe_readiness(c, at_once=True)
                continue
            now = time.monotonic()
            if c.term_at is not None:
                if now >= c.term_at:
                    c.term()
            elif c.kill_at is not None:
                if now >= c.kill_at:
                    self.kill(c)
            elif c.next_probe is not None and now >= c.next_probe:
                self.probe_liveness(c)
            if not c.terminating and c.next_ready is not None and now >= c.next_ready:
                self.probe_readiness(c)
        self.set_ready(False)

    def set_ready(self, ready):
        if ready != self.readiness["ready"]:
            self.readiness.update(ready=ready, ready_since=time.time() if ready else None)
        if not ready:
            self.ready_counts = [0, 0]

    def probe_readiness(self, c, at_once=False):
        """The readiness probe: the pod turns ready after successThreshold successes in a
        row, unready after failureThreshold failures; at_once (a probe asked for with
        SIGUSR1) decides either way by itself."""
        rp = self.ready_probe
        if c.terminating or not rp:
            self.readiness["probed_at"] = time.time()
            self.status(**self.current)
            return
        ok, _why = liveness_probe(self.spec, rp)
        was = self.readiness["ready"]
        n = self.ready_counts
        n[0], n[1] = (n[0] + 1, 0) if ok else (0, n[1] + 1)
        if at_once or (ok and n[0] >= rp.get("success_threshold", 1)) or \
                (not ok and n[1] >= rp["failure_threshold"]):
            self.set_ready(ok)
        c.ever_ready = c.ever_ready or ok
        period = rp["period_s"] if c.ever_ready else min(rp["period_s"], STARTING_PERIOD_S)
        c.next_ready = time.monotonic() + period
        self.readiness.update(readiness_probes=self.readiness["readiness_probes"] + 1,
                              probed_at=time.time())
        if at_once or self.readiness["ready"] != was or n[0] + n[1] == 1:
            self.status(**self.current)

    def kill(self, c):
        with contextlib.suppress(ProcessLookupError):
            c.child.kill()
        c.kill_at = time.monotonic() + 3600
        if self.spec.get("kill_cmd"):
            # podman run is gone, but the container would live on under
            # conmon: the grace period is over for it too
            subprocess.run(self.spec["kill_cmd"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60, check=False)

    def probe_liveness(self, c):
        ok, why = liveness_probe(self.spec, self.live)
        c.next_probe = time.monotonic() + self.live["period_s"]
        c.failures = 0 if ok else c.failures + 1
        self.probes.update(liveness_probes=self.probes["liveness_probes"] + 1,
                           liveness_failures=c.failures)
        self.status(**self.current)
        if c.failures >= self.live["failure_threshold"]:
            # The kubelet kills the container as on a deletion, then restarts it.
            c.unhealthy = "Liveness probe failed: %s" % why
            self.status(state="Running", pid=c.child.pid, start=proc_start(c.child.pid),
                        reason=c.unhealthy)
            c.stop(self.spec["grace_s"], self.spec.get("pre_stop_s", 0))

    def back_off(self, c, how):
        """Waits before the next start; True when the pod was deleted meanwhile.

        restartPolicy: Always, with the kubelet's back-off: doubling, at most 5 min,
        reset after 10 min of running.
        """
        self.restarts += 1
        if time.monotonic() - c.started > 600:
            self.backoff = self.spec["backoff_ms"] / 1000.0
        self.status(state="CrashLoopBackOff", last_exit=how,
                    reason=c.unhealthy or self.last_line(),
                    next_start=time.time() + self.backoff)
        deadline = time.monotonic() + self.backoff
        while time.monotonic() < deadline:
            if wait_signal(deadline - time.monotonic()) in (signal.SIGTERM, signal.SIGINT):
                self.status(state="Terminated", last_exit=how, reason=self.last_line())
                return True
        self.backoff = min(self.backoff * 2, 300.0)
        return False
