# SPDX-License-Identifier: MIT
"""Crashes: kubia SIGKILLed at random moments while 1 or 32 clients POST distinct,
checksummed bodies of 1 B to 64 KiB, and restarted on the same volume. After every
kill the data file holds one complete body some client sent, at least as new as every
acknowledged POST (see crashcheck.py for what "as new" means), and the restarted kubia
serves it and has removed every temporary file.

CI runs 100 kills. The long profile is the same test with more:
    KUBIA_CRASH_KILLS=1000 meson test -C BUILD test_crash
Every summary names its seed; KUBIA_CRASH_SEED=N replays a run's choices (delays, body
sizes; the moments of the kills still depend on timing). The book's app (its reference
model, node) under the same harness, a report only:
    KUBIA_CRASH_REFERENCE=200 /usr/bin/python3 -m pytest -s test/integration/test_crash.py
"""

import os
import shutil

import pytest

from conftest import free_port
from crashcheck import (Campaign, KubiaServer, ReferenceServer, kill, rounds_from_env,
                        seed)

KILLS = rounds_from_env("KUBIA_CRASH_KILLS", 100)
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
