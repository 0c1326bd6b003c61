# SPDX-License-Identifier: MIT
"""The integration tests' fixtures: a work directory, the processes a test starts
(ended by PID in a finalizer), a factory of kubia and dnsmasq processes (harness.py),
and the sanitizers' reports of every kubia a test started.

Everything talks to loopback only (127.0.0.0/8 and ::1); every wait is bounded. Only
the system python3 and its standard library (plus Debian's pytest) are used.
"""

import os
import shutil
import signal
import tempfile

import harness
import pytest
from harness import KUBIA, SANITIZE, SANITIZER_OPTIONS, SHIM, ClusterFactory, Procs


@pytest.fixture(scope="session", autouse=True)
def _binary():
    if not os.path.isfile(KUBIA) or not os.access(KUBIA, os.X_OK):
        pytest.fail("kubia binary not found at %s (set KUBIA_BINARY)" % KUBIA)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def sanitizer_reports():
    """In a sanitizer build, a report from any kubia the test started fails the test.
    Autouse fixtures are set up first and torn down last, so every process has ended
    (and written its reports) by the time they are read here."""
    if not any(san in SANITIZER_OPTIONS for san in SANITIZE.split(",")):
        yield None
        return
    d = tempfile.mkdtemp(prefix="kubia-it-reports-")
    harness.report_dir = d  # where clean_env() sends the reports
    try:
        yield d
    finally:
        harness.report_dir = None
        reports = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), errors="replace") as f:
                reports.append("---- %s:\n%s" % (name, f.read()))
        shutil.rmtree(d, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer reports from kubia:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="kubia-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs(request):
    p = Procs()
    yield p
    p.cleanup()


@pytest.fixture
def factory(procs, workdir, request):
    f = ClusterFactory(procs, workdir)
    try:
        yield f
    finally:
        f.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for k in f.kubias:
            print("---- kubia %s (port %d) stderr:\n%s" % (k.hostname, k.port,
                                                         k.stderr()[-4000:]))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def faultfs():
    """Skips a test that needs the faultfs shim where it was not built."""
    if not os.path.isfile(SHIM):
        pytest.skip("faultfs shim not built (expected at %s)" % SHIM)
