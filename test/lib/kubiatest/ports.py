# SPDX-License-Identifier: MIT
"""Ports for the test suites' servers on loopback.

A port is taken from below the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range), so no client socket of any process (a
resolver's query socket, a test's HTTP connection) can be given it by the kernel
between the check and the server's bind. A lock file held for the life of the test
process keeps two test processes of one run from being handed the same port; within a
process a port is handed out once.
"""

import atexit
import errno
import fcntl
import os
import random
import socket
import tempfile
import threading

_LOCK_DIR = os.path.join(tempfile.gettempdir(), "kubia-test-ports")
_given = set()
_held = []  # (path, open lock file); released at exit, which frees their ports
_lock = threading.Lock()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def candidate_range():
    """[first, last] of the ports handed out: below the ephemeral range when it leaves
    room there, else above it."""
    low, high = _ephemeral_range()
    if low - 1 >= 11000:
        return 10000, low - 1
    if high + 1 <= 64000:
        return high + 1, 65535
    raise RuntimeError("the ephemeral port range %d-%d leaves no room for test ports"
                       % (low, high))


def port_free(port, udp=True):
    """No socket holds port for TCP (and UDP when asked), on any IPv4 or IPv6 address."""
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    for kind in kinds:
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(fam, kind)
            try:
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((addr, port))
            except OSError as e:
                if fam == socket.AF_INET6 and e.errno in (errno.EADDRNOTAVAIL,
                                                          errno.EAFNOSUPPORT):
                    continue
                return False
            finally:
                s.close()
    return True


def _claim(port):
    """Takes the run-wide lock of port; False when another test process holds it."""
    os.makedirs(_LOCK_DIR, mode=0o1777, exist_ok=True)
    path = os.path.join(_LOCK_DIR, str(port))
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # the holder may have removed the file between our open and our lock
        if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
            raise OSError(errno.ESTALE, "lock file replaced")
    except OSError:
        f.close()
        return False
    _held.append((path, f))
    return True


def _release(path, f):
    """Removes the lock file while still holding it, so that no process can lock the
    removed file believing it current, then closes it."""
    try:
        os.unlink(path)
    except OSError:
        pass
    f.close()


@atexit.register
def _release_all():
    while _held:
        _release(*_held.pop())


def free_port(udp=False):
    """A port free for TCP (and UDP when asked) on all addresses, outside the ephemeral
    range, not handed out before to this or any other running test process."""
    first, last = candidate_range()
    for _ in range(500):
        port = random.randint(first, last)
        with _lock:
            if port in _given or not _claim(port):
                continue
            if port_free(port, udp=udp):
                _given.add(port)
                return port
            _release(*_held.pop())
    raise RuntimeError("no free port found in %d-%d" % (first, last))


def ipv6_available():
    """Whether a socket can bind ::1 here (some containers have no IPv6)."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False
