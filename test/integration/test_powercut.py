# SPDX-License-Identifier: MIT
"""Power cuts: kubia runs with its volume on powercut (test/faults/powercut.py), a FUSE
file system that keeps every change in memory and forgets, at a cut, whatever was not
made durable by an fsync (file data) or a directory fsync (names created, renamed,
removed). At random moments, while 1 or 32 clients POST, the power is cut, kubia is
killed, the file system is mounted again on what survived and kubia restarted there:
every acknowledged POST survives (the file is at least as new as each, see
crashcheck.py) and the file is one complete body.

The harness must be able to see a loss: the same campaign against a kubia whose file
fsyncs, or whose directory fsyncs, never reach the file system (the faultfs shim turns
them into no-ops, which is such a kubia exactly as the file system sees it) must report
lost or torn data.

CI runs 200 cuts. The long profile and the book's app (its reference model), a report:
    KUBIA_POWERCUT_CUTS=2000 meson test -C BUILD test_powercut
    KUBIA_POWERCUT_REFERENCE=200 /usr/bin/python3 -m pytest -s test/integration/test_powercut.py
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import SHIM, clean_env, is_root, preload
from kubiatest.ports import free_port
from kubiatest.waits import wait_until
from crashcheck import (Campaign, KubiaServer, ReferenceServer, rounds_from_env,
                        seed)

CUTS = rounds_from_env("KUBIA_POWERCUT_CUTS", 200)
REFERENCE_CUTS = rounds_from_env("KUBIA_POWERCUT_REFERENCE", 0)
POWERCUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults",
                        "powercut.py")


def _fusepy():
    p = subprocess.run(["/usr/bin/python3", "-c", "import fusepy"], capture_output=True)
    return p.returncode == 0


pytestmark = [
    pytest.mark.skipif(not is_root(), reason="mounting a FUSE file system needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
    pytest.mark.skipif(not _fusepy(), reason="python3-fusepy not installed"),
]


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(ln.split()[4] == path for ln in f)


class PowerCutFS:
    """One powercut process at a time over backing, mounted at mount."""

    def __init__(self, workdir):
        self.backing = os.path.join(workdir, "backing")
        self.mount = os.path.join(workdir, "mnt")
        self.ctl = os.path.join(workdir, "powercut.sock")
        self.log = os.path.join(workdir, "powercut.log")
        os.mkdir(self.backing)
        os.mkdir(self.mount)
        self.proc = None

    def start(self):
        if os.path.exists(self.ctl):
            os.unlink(self.ctl)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["/usr/bin/python3", POWERCUT, self.backing, self.mount, self.ctl],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=clean_env())

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("powercut exited with %s: %s" % (
                    self.proc.returncode, self.logtext()))
            return mounted(self.mount) and os.path.exists(self.ctl)

        wait_until(up, 10, "the powercut file system mounted", interval=0.005)

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-3000:]

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.ctl)
            s.sendall(cmd.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                part = s.recv(4096)
                if not part:
                    break
                answer += part
        return answer.decode().strip()

    def cut(self, seed=None):
        answer = self.command("cut" if seed is None else "cut %d" % seed)
        assert answer == "ok", "powercut answered %r to cut" % answer

    def stop(self):
        """Unmounts (lazily if anything still holds it) and ends the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if mounted(self.mount):
            tool = shutil.which("fusermount3")
            cmd = [tool, "-u", "-z", self.mount] if tool else ["umount", "-l", self.mount]
            subprocess.run(cmd, capture_output=True, timeout=10)
        assert not mounted(self.mount), "%s still mounted" % self.mount


@pytest.fixture
def powercut(workdir):
    """A powercut file system in workdir; unmounted and ended even when the test
    fails."""
    fs = PowerCutFS(workdir)
    try:
        yield fs
    finally:
        fs.stop()


class OnPowerCut:
    """A server whose volume is the powercut file system: mounted before each start,
    unmounted after each kill; what survived is read from the backing directory."""

    def __init__(self, fs, server, name="data"):
        self.fs, self.server = fs, server
        self.host, self.no_data = server.host, server.no_data
        self.data_file = os.path.join(fs.mount, name, "kubia.txt")
        self.down_file = os.path.join(fs.backing, name, "kubia.txt")
        self.cuts = 0

    @property
    def port(self):
        return self.server.port

    def before_start(self):
        if not mounted(self.fs.mount):
            self.fs.start()

    def start(self):
        self.server.start()

    def kill(self):
        self.server.kill()

    def after_kill(self):
        self.fs.stop()


def cut(server):
    """The power cut: the file system forgets what was not synced (every other cut, a
    random part of it survives) and fails every later call; then kubia is killed, as
    everything on the machine would be."""
    server.cuts += 1
    t_before = time.monotonic()
    server.fs.cut(None if server.cuts % 2 else server.rnd.randrange(1 << 31))
    t_after = time.monotonic()
    server.kill()
    return t_before, t_after


