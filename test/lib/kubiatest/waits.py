# SPDX-License-Identifier: MIT
"""A bounded wait for a condition, instead of a sleep that hopes."""

import time


def wait_until(pred, timeout, what="condition", interval=0.02, error=AssertionError):
    """Polls pred() every interval s until it returns a true value, and returns that
    value; raises error (AssertionError: the test fails) after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise error("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)
