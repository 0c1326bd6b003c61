#!/usr/bin/env python3
"""The test suites' helpers are defined once, in test/lib/kubiatest: a second wait_until,
free_port or DNS packer somewhere under test/ is a copy that will drift (free_ports that
bound port 0 outlived the fix of that race in one of them).

Usage: helpers_once.py [DIR]   (DIR: test/, by default the directory of this file)
Reads every Python file under DIR (kubia-sim's launcher too) and prints each name of
ONCE that is defined in more than one place, with where; exits 1 when there is one.
"""
import ast
import os
import sys

ONCE = {
    # kubiatest.waits, .ports, .http
    "wait_until", "free_port", "port_free", "candidate_range", "ipv6_available",
    "http_request", "Response",
    # kubiatest.dnswire
    "encode_name", "parse_question", "query_packet", "dns_query_packet", "dns_query",
    "reply_head",
    # kubiatest.servers
    "LoopbackServer", "FakeDNS", "SlowDNS", "HungPeer", "TricklePeer", "BacklogFull",
}
# kubia-sim's port_free(host, port) asks about one address, not about a port for tests
ALLOWED = {("port_free", os.path.join("e2e", "kubiasim", "network.py"))}


def python_files(top):
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if x not in ("__pycache__", "node_modules"))
        for f in sorted(files):
            if f.endswith(".py") or f == "kubia-sim":
                yield os.path.join(d, f)


def definitions(path):
    """(name, line) of every function and class defined in path, at any depth."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield n.name, n.lineno


def main(argv):
    top = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    where = {}
    for path in python_files(top):
        rel = os.path.relpath(path, top)
        for name, line in definitions(path):
            if name in ONCE and (name, rel) not in ALLOWED:
                where.setdefault(name, []).append("%s:%d" % (rel, line))
    bad = {n: w for n, w in where.items() if len(w) > 1}
    for name, places in sorted(bad.items()):
        print("%s is defined %d times (once, in test/lib/kubiatest, and imported): %s"
              % (name, len(places), ", ".join(places)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
