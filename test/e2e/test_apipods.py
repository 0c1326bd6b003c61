"""kubiasim/apipods.py with the real kubectl: exec and attach through the API server
(kubectl 1.27 speaks SPDY/3.1, 1.33 WebSocket), and the chapter's throwaway pod,
`kubectl run -it srvlookup --image=tutum/dnsutils --rm --restart=Never -- dig SRV ...`
(section 10.4.1), under a terminal and without one."""

import os
import re
import shlex
import shutil
import subprocess
import threading
import time

import pytest
from conftest import KUBIA, wait_until
from test_apiserver import VERSIONS, Kubectl, http_get, kubectl_of


def cluster(sim, tmp_path, minor, replicas=2, *extra):
    exe = kubectl_of(minor)
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % minor)
    sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--replicas",
            replicas, "--mode", "peers", "--api-port", sim.api_port,
            "--kubernetes-version", minor, *extra, *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    k.ready(replicas)
    return k


def srv_answer(out):
    """The SRV records of dig's answer section: the pods' names."""
    section = out.split(";; ANSWER SECTION:")[1].split("\n\n")[0]
    return sorted(line.split()[-1] for line in section.strip().splitlines())


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_and_attach(sim, tmp_path, minor):
    # kubia logs each POST at debug level: output for attach to stream
    k = cluster(sim, tmp_path, minor, 2, "--env", "KUBIA_LOG_LEVEL=debug")
    base = "/api/v1/namespaces/%s/pods/kubia-0/proxy/" % sim.ns
    assert http_get(sim.api_port, base, "POST", "Hey there!")[0] == 200
    assert k("exec", "kubia-0", "--", "cat", "/var/data/kubia.txt").stdout == "Hey there!"
    r = k("exec", "kubia-0", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
          check=False)
    assert (r.returncode, r.stdout, r.stderr) == (
        3, "out\n", "err\ncommand terminated with exit code 3\n")
    r = k("exec", "kubia-0", "--", "hostname")
    assert r.stdout == "kubia-0\n"
    # through the front nginx: 1.30+ upgrades to WebSocket, older kubectl to SPDY/3.1
    r = k("exec", "-v=8", "kubia-0", "--", "true")
    assert re.search(r"Upgrade: (%s)" % ("websocket" if minor >= "1.30" else "SPDY/3.1"),
                     r.stderr), r.stderr
    assert "101 Switching Protocols" in r.stderr
    r = subprocess.run([k.exe, "exec", "-i", "kubia-1", "--", "cat"], input="through stdin\n",
                       capture_output=True, text=True, env=k.env(), timeout=60)
    assert (r.returncode, r.stdout) == (0, "through stdin\n")
    missing = k("exec", "kubia-9", "--", "true", check=False)
    assert missing.returncode == 1 and 'pods "kubia-9" not found' in missing.stderr
    # attach: kubia's output from now on; its stdin is refused
    refused = k("attach", "-i", "kubia-0", check=False, timeout=60)
    assert refused.returncode == 1 and "kubia reads no stdin" in refused.stderr

    attach = subprocess.Popen([k.exe, "attach", "kubia-0"], env=k.env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(attach.stdout), daemon=True)
    reader.start()
    try:
        def streamed():
            http_get(sim.api_port, base, "POST", "more")
            return any("new data has been received and stored" in line for line in seen)
        wait_until(streamed, 30, "kubia-0's log through kubectl attach", interval=0.5)
    finally:
        attach.terminate()
        attach.wait(10)
        reader.join(10)
    # the attach left kubia running
    assert k("exec", "kubia-0", "--", "cat", "/var/data/kubia.txt").stdout == "more"


BOOK_RUN = ["run", "-it", "srvlookup", "--image=tutum/dnsutils", "--rm", "--restart=Never",
            "--", "dig", "SRV", "kubia.default.svc.cluster.local"]


@pytest.mark.parametrize("minor", VERSIONS)
def test_run_it_dig_srv(sim, tmp_path, minor):
    k = cluster(sim, tmp_path, minor, replicas=3)
    if shutil.which("script") is None or shutil.which("dig") is None:
        pytest.skip("script (util-linux) and dig (bind9-dnsutils) are needed")
    # -it needs a terminal: script gives kubectl one
    cmd = " ".join(shlex.quote(a) for a in [k.exe] + BOOK_RUN)
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       env=k.env(), timeout=120, stdin=subprocess.DEVNULL)
    out = r.stdout.decode(errors="replace").replace("\r\n", "\n")
    assert r.returncode == 0, out
    assert ";; ANSWER SECTION:" in out, out
    assert srv_answer(out) == ["kubia-%d.kubia.default.svc.cluster.local." % i
                               for i in range(3)], out
    assert out.rstrip().endswith('pod "srvlookup" deleted'), out
    assert "srvlookup" not in k("get", "po").stdout
    # without a terminal: -i alone
    r = k("run", "-i", "srvlookup", "--image=tutum/dnsutils", "--rm", "--restart=Never",
          "--", "dig", "+short", "SRV", "kubia.default.svc.cluster.local")
    assert sorted(line.split()[-1] for line in r.stdout.splitlines()
                  if line.strip() and "deleted" not in line) == [
        "kubia-%d.kubia.default.svc.cluster.local." % i for i in range(3)], r.stdout
    # no stdin: it runs at once; kubectl logs shows its output; its exit code is kept
    k("run", "failing", "--image=busybox", "--restart=Never", "--", "sh", "-c",
      "echo going; exit 4")
    wait_until(lambda: k("get", "po", "failing", "-o", "jsonpath={.status.phase}").stdout
               == "Failed", 30, "the pod failing Failed")
    assert k("logs", "failing").stdout == "going\n"
    assert k("get", "po", "failing", "-o", "jsonpath={.status.containerStatuses[0].state."
             "terminated.exitCode}").stdout == "4"
    assert k("delete", "po", "failing").stdout == 'pod "failing" deleted\n'
    assert "failing" not in k("get", "po").stdout
    r = k("run", "dry", "--image=busybox", "--restart=Never", "--dry-run=server", "-o",
          "name", "--", "true")
    assert r.stdout == "pod/dry\n" and "dry" not in k("get", "po").stdout
    taken = k("run", "kubia-1", "--image=busybox", "--restart=Never", "--", "true",
              check=False)
    assert taken.returncode == 1 and 'pods "kubia-1" already exists' in taken.stderr
    # deleting a pod whose command runs kills it
    k("run", "sleeper", "--image=busybox", "--restart=Never", "--", "sleep", "300")
    wait_until(lambda: k("get", "po", "sleeper", "-o", "jsonpath={.status.phase}").stdout
               == "Running", 30, "the pod sleeper Running")
    netns = "ksim-%s-apirun-0" % sim.name
    pids = wait_until(lambda: subprocess.run(["ip", "netns", "pids", netns],
                                             capture_output=True, text=True).stdout.split(),
                      10, "sleeper's process")
    t0 = time.monotonic()
    assert k("delete", "po", "sleeper").stdout == 'pod "sleeper" deleted\n'
    assert time.monotonic() - t0 < 30
    wait_until(lambda: not any(os.path.exists("/proc/%s" % p) for p in pids), 10,
               "sleeper's process to end")
    wait_until(lambda: netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                   text=True).stdout, 10, netns + " removed")
