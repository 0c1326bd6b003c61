# SPDX-License-Identifier: MIT
"""A POST is answered only after its body is durable: traced with strace, the server
writes a temporary file in the data directory, fsyncs it, renames it over the data
file and fsyncs the directory, and only then sends "200 ... Data stored on pod".
A crash can only be simulated (test_storage_http kills the process mid-POST); this
checks the order of the system calls that make the promise hold across a power cut."""

import os
import re
import shutil
import signal

import pytest

from harness import SANITIZE

STRACE = shutil.which("strace")
# test/integration/meson.build does not register this file for a sanitizer build;
# this skips it there when pytest is run by hand too
pytestmark = [pytest.mark.skipif(STRACE is None, reason="strace not installed"),
              pytest.mark.skipif(SANITIZE != "none",
                                 reason="a sanitizer's runtime under strace's ptrace")]

CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
UNFINISHED = re.compile(r"^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+)")


def parse(path):
    """System calls in order of completion: (name, args, result)."""
    calls, pending = [], {}
    with open(path, errors="replace") as f:
        for raw in f:
            ln = raw.rstrip("\n")
            m = UNFINISHED.match(ln)
            if m:
                pending[(m.group(1), m.group(2))] = m.group(3)
                continue
            m = RESUMED.match(ln)
            if m:
                head = pending.pop((m.group(1), m.group(2)), "")
                calls.append((m.group(2), head + m.group(3), int(m.group(4))))
                continue
            m = CALL.match(ln)
            if m:
                calls.append((m.group(2), m.group(3), int(m.group(4))))
    return calls


def first(calls, start, pred, what):
    for i in range(start, len(calls)):
        if pred(calls[i]):
            return i
    raise AssertionError("no %s after call %d in the trace:\n%s" % (
        what, start, "\n".join(map(str, calls[start:start + 60]))))


def test_post_is_answered_only_after_fsync_rename_fsync(factory, tmp_path):
    trace = str(tmp_path / "trace")
    wrapper = [STRACE, "-f", "-qq", "-s", "512", "-o", trace, "-e",
               "trace=openat,write,fsync,fdatasync,rename,renameat,renameat2,sendto,"
               "sendmsg,writev"]
    k = factory.kubia("kubia-0", mode="pet", wrapper=wrapper, ready_timeout=30)
    # kubia is strace's child: the fixture ends strace, this test ends kubia.
    with open("/proc/%d/task/%d/children" % (k.proc.pid, k.proc.pid)) as f:
        child = int(f.read().split()[0])
    body = b"durable-body-0123456789"
    try:
        r = k.post("/", body)
        assert r.status == 200 and r.body == b"Data stored on pod kubia-0\n"
        # strace passes on kubia's exit status.
        os.kill(child, signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.stderr()
    finally:
        # strace lives as long as its child, so the PID is still kubia's.
        if k.proc.poll() is None:
            os.kill(child, signal.SIGKILL)
    with open(k.data_file, "rb") as f:
        assert f.read() == body

    calls = parse(trace)
    data_dir = os.path.dirname(k.data_file)
    # The directory descriptor every later step goes through.
    i_dir = first(calls, 0, lambda c: c[0] == "openat" and '"%s"' % data_dir in c[1]
                  and "O_DIRECTORY" in c[1] and c[2] >= 0, "open of the data directory")
    dirfd = calls[i_dir][2]
    i_tmp = first(calls, i_dir, lambda c: c[0] == "openat" and ".kubia.txt.tmp." in c[1]
                  and "O_CREAT" in c[1] and c[2] >= 0, "creation of a temporary file")
    tmpfd = calls[i_tmp][2]
    i_write = first(calls, i_tmp, lambda c: c[0] == "write" and
                    c[1].startswith("%d, " % tmpfd) and body.decode() in c[1],
                    "write of the body to the temporary file")
    i_fsync = first(calls, i_write, lambda c: c[0] in ("fsync", "fdatasync") and
                    c[1] == str(tmpfd) and c[2] == 0, "fsync of the temporary file")
    i_rename = first(calls, i_fsync, lambda c: c[0].startswith("rename") and
                     ".kubia.txt.tmp." in c[1] and '"kubia.txt"' in c[1] and c[2] == 0,
                     "rename over the data file")
    i_dsync = first(calls, i_rename, lambda c: c[0] in ("fsync", "fdatasync") and
                    c[1] == str(dirfd) and c[2] == 0, "fsync of the data directory")
    i_reply = first(calls, 0, lambda c: c[0] in ("sendto", "sendmsg", "writev", "write")
                    and "Data stored on pod kubia-0" in c[1], "the reply to the POST")
    assert i_reply > i_dsync, (
        "the POST was answered (call %d) before the directory fsync (call %d)" % (
            i_reply, i_dsync))


def _stop_traced(k):
    """Ends kubia (strace's child) by its PID and waits for strace to pass on its
    exit status."""
    with open("/proc/%d/task/%d/children" % (k.proc.pid, k.proc.pid)) as f:
        child = int(f.read().split()[0])
    try:
        os.kill(child, signal.SIGTERM)
        assert k.proc.wait(30) == 0, k.stderr()
    finally:
        if k.proc.poll() is None:
            os.kill(child, signal.SIGKILL)


FD_PATH = re.compile(r"^\d+<(.*)>$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def test_created_data_directories_are_synced_before_serving(factory, tmp_path):
    """A missing data directory is created at start (mkdir -p). A new directory
    entry survives a power cut only once its parent directory is fsynced, so every
    directory kubia creates must be followed by an fsync of its parent before kubia
    listens: otherwise the directory, and later the data file in it, can vanish."""
    trace = str(tmp_path / "trace")
    vol = os.path.realpath(str(tmp_path))
    created = [os.path.join(vol, "a"), os.path.join(vol, "a", "b")]
    data_file = os.path.join(created[-1], "kubia.txt")
    # -y prints the path behind every descriptor, so an fsync names its directory.
    wrapper = [STRACE, "-f", "-qq", "-y", "-o", trace, "-e",
               "trace=mkdir,mkdirat,fsync,fdatasync,listen"]
    # The last --data-file wins over the fixture's own.
    k = factory.kubia("kubia-0", mode="pet", wrapper=wrapper, ready_timeout=30,
                      args=["--data-file", data_file])
    r = k.post("/", b"in a new directory")
    assert r.status == 200, r
    _stop_traced(k)
    with open(data_file, "rb") as f:
        assert f.read() == b"in a new directory"

    calls = parse(trace)
    i_listen = first(calls, 0, lambda c: c[0] == "listen" and c[2] == 0, "listen")

    def synced_path(c):
        m = FD_PATH.match(c[1])
        return m.group(1) if c[0] in ("fsync", "fdatasync") and c[2] == 0 and m else None

    for d in created:
        i_mkdir = first(calls, 0, lambda c: c[0] in ("mkdir", "mkdirat") and c[2] == 0
                        and QUOTED.search(c[1]) is not None
                        and QUOTED.search(c[1]).group(1) == d, "mkdir of %s" % d)
        parent = os.path.dirname(d)
        i_sync = first(calls, i_mkdir, lambda c: synced_path(c) == parent,
                       "fsync of %s after creating %s" % (parent, d))
        assert i_sync < i_listen, (
            "%s was created (call %d) but its parent %s was fsynced only at call %d, "
            "after kubia started listening (call %d)" % (d, i_mkdir, parent, i_sync,
                                                         i_listen))
