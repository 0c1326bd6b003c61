"""kubiasim/apiwrites.py with the real kubectl and raw HTTP: a pod deleted with an upload
in flight (the whole path: the API's graceful deletion, the kubelet's SIGTERM after the
preStop hook, kubia finishing the upload within the pod's terminationGracePeriodSeconds),
and the API server's refusals."""

import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import time

import pytest
import yaml
from conftest import BASE, KUBIA, wait_until
from test_apiserver import VERSIONS, Kubectl, kubectl_of

STORED = b"Data stored on pod kubia-0\n"


def newest(sim, tmp_path):
    exe = kubectl_of(VERSIONS[-1])
    if exe is None:
        pytest.skip("kubectl %s is not installed (beside kubectl on PATH)" % VERSIONS[-1])
    return Kubectl(sim, exe, tmp_path)


def body_of(n):
    """n bytes of text that differ from any other length's, so a torn or mixed body
    shows."""
    seed = hashlib.sha256(b"%d" % n).hexdigest().encode()
    return (seed * (n // len(seed) + 1))[:n]


def connections_open(sim):
    """kubia-0's open client connections, the one that asks included."""
    r = sim.get_pod("kubia-0", "/metrics")
    m = re.search(r"^kubia_http_connections_open (\d+)$", r.body, re.M)
    return int(m.group(1)) if r.status == 200 and m else 0


def read_answer(s, timeout):
    """What the API server's proxy sends until it closes the connection or has sent a
    whole answer to the POST."""
    buf = b""
    s.settimeout(timeout)
    try:
        while not buf.endswith(STORED):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return buf


def upload_across_delete(sim, k, graceful):
    """A POST to kubia-0 through the API server's proxy, its body trickling in while
    `kubectl delete po kubia-0` (default grace) runs; graceful: the rest of the body is
    sent only once kubia has logged its SIGTERM. Returns (answer, body, delete's result,
    seconds from SIGTERM to the end of the body)."""
    body = body_of(256 * 1024)
    s = socket.create_connection(("127.0.0.1", sim.api_port), timeout=10)
    deleting = None
    try:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                  % (sim.pod_path("kubia-0").encode(), len(body)) + body[:1024])
        # the proxy has opened its connection to kubia: this upload is in flight there
        wait_until(lambda: connections_open(sim) >= 2, 10, "the upload to reach kubia-0")
        deleting = subprocess.Popen([k.exe, "delete", "po", "kubia-0"], env=k.env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        wait_until(lambda: k("get", "po", "kubia-0", "-o",
                             "jsonpath={.metadata.deletionTimestamp}", check=False).stdout,
                   10, "kubia-0 to be Terminating")
        t_term = time.monotonic()
        if graceful:
            # after the preStop sleep (2 s): the upload is still in flight at SIGTERM
            wait_until(lambda: "SIGTERM received: shutting down" in k(
                "logs", "kubia-0", check=False).stdout, 15, "kubia-0's SIGTERM", 0.2)
            t_term = time.monotonic()
        # the rest over about 4 s: far beyond kubia's old 500 ms grace, and beyond the
        # 2 s the kubelet gives a container after its preStop hook used the whole grace
        for i in range(1024, len(body), 16 * 1024):
            try:
                s.sendall(body[i:i + 16 * 1024])
            except OSError:
                break
            time.sleep(0.25)
        sent = time.monotonic() - t_term
        answer = read_answer(s, 20)
        out, err = deleting.communicate(timeout=90)
        return answer, body, (deleting.returncode, out, err), sent
    finally:
        s.close()
        if deleting is not None and deleting.poll() is None:
            deleting.kill()
            deleting.wait()


@pytest.mark.parametrize("grace", [None, 0], ids=["default-grace", "grace-0-control"])
def test_delete_po_with_an_upload_in_flight(sim, tmp_path, grace):
    """kubectl delete po kubia-0 while a client uploads to it: the kubelet's SIGTERM
    comes after the preStop sleep, kubia lets the upload finish, the client gets 200, and
    the pod the StatefulSet brings back serves the data. The control: a pod whose grace
    period is 0 is killed at once, and the upload is lost."""
    k = newest(sim, tmp_path)
    extra = [] if grace is None else ["--grace-period", grace]
    sim.cli("up", "--binary", KUBIA, "--subnet", sim.base + ".0/24", "--replicas", 1,
            "--mode", "pet", "--api-port", sim.api_port, *extra, *sim.sanitizer_env())
    k.ready(1)
    uid = k("get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout
    assert sim.post_pod("kubia-0", "old").status == 200
    answer, body, (rc, out, err), sent = upload_across_delete(sim, k, grace is None)
    assert rc == 0 and out == 'pod "kubia-0" deleted\n', (rc, out, err)
    k.ready(1)
    assert k("get", "po", "kubia-0", "-o", "jsonpath={.metadata.uid}").stdout != uid
    data = sim.get_pod("kubia-0", "/data")
    if grace is None:
        assert sent > 3.0, sent
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n" + STORED), \
            answer
        assert data.status == 200 and data.body.encode() == body
    else:
        # the proxy's answer when the pod's connection is cut, as the API server's
        assert answer.startswith(b"HTTP/1.1 502") and STORED not in answer, answer
        assert data.status == 200 and data.body == "old"


def raw(port, method, path, body, ctype):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), json.loads(r.read().decode())
    finally:
        conn.close()


def test_refusals_are_status_objects(sim, tmp_path):
    """A body in protobuf (which kubectl 1.32+ sends for some typed calls; this API
    server decodes JSON and YAML only) gets 415 UnsupportedMediaType, a POST to an
    object's own path 405 MethodNotAllowed, and claims, which only the StatefulSet's
    controller makes here, cannot be created: each a Status, nothing changed."""
    k = newest(sim, tmp_path)
    sim.cli("up", "--empty", "--nodes", 1, "--binary", KUBIA, "--subnet",
            sim.base + ".0/24", "--api-port", sim.api_port, *sim.sanitizer_env())
    svcs = "/api/v1/namespaces/%s/services" % sim.ns
    with open(os.path.join(BASE, "kubia-service-headless.yaml")) as f:
        svc = json.dumps(yaml.safe_load(f))
    code, ctype, status = raw(sim.api_port, "POST", svcs, b"k8s\x00\x0a\x0f",
                              "application/vnd.kubernetes.protobuf")
    assert (code, ctype) == (415, "application/json")
    assert (status["kind"], status["status"], status["reason"], status["code"]) == (
        "Status", "Failure", "UnsupportedMediaType", 415)
    assert status["message"].startswith("the body of the request was in an unknown format")
    assert k("get", "svc", "kubia", check=False).returncode == 1
    assert raw(sim.api_port, "POST", svcs, svc, "application/json")[0] == 201
    code, _, status = raw(sim.api_port, "PATCH", svcs + "/kubia", b"\x0a\x00",
                          "application/vnd.kubernetes.protobuf")
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    code, _, status = raw(sim.api_port, "POST", svcs + "/kubia", svc, "application/json")
    assert (code, status["kind"], status["reason"], status["message"]) == (
        405, "Status", "MethodNotAllowed",
        "the server does not allow this method on the requested resource")
    claim = tmp_path / "claim.yaml"
    claim.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-kubia-9"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Mi"}}}}))
    r = k("create", "-f", str(claim), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("Error from server (MethodNotAllowed): error when creating"), \
        r.stderr
    assert "kubia-sim does not create persistentvolumeclaims" in r.stderr
    assert k("get", "pvc", "-o", "name").stdout == ""