def kubia_on(factory, fs, env=None):
    """kubia in pet mode with its data file in a directory it creates on the mount.
    The fixture's own data directory (elsewhere) is overridden by the last
    --data-file, so nothing but kubia touches the mount."""
    fs.start()
    k = factory.kubia("kubia-0", mode="pet", wait=False, env=env,
                      args=["--data-file", os.path.join(fs.mount, "data", "kubia.txt")])
    return OnPowerCut(fs, KubiaServer(k))


def campaign(server):
    # Every POST goes through the Python file system, so rounds are kept short.
    c = Campaign(server, seed=seed(), down=cut, max_delay=(0.02, 0.1))
    server.rnd = random.Random(c.seed)
    return c


def _sync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path, data, sync):
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def test_the_file_system_keeps_only_what_was_synced(powercut):
    """The model itself: after a cut, a file's data are there only if it was fsynced,
    a name only if its directory was, and a rename is all or nothing."""
    powercut.start()
    m = powercut.mount
    os.mkdir(os.path.join(m, "d"))
    _sync(m)
    _write(os.path.join(m, "d", "both"), b"both synced", True)
    _write(os.path.join(m, "d", "old"), b"old", True)
    _write(os.path.join(m, "d", "data-only"), b"data synced", True)
    _sync(os.path.join(m, "d"))
    _write(os.path.join(m, "d", "name-only"), b"data not synced", False)
    _write(os.path.join(m, "d", "new"), b"new", True)
    os.rename(os.path.join(m, "d", "new"), os.path.join(m, "d", "old"))
    _sync(os.path.join(m, "d"))
    _write(os.path.join(m, "d", "unsynced-name"), b"x", True)
    with open(os.path.join(m, "d", "both"), "ab") as f:
        f.write(b" and more, not synced")
    os.rename(os.path.join(m, "d", "old"), os.path.join(m, "d", "renamed-late"))
    powercut.cut()
    with pytest.raises(OSError):
        os.listdir(m)  # no power: every call fails
    powercut.stop()
    d = os.path.join(powercut.backing, "d")
    got = {}
    for n in os.listdir(d):
        with open(os.path.join(d, n), "rb") as f:
            got[n] = f.read()
    assert got == {"both": b"both synced", "data-only": b"data synced",
                   "name-only": b"", "old": b"new"}, got


def test_power_cut_at_random_moments(factory, powercut):
    srv = kubia_on(factory, powercut)
    c = campaign(srv)
    faults = c.run(CUTS)
    print("kubia, power cut: " + c.summary())
    assert not faults, "%s\n%s" % (c.summary(), "\n".join(
        "round %d: %s: %s" % f for f in c.faults[:10]))
    assert c.rounds == CUTS
    assert c.stats["acked"] >= CUTS, c.summary()


@pytest.mark.parametrize("skip", ["FAULTFS_FILE_FSYNC_SKIP", "FAULTFS_DIR_FSYNC_SKIP"])
def test_harness_catches_a_missing_fsync(factory, powercut, skip):
    """kubia as if built without the file's fsync, or without the directory's: the
    harness reports lost or torn acknowledged data within a few cuts."""
    if not os.path.isfile(SHIM):
        pytest.skip("faultfs shim not built")
    env = {"LD_PRELOAD": preload(), "FAULTFS_PATH": powercut.mount, skip: "all"}
    srv = kubia_on(factory, powercut, env)
    c = campaign(srv)
    faults = c.run(20)
    print("kubia with %s: %s" % (skip, c.summary()))
    assert c.stats["acked"] > 0, c.summary()
    assert any(kind in ("lost", "torn") for _, kind, _ in faults), (
        "no loss found without that fsync: %s" % c.summary())
    assert "skipped" in open(srv.server.k.stderr_path).read(), "the fault was not armed"


@pytest.mark.skipif(REFERENCE_CUTS == 0, reason="set KUBIA_POWERCUT_REFERENCE=N to run")
@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_reference_model_under_power_cuts(procs, powercut):
    """A report, not a check: how often the book's app (no fsync at all) loses or tears
    acknowledged data at a power cut."""
    os.mkdir(os.path.join(powercut.backing, "data"))  # it does not create its directory
    powercut.start()
    ref = ReferenceServer(procs, os.path.join(powercut.mount, "data", "kubia.txt"),
                          free_port(), clean_env())
    srv = OnPowerCut(powercut, ref)
    c = campaign(srv)
    c.run(REFERENCE_CUTS, stop_at_first=False)
    print("reference model, power cut: " + c.summary())
    assert c.rounds == REFERENCE_CUTS

