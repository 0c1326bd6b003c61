"""HTTP to the pods, from the host through the bridge: one GET, and what the kubelet
counts as a passing probe."""

import http.client


def http_get(addr, port, path, timeout=0.5, sock=None):
    """(status, body) of a GET, or (None, why) when it failed."""
    conn = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        if sock is not None:
            sock.settimeout(timeout)
            sock.connect((addr, port))
            conn.sock = sock
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e) or type(e).__name__
    finally:
        conn.close()
        if sock is not None:
            sock.close()


def probe_ok(status):
    return status is not None and 200 <= status < 400  # what the kubelet counts as success


def probe(pod):
    """The pod's readiness probe, from the host as the kubelet's is from the node."""
    rp = pod["readiness"]
    return probe_ok(http_get(pod["ip"], rp["port"], rp["path"], rp["timeout_s"])[0])
