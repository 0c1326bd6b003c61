# SPDX-License-Identifier: MIT
"""Crashes: kubia SIGKILLed at random moments while 1 or 32 clients POST distinct,
checksummed bodies of 1 B to 64 KiB, and restarted on the same volume. After every
kill the data file holds one complete body some client sent, at least as new as every
acknowledged POST (see crashcheck.py for what "as new" means), and the restarted kubia
serves it and has removed every temporary file.

CI runs 100 kills. The long profile is the same test with more:
    KUBIA_CRASH_KILLS=1000 meson test -C BUILD test_crash
Every summary names its seed; KUBIA_CRASH_SEED=N replays a run's choices (delays, body
sizes; the moments of the kills still depend on timing). Kills during start-up: 50 in CI,
KUBIA_CRASH_START_KILLS=N for more. The book's app (its reference
model, node) under the same harness, a report only:
    KUBIA_CRASH_REFERENCE=200 /usr/bin/python3 -m pytest -s test/integration/test_crash.py
"""

import os
import random
import shutil
import time

import pytest

from kubiatest.ports import free_port
from crashcheck import (Campaign, KubiaServer, ReferenceServer, kill, read_file,
                        rounds_from_env, seed)

KILLS = rounds_from_env("KUBIA_CRASH_KILLS", 100)
START_KILLS = rounds_from_env("KUBIA_CRASH_START_KILLS", 50)
REFERENCE_KILLS = rounds_from_env("KUBIA_CRASH_REFERENCE", 0)


def report(c):
    msg = "\n".join("round %d: %s: %s" % f for f in c.faults[:10])
    return "%s\n%s" % (c.summary(), msg)


def test_sigkill_at_random_moments(factory):
    k = factory.kubia("kubia-0", mode="pet", wait=False)
    c = Campaign(KubiaServer(k), seed=seed(), down=kill)
    faults = c.run(KILLS)
    print("kubia, SIGKILL: " + c.summary())
    assert not faults, report(c)
    assert c.rounds == KILLS
    # The harness saw the POSTs it judges: most rounds had some answered.
    assert c.stats["acked"] >= KILLS, c.summary()


def temp_files(k):
    return sorted(n for n in os.listdir(k.data_dir) if ".tmp." in n)


def test_sigkill_during_start_up(factory):
    """Kills while kubia starts: opening and locking the data directory, reading the
    data, removing the temporary files a crash left. The stored body survives each one
    whole, and the kubia that finally starts serves it and leaves no temporary file."""
    k = factory.kubia("kubia-0", mode="pet")
    body = b"stored before the kills\n" * 200
    assert k.post("/", body).status == 200
    assert k.stop() == 0
    t0 = time.monotonic()
    k.start()
    start_s = time.monotonic() - t0  # to ready: the kills are spread over it
    assert k.stop() == 0
    s = seed()
    rnd = random.Random(s)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    planted = 0
    for i in range(START_KILLS):
        # what a crash in the middle of a commit leaves: a temporary file, part written
        for _ in range(rnd.randrange(3)):
            name = ".kubia.txt.tmp." + "".join(rnd.choice(alphabet) for _ in range(6))
            with open(os.path.join(k.data_dir, name), "wb") as f:
                f.write(b"part of a newer body" * rnd.randrange(1, 500))
            planted += 1
        k.start(wait=False)
        time.sleep(rnd.uniform(0, start_s))  # the moment of the kill, not a wait
        k.proc.kill()
        k.proc.wait(10)
        got = read_file(k.data_file)
        assert got == body, "kill %d (seed %d): the data file holds %r" % (
            i, s, None if got is None else got[:80])
    k.start()
    assert k.get("/data").body == body
    assert temp_files(k) == []
    print("%d kills within the first %.0f ms of a start, %d temporary files planted: "
          "the body whole each time (seed %d)" % (START_KILLS, start_s * 1000, planted, s))


@pytest.mark.skipif(REFERENCE_KILLS == 0, reason="set KUBIA_CRASH_REFERENCE=N to run")
@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_reference_model_under_sigkill(procs, workdir):
    """A report, not a check: how often the book's app loses or tears acknowledged
    data when killed."""
    data_dir = os.path.join(workdir, "ref")
    os.mkdir(data_dir)
    srv = ReferenceServer(procs, os.path.join(data_dir, "kubia.txt"), free_port(), {})
    c = Campaign(srv, seed=seed(), down=kill)
    c.run(REFERENCE_KILLS, stop_at_first=False)
    print("reference model, SIGKILL: " + c.summary())
    assert c.rounds == REFERENCE_KILLS
