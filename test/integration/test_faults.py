# SPDX-License-Identifier: MIT
"""Storage failures, injected with the faultfs shim (test/faults/faultfs.c) loaded into
kubia with LD_PRELOAD: what a POST answers when the volume fails at each step of a
replacement, that the answer tells the truth about the previous data, that kubia keeps
serving them, and that no temporary file is left behind.

The shim is found in the build directory of the kubia binary under test. On an
AddressSanitizer build the ASan runtime is preloaded before it, since ASan insists on
being the first library loaded."""

import concurrent.futures
import os
import shutil
import subprocess
import time

import pytest

from harness import KUBIA, OLD, clean_env, injected, on_disk, preload, start_faulty, temp_files
from kubiatest.waits import wait_until

NEW = b"new data\n"

pytestmark = pytest.mark.usefixtures("faultfs")


def test_dir_fsync_fails_and_restore_fails_too(factory, workdir):
    """The directory cannot be synced after the rename, nor after putting the previous
    contents back: nothing can be promised about the disk, and the answer must not
    claim that the previous data were kept."""
    k = start_faulty(factory, workdir, {"FAULTFS_DIR_FSYNC_EIO": "all"})
    r = k.post("/", NEW)
    assert r.status == 500, r
    text = r.body.decode()
    assert text.startswith("Could not store data: cannot fsync the data directory %s: "
                           "Input/output error" % k.data_dir), text
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert "previous data kept" not in text, text
    assert "may be lost" in text, text
    # Both syncs were tried: the replacement's and the restore's.
    assert len(injected(k, "fsync(")) == 2, k.stderr()
    # Memory still holds what was stored before, and that is what is served.
    assert k.get("/data").body == OLD
    assert temp_files(k) == []


def test_dir_fsync_fails_and_previous_data_restored(factory, workdir):
    """Only the first directory sync fails: the previous contents are put back and
    synced, so "previous data kept" is true, on disk and in memory."""
    k = start_faulty(factory, workdir, {"FAULTFS_DIR_FSYNC_EIO": "1"})
    r = k.post("/", NEW)
    assert r.status == 500, r
    text = r.body.decode()
    assert text == ("Could not store data: cannot fsync the data directory %s: "
                    "Input/output error; previous data kept\n" % k.data_dir), text
    assert len(injected(k, "fsync(")) == 1, k.stderr()
    assert on_disk(k) == OLD
    assert k.get("/data").body == OLD
    assert temp_files(k) == []
    # The volume works again: the next POST is stored.
    r = k.post("/", NEW)
    assert r.status == 200, r
    assert on_disk(k) == NEW
    assert k.get("/data").body == NEW


def test_dir_fsync_fails_with_nothing_stored_before(factory, workdir):
    """With no data file before, putting the previous state back means removing the
    new file again."""
    k = start_faulty(factory, workdir, {"FAULTFS_DIR_FSYNC_EIO": "1"}, old=None)
    r = k.post("/", NEW)
    assert r.status == 500, r
    assert r.body.decode().endswith("; previous data kept\n"), r
    assert on_disk(k) is None
    assert k.get("/data").body == b"No data posted yet"
    assert temp_files(k) == []


def test_rename_fails(factory, workdir):
    k = start_faulty(factory, workdir, {"FAULTFS_RENAME_EIO": "1"})
    r = k.post("/", NEW)
    assert r.status == 500, r
    assert r.body.decode() == (
        "Could not store data: cannot rename a temporary file over the data file in %s: "
        "Input/output error; previous data kept\n" % k.data_dir), r
    assert len(injected(k, "rename")) == 1, k.stderr()
    assert on_disk(k) == OLD
    assert k.get("/data").body == OLD
    assert temp_files(k) == []


def test_volume_full(factory, workdir):
    k = start_faulty(factory, workdir, {"FAULTFS_WRITE_ENOSPC": "1"})
    r = k.post("/", NEW)
    assert r.status == 507, r
    assert r.body.decode() == ("Could not store data: volume is full: No space left on "
                               "device; previous data kept\n"), r
    assert len(injected(k, "write")) == 1, k.stderr()
    assert on_disk(k) == OLD
    assert k.get("/data").body == OLD
    assert temp_files(k) == []


def test_short_writes_are_completed(factory, workdir):
    """A write may take fewer bytes than given (a signal, a nearly full volume): the
    rest must still be written, not dropped."""
    body = bytes(range(256)) * 400
    k = start_faulty(factory, workdir, {"FAULTFS_WRITE_SHORT": "all"})
    r = k.post("/", body)
    assert r.status == 200, r
    assert len(injected(k, "write")) > 1, k.stderr()
    assert on_disk(k) == body
    assert k.get("/data").body == body
    assert temp_files(k) == []


