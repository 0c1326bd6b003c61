#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Helpers of bench.sh that are easier in Python than in bash. Each prints its result
on stdout, or says what is wrong on stderr and exits 1.

  ports N                      N distinct free ports, one a line, free for TCP and UDP on
                               every address, outside the ephemeral range (test/lib's
                               kubiatest.ports)
  wait-ready SECS PID URL...   polls each URL until it answers 200 (at most SECS in all);
                               fails at once when its PID has ended
  response-size URL [BYTES]    the exact size in bytes of the whole HTTP/1.1 answer (status
                               line, headers, body) to a keep-alive GET of URL, or to a POST
                               of BYTES bytes; '-' when the length varies (chunked)
  check-view URL PODS [--any-order]
                               GET URL must give the book's cluster view as kubia-0 sees
                               it: pods kubia-0 .. kubia-(PODS-1), pod i holding
                               'data of pod i'; with --any-order the peer lines may come
                               in any order (the reference's)
"""
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kubiatest.ports import free_port  # noqa: E402

SERVICE = "kubia.default.svc.cluster.local"


def die(msg):
    sys.stderr.write("benchctl: %s\n" % msg)
    sys.exit(1)


def ports(n):
    print("\n".join(str(free_port(udp=True)) for _ in range(n)))


def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_ready(secs, pairs):
    deadline = time.monotonic() + secs
    for pid, url in pairs:
        while True:
            if not running(pid):
                die("pid %d ended before %s answered 200" % (pid, url))
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                die("%s did not answer 200 within %d s" % (url, secs))
            time.sleep(0.02)


def response_size(url, post_bytes=None):
    u = urlsplit(url)
    path = u.path or "/"
    if post_bytes is None:
        req = "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, u.netloc)
        req = req.encode()
    else:
        req = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
               "Content-Type: application/octet-stream\r\n\r\n"
               % (path, u.netloc, post_bytes)).encode() + b"p" * post_bytes
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                die("%s: connection closed in the headers" % url)
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 200 "):
            die("%s: %s" % (url, head.split(b"\r\n")[0].decode(errors="replace")))
        m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        if m is None:
            print("-")
            return
        length = int(m.group(1))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                die("%s: connection closed in the body" % url)
            body += chunk
        print(len(head) + 4 + length)


def check_view(url, pods, any_order):
    lines = ["- kubia-%d.%s: data of pod %d\n" % (i, SERVICE, i) for i in range(pods)]
    head = "You've hit kubia-0\nData stored in the cluster:\n"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            got = r.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        die("GET %s failed: %s" % (url, e))
    ok = got == head + "".join(lines)
    if not ok and any_order and got.startswith(head):
        ok = sorted(got[len(head):].splitlines(True)) == sorted(lines)
    if not ok:
        sys.stderr.write("GET %s gave:\n%s\nexpected%s:\n%s%s" % (
            url, got[:4000], " (peer lines in any order)" if any_order else "", head,
            "".join(lines)[:4000]))
        die("wrong cluster view from %s" % url)


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "ports" and len(args) == 1:
        ports(int(args[0]))
    elif cmd == "wait-ready" and len(args) >= 3 and len(args) % 2 == 1:
        wait_ready(int(args[0]), [(int(args[i]), args[i + 1])
                                  for i in range(1, len(args), 2)])
    elif cmd == "response-size" and len(args) in (1, 2):
        response_size(args[0], int(args[1]) if len(args) == 2 else None)
    elif cmd == "check-view" and len(args) in (2, 3):
        check_view(args[0], int(args[1]), args[2:] == ["--any-order"])
    else:
        die("bad arguments: %s" % " ".join(argv[1:]))


if __name__ == "__main__":
    os.environ.pop("http_proxy", None)
    os.environ.pop("HTTP_PROXY", None)
    main(sys.argv)
