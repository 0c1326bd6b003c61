"""kubiasim/apipods.py with the real kubectl: exec and attach through the API server
(kubectl 1.27 speaks SPDY/3.1, 1.33 WebSocket), and the chapter's throwaway pod,
`kubectl run -it srvlookup --image=tutum/dnsutils --rm --restart=Never -- dig SRV ...`
(section 10.4.1), under a terminal and without one."""

import os
import subprocess

import pytest
from conftest import KUBIA
from test_apiserver import VERSIONS, Kubectl, http_get, kubectl_of


def cluster(sim, tmp_path, minor, replicas=2):
    exe = kubectl_of(minor)
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % minor)
    sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--replicas",
            replicas, "--mode", "peers", "--api-port", sim.api_port,
            "--kubernetes-version", minor, *sim.sanitizer_env())
    k = Kubectl(sim, exe, tmp_path)
    k.ready(replicas)
    return k


def srv_answer(out, sim, n):
    """The SRV records of dig's answer section: the pods' names."""
    section = out.split(";; ANSWER SECTION:")[1].split("\n\n")[0]
    return sorted(line.split()[-1] for line in section.strip().splitlines())


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_and_attach(sim, tmp_path, minor):
    k = cluster(sim, tmp_path, minor)
    base = "/api/v1/namespaces/%s/pods/kubia-0/proxy/" % sim.ns
    assert http_get(sim.api_port, base, "POST", "Hey there!")[0] == 200
    assert k("exec", "kubia-0", "--", "cat", "/var/data/kubia.txt").stdout == "Hey there!"
    r = k("exec", "kubia-0", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
          check=False)
    assert (r.returncode, r.stdout, r.stderr) == (
        3, "out\n", "err\ncommand terminated with exit code 3\n")
    r = k("exec", "kubia-0", "--", "hostname")
    assert r.stdout == "kubia-0\n"
    r = subprocess.run([k.exe, "exec", "-i", "kubia-1", "--", "cat"], input="through stdin\n",
                       capture_output=True, text=True, env=k.env(), timeout=60)
    assert (r.returncode, r.stdout) == (0, "through stdin\n")
    missing = k("exec", "kubia-9", "--", "true", check=False)
    assert missing.returncode == 1 and 'pods "kubia-9" not found' in missing.stderr
    # attach: kubia's output from now on; its stdin is refused
    refused = k("attach", "-i", "kubia-0", check=False, timeout=60)
    assert refused.returncode == 1 and "kubia reads no stdin" in refused.stderr
