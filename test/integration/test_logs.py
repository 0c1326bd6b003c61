# SPDX-License-Identifier: MIT
"""The log: one line per event on standard error, in logfmt (the default) or JSON, each
line parseable whatever a client sends; the access log's fields and its switch; the
effective configuration at start with where each value came from."""

import json
import os
import re
import shutil
import socket
import subprocess

import pytest

from harness import DOMAIN, KUBIA, is_root, pod_fqdn
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

TIME_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
PAIR_RE = re.compile(r'([A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^ "=\\]+)')
# A path with a line feed, a quote, a control byte, a backslash and invalid UTF-8.
RAW_PATH = b"/a%0Ab%FF%22c%01\\x\xc3("
RAW_PATH_LOGGED = '/a\nb\ufffd"c\x01\\x\ufffd('
NO_HOST = b"Bad request: an HTTP/1.1 request needs exactly one Host\n"


def logfmt(line):
    """The fields of a logfmt line: key=value pairs separated by one space, a value bare
    or quoted with JSON's escapes. Fails on anything else."""
    out = {}
    pos = 0
    while pos < len(line):
        m = PAIR_RE.match(line, pos)
        assert m, "not logfmt at %d: %r" % (pos, line)
        key, val = m.groups()
        assert key not in out, "key %s twice: %r" % (key, line)
        out[key] = json.loads(val) if val.startswith('"') else val
        pos = m.end()
        if pos < len(line):
            assert line[pos] == " ", "not logfmt at %d: %r" % (pos, line)
            pos += 1
    return out


def events(k, fmt="logfmt"):
    """Every line of k's log, parsed; each must have time, level and msg first. The log
    must be valid UTF-8 whatever the clients sent."""
    with open(k.stderr_path, "rb") as f:
        text = f.read().decode("utf-8")
    assert text.endswith("\n"), text[-200:]
    out = []
    for line in text.split("\n")[:-1]:
        if fmt == "json":
            e = json.loads(line)
            assert isinstance(e, dict), line
        else:
            e = logfmt(line)
        assert list(e)[:3] == ["time", "level", "msg"], line
        assert TIME_RE.match(e["time"]), line
        assert e["level"] in ("error", "warn", "info", "debug"), line
        out.append(e)
    return out


def requests(evs):
    return [e for e in evs if e["msg"] == "request"]


def raw_get(k, path, host=b"Host: x\r\n"):
    s = socket.create_connection((k.host, k.port), timeout=10)
    try:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def traffic(k):
    assert k.get("/data").status == 200
    assert k.post("/", b"hello").status == 200
    assert k.request("DELETE", "/x").status == 405
    assert raw_get(k, RAW_PATH).startswith(b"HTTP/1.1 200 ")
    # Refused before routing (no Host): logged with its status and its answer's size.
    assert raw_get(k, b"/nohost", host=b"").endswith(b"\r\n\r\n" + NO_HOST)


def num(v):
    return float(v)


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_every_line_parses_and_requests_have_their_fields(factory, fmt):
    args = [] if fmt == "logfmt" else ["--log-format", "json"]
    k = factory.kubia("kubia-0", mode="pet", args=args)
    traffic(k)
    # The lines are written when the requests complete: wait for the last one.
    wait_until(lambda: len([r for r in requests(events(k, fmt)) if r["path"] != "/readyz"]) >= 5,
               5, what="the access-log lines")
    assert k.stop() == 0
    reqs = requests(events(k, fmt))
    # Besides the readiness probes of the fixture; a line is written once its answer is
    # sent, so a client may see its answer before the line is written: order aside.
    got = sorted((r["method"], r["path"], int(r["status"])) for r in reqs
                 if r["path"] != "/readyz")
    assert got == sorted([("GET", "/data", 200), ("POST", "/", 200), ("DELETE", "/x", 405),
                          ("GET", RAW_PATH_LOGGED, 200), ("GET", "/nohost", 400)]), got
    by = {(r["method"], r["path"]): r for r in reqs}
    assert int(by[("GET", "/data")]["bytes"]) == len("No data posted yet")
    post = by[("POST", "/")]
    assert int(post["request_bytes"]) == 5
    assert int(post["bytes"]) == len("Data stored on pod kubia-0\n")
    assert int(by[("GET", "/nohost")]["bytes"]) == len(NO_HOST)
    # One line per request: besides the access log, only the start and the stop speak
    # at level info (the POST's own "stored" line is at debug).
    others = [e["msg"] for e in events(k, fmt) if e["msg"] != "request"]
    assert all(m.startswith(("memory budget", "configuration", "kubia ", "SIGTERM",
                             "stopped in "))
               for m in others), others
    for r in reqs:
        assert 0 <= num(r["duration_ms"]) < 10000, r
        assert "peer_errors" not in r, r  # pet mode: no views
        if fmt == "json":
            assert isinstance(r["status"], int) and isinstance(r["bytes"], int), r


