"""What every part of kubia-sim uses: its error, its output, running the system's tools,
files written whole, and waiting for a condition."""

import json
import os
import shlex
import subprocess
import sys

from kubiatest.waits import wait_until


class SimError(Exception):
    """What went wrong, for the user: kubia-sim prints it and exits with status 1."""


def say(*parts):
    """Prints progress; a reader who went away (a closed pipe) does not stop the work."""
    try:
        print(*parts, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def tool(name):
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise SimError("%s is not installed (bash test/setup.sh installs it)" % name)


def sh(*cmd, check=True):
    r = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SimError("%s failed: %s" % (" ".join(shlex.quote(str(c)) for c in cmd),
                                          (r.stderr or r.stdout).strip()))
    return r


def write_atomic(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def wait_for(pred, timeout, what, interval=0.02):
    return wait_until(pred, timeout, what, interval, error=SimError)
