# SPDX-License-Identifier: MIT
"""Storage failures, injected with the faultfs shim (test/faults/faultfs.c) loaded into
kubia with LD_PRELOAD: what a POST answers when the volume fails at each step of a
replacement, that the answer tells the truth about the previous data, that kubia keeps
serving them, and that no temporary file is left behind.

The shim is found in the build directory of the kubia binary under test. On an
AddressSanitizer build the ASan runtime is preloaded before it, since ASan insists on
being the first library loaded."""

import subprocess
import time

import pytest

from conftest import (KUBIA, OLD, clean_env, injected, on_disk, preload, start_faulty,
                      temp_files)

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