def test_view_line_counts_peer_errors(factory):
    dead = free_port()
    _, ks = factory.cluster(("kubia-0", "kubia-1"), mode="peers",
                            extra_srv=[(DOMAIN, pod_fqdn("kubia-2"), dead)],
                            extra_hosts=[(pod_fqdn("kubia-2"), "127.0.0.3", None)])
    # Any path but kubia's own serves the view, and each view's line counts its errors;
    # other routes' lines have no count.
    for path in ("/", "/some/where"):
        assert ks[0].get(path).status == 200
        line = wait_until(lambda: [r for r in requests(events(ks[0])) if r["path"] == path],
                          5, what="the view's access-log line for %s" % path)[0]
        assert line["peer_errors"] == "1", line
    assert ks[0].get("/healthz").status == 200
    line = wait_until(lambda: [r for r in requests(events(ks[0])) if r["path"] == "/healthz"],
                      5, what="the access-log line for /healthz")[0]
    assert "peer_errors" not in line, line
    # The peer asked shows the fetch in its own log.
    wait_until(lambda: any(r["path"] == "/data" for r in requests(events(ks[1]))), 5,
               what="the peer's /data line")


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_access_log_off(factory, how):
    if how == "flag":
        k = factory.kubia("kubia-0", mode="pet", args=["--access-log=false"])
    else:
        k = factory.kubia("kubia-0", mode="pet", env={"KUBIA_ACCESS_LOG": "false"})
    traffic(k)
    assert k.stop() == 0
    evs = events(k)
    assert requests(evs) == [], requests(evs)
    conf = [e for e in evs if e["msg"] == "configuration"]
    assert conf[0]["access_log"] == "false"
    assert conf[0]["access_log_source"] == how
    # Other events are still logged.
    assert any(e["msg"].startswith("kubia ") for e in evs), evs


def help_settings():
    p = subprocess.run([KUBIA, "--help"], capture_output=True, timeout=10)
    return [m.replace("-", "_") for m in re.findall(rb"^  --([a-z-]+)", p.stdout, re.M)
            for m in [m.decode()] if m not in ("help", "version")]


def test_configuration_line_and_sources(factory):
    k = factory.kubia("kubia-0", mode="pet",
                      args=["--peer-port", "2", "--log-format", "logfmt"],
                      env={"KUBIA_MAX_PEERS": "7", "KUBIA_PEER_PORT": "1"})
    assert k.stop() == 0
    conf = [e for e in events(k) if e["msg"] == "configuration"]
    assert len(conf) == 1, conf
    c = conf[0]
    for name in help_settings():
        assert name in c and c[name + "_source"] in ("flag", "variable", "default", "cgroup"), (
            name, c)
    assert (c["port"], c["port_source"]) == (str(k.port), "flag")
    assert (c["mode"], c["mode_source"]) == ("pet", "flag")
    assert (c["max_peers"], c["max_peers_source"]) == ("7", "variable")
    assert (c["peer_port"], c["peer_port_source"]) == ("2", "flag")  # the flag wins
    assert (c["dns_timeout_ms"], c["dns_timeout_ms_source"]) == ("2000", "default")
    assert (c["log_format"], c["log_format_source"]) == ("logfmt", "flag")
    assert (c["access_log"], c["access_log_source"]) == ("true", "default")


def test_configuration_from_the_cgroup(factory, workdir):
    """In a mount namespace with a cgroup directory of its own (memory.max, cpu.max),
    the automatic budget and thread count say they came from the cgroup."""
    unshare = shutil.which("unshare")
    if not is_root() or unshare is None:
        pytest.skip("needs root and unshare for a mount namespace")
    script = ("mount -t tmpfs kubia-cg /sys/fs/cgroup && "
              "printf 100000000 > /sys/fs/cgroup/memory.max && "
              "printf '100000 100000' > /sys/fs/cgroup/cpu.max && exec \"$0\" \"$@\"")
    k = factory.kubia("kubia-0", mode="pet",
                      wrapper=[unshare, "--mount", "--propagation", "private", "sh", "-c",
                               script])
    assert k.stop() == 0
    c = [e for e in events(k) if e["msg"] == "configuration"][0]
    assert (c["max_memory"], c["max_memory_source"]) == ("50000000", "cgroup"), c
    want = "cgroup" if (os.cpu_count() or 1) > 1 else "default"
    assert (c["threads"], c["threads_source"]) == ("1", want), c