def test_answer_waits_for_both_fsyncs(factory, workdir):
    """With every fsync slowed down, the answer cannot come before the temporary file's
    fsync and the directory's fsync have both returned."""
    delay_ms = 300
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": str(delay_ms)})
    t0 = time.monotonic()
    r = k.post("/", NEW, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert elapsed >= 2 * delay_ms / 1000.0, "answered after %.3fs" % elapsed
    assert on_disk(k) == NEW


def test_malformed_fault_variable_stops_the_process():
    """A fault that is asked for but cannot be understood must not leave a test
    running without it."""
    p = subprocess.run([KUBIA, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10, env=clean_env({"LD_PRELOAD": preload(),
                                                  "FAULTFS_DIR_FSYNC_EIO": "sometimes"}))
    assert p.returncode == 98, p
    assert b'faultfs: FAULTFS_DIR_FSYNC_EIO="sometimes" is not valid' in p.stderr, p.stderr


def still_serving(k, old=OLD):
    """After a failed POST: the old data in memory and on disk, no temporary file,
    and the next POST stored."""
    assert k.get("/data").body == old
    assert on_disk(k) == old
    assert temp_files(k) == []
    r = k.post("/", b"after the fault\n")
    assert r.status == 200, r
    assert on_disk(k) == b"after the fault\n"
    assert k.get("/data").body == b"after the fault\n"


def test_file_fsync_fails(factory, workdir):
    """The temporary file's fsync fails: its data may never reach the disk, so it is
    dropped (never fsynced again: after a failed fsync the kernel may have discarded
    the dirty pages and a second fsync can succeed without writing them)."""
    k = start_faulty(factory, workdir, {"FAULTFS_FILE_FSYNC_EIO": "1"})
    r = k.post("/", NEW)
    assert r.status == 500, r
    assert r.body.decode() == (
        "Could not store data: cannot fsync a temporary file in %s: Input/output error; "
        "previous data kept\n" % k.data_dir), r
    assert len(injected(k, "fsync(")) == 1, k.stderr()
    still_serving(k)


def test_volume_full_in_the_middle_of_a_write(factory, workdir):
    """The first write takes half the body, the next finds the volume full."""
    body = bytes(range(256)) * 200
    k = start_faulty(factory, workdir, {"FAULTFS_WRITE_SHORT": "1",
                                        "FAULTFS_WRITE_ENOSPC": "1:1"})
    r = k.post("/", body)
    assert r.status == 507, r
    assert r.body.decode() == ("Could not store data: volume is full: No space left on "
                               "device; previous data kept\n"), r
    assert len(injected(k, "write to")) == 1, k.stderr()
    assert len(injected(k, "write of")) == 1, k.stderr()
    still_serving(k)


def test_rename_fails_then_serves(factory, workdir):
    k = start_faulty(factory, workdir, {"FAULTFS_RENAME_EIO": "1"})
    assert k.post("/", NEW).status == 500
    still_serving(k)


def test_data_directory_removed(factory, workdir):
    """The data directory is removed under a running kubia: nothing can be stored
    there any more (a file created in a removed directory has no name), so a POST is
    503 with the reason, /readyz says the same, /healthz stays ok, and the data kept
    in memory are still served so they can be saved before the pod is restarted. A new
    directory made under the same name is not used: kubia keeps the one it locked."""
    k = start_faulty(factory, workdir, {})
    shutil.rmtree(k.data_dir)
    r = k.post("/", NEW)
    assert r.status == 503, r
    assert r.body.decode() == (
        "Could not store data: data directory %s was removed; previous data still served "
        "but no longer in the data directory\n" % k.data_dir), r
    assert k.get("/data").body == OLD
    r = k.get("/readyz")
    assert r.status == 503 and r.body.decode() == (
        "not ready: data directory %s was removed\n" % k.data_dir), r
    assert k.get("/healthz").status == 200
    os.mkdir(k.data_dir)
    r = k.post("/", NEW)
    assert r.status == 503 and b"was removed" in r.body, r
    assert os.listdir(k.data_dir) == []
    assert k.get("/readyz").status == 503
    assert k.get("/data").body == OLD


def test_probes_answer_at_once_during_a_slow_fsync(factory, workdir):
    """Every fsync takes a second: while a POST's commit waits on it, /healthz,
    /readyz and GET /data (the old data: nothing not yet durable is shown) are each
    answered within 100 ms."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "1000"})
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(k.post, "/", NEW, timeout=30)
        wait_until(lambda: injected(k, "fsync("), 10, "the slow fsync", interval=0.005)
        t_fsync = time.monotonic()
        for path, want in (("/healthz", b"ok\n"), ("/readyz", b"ready\n"),
                           ("/data", OLD)):
            t0 = time.monotonic()
            r = k.get(path, timeout=5)
            elapsed = time.monotonic() - t0
            assert r.status == 200 and r.body == want, (path, r)
            assert elapsed < 0.1, "%s answered after %.3f s" % (path, elapsed)
        # the answers came while the commit was still waiting on its fsyncs
        assert time.monotonic() - t_fsync < 1.0
        assert not fut.done()
        r = fut.result(timeout=30)
    assert r.status == 200, r
    assert on_disk(k) == NEW and k.get("/data").body == NEW
    assert temp_files(k) == []


def test_data_directory_replaced(factory, workdir):
    """The data directory is moved away and a new one made under its name: kubia
    writes into neither (a body stored in the old one would be acknowledged, then never
    found by the next start)."""
    k = start_faulty(factory, workdir, {})
    moved = k.data_dir + ".moved"
    os.rename(k.data_dir, moved)
    os.mkdir(k.data_dir)
    r = k.post("/", NEW)
    assert r.status == 503, r
    assert r.body.decode() == (
        "Could not store data: data directory %s was replaced (volume unmounted?); "
        "previous data still served but no longer in the data directory\n" % k.data_dir), r
    assert os.listdir(k.data_dir) == []
    with open(os.path.join(moved, "kubia.txt"), "rb") as f:
        assert f.read() == OLD
    assert [n for n in os.listdir(moved) if ".tmp." in n] == []
    assert k.get("/data").body == OLD
    assert k.get("/readyz").status == 503
